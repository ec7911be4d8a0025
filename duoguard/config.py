"""Typed configuration: the schema every YAML file in `conf/` is checked against.

The dataclasses are registered in Hydra's ConfigStore as `duoguard_schema`; `conf/config.yaml`
lists it first in its defaults, so every group file and every command-line override is merged
into typed nodes. An unknown key, a wrong type or a bad enum value then fails while Hydra
composes the config, with the key's full name, before any model is loaded. Values that need
more than a type (ranges, paths, required-per-app keys) are checked by `validate()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from duoguard.errors import UserError


class ConfigError(UserError):
    """A configuration value that cannot work; the message names the full key."""


# ---------------------------------------------------------------- enums (checked by OmegaConf)
class LossType(str, Enum):
    zlpr = "zlpr"
    bce = "bce"


class Precision(str, Enum):
    auto = "auto"  # bf16 on a GPU that has it, else fp16 on GPU, fp32 on CPU
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class OnBadRow(str, Enum):
    fail = "fail"  # stop with the file and line of the first bad row
    skip = "skip"  # skip bad rows, count them and report the count


class LoggerBackend(str, Enum):
    wandb = "wandb"
    none = "none"


class WandbMode(str, Enum):
    offline = "offline"
    online = "online"
    disabled = "disabled"


class RuntimeName(str, Enum):
    local = "local"
    ray = "ray"


# ---------------------------------------------------------------- taxonomy and data
@dataclass
class CategoryConfig:
    code: str = MISSING
    name: str = MISSING
    description: str = ""


@dataclass
class TaxonomyConfig:
    name: str = MISSING
    categories: list[CategoryConfig] = MISSING
    # foreign label -> own category name ("" drops the label)
    aliases: dict[str, str] = field(default_factory=dict)


@dataclass
class DataFileConfig:
    path: str = MISSING
    format: str | None = None  # jsonl | csv | parquet; inferred from the suffix when null
    # schema field -> column name in the file, e.g. {text: prompt, unsafe: is_harmful}
    columns: dict[str, str] = field(default_factory=dict)
    language: str | None = None  # for files without a language column
    unsafe: bool | None = None  # label for rows without an `unsafe` column (e.g. harmful-only files)
    categories: list[str] = field(default_factory=list)  # for unsafe rows without categories
    source: str | None = None  # defaults to the file name
    limit: int | None = None  # read at most this many valid rows


@dataclass
class DataConfig:
    # the package's own seed set ("builtin"), a path to a seed file, or null for none
    seeds: str | None = "builtin"
    train_files: list[DataFileConfig] = field(default_factory=list)
    languages: list[str] = field(default_factory=lambda: ["en", "fr", "es", "de", "it"])
    attack_styles: list[str] = field(
        default_factory=lambda: [
            "direct",
            "roleplay",
            "hypothetical",
            "persuasion",
            "refusal_suppression",
            "prefix_injection",
            "story",
            "academic",
        ]
    )
    heldout_fraction: float = 0.15
    split_seed: int = 0
    on_bad_row: OnBadRow = OnBadRow.fail
    max_text_chars: int = 20_000


# ---------------------------------------------------------------- models and training
@dataclass
class TinyModelConfig:
    """Shape of the offline random-initialised Qwen2 built when `name_or_path: tiny`."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    vocab_size: int = 1024  # size the byte-level BPE is trained to
    max_position_embeddings: int = 2048
    seed: int = 0


@dataclass
class ModelConfig:
    # a hub id (Qwen/Qwen2.5-0.5B), a local checkpoint folder, or "tiny" for the offline tiny model
    name_or_path: str = MISSING
    revision: str | None = None
    trust_remote_code: bool = False
    precision: Precision = Precision.auto
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)


@dataclass
class GuardrailTrainConfig:
    loss: LossType = LossType.zlpr
    learning_rate: float = 5e-5
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.1
    epochs: float = 2.0
    global_batch_size: int = 640
    per_device_batch_size: int = 8
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    gradient_checkpointing: bool = False
    logging_steps: int = 10
    deepspeed: str | None = None  # path to a DeepSpeed JSON config
    seed: int = 42


@dataclass
class GuardrailConfig:
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name_or_path="tiny"))
    train: GuardrailTrainConfig = field(default_factory=GuardrailTrainConfig)
    threshold: float = 0.5  # unsafe = max category probability > threshold
    max_length: int = 512
    # how a (prompt, response) pair is shown to the classifier for response classification
    response_template: str = "User: {prompt}\n\nAgent: {response}"
    predict_batch_size: int = 64
    # token budget of one inference batch (longest x count); null = 2,048 on CPU, 65,536 on GPU
    predict_max_tokens: int | None = None
    # a trained guardrail checkpoint to start from instead of `model`
    init_checkpoint: str | None = None


# ---------------------------------------------------------------- evaluation
@dataclass
class BenchmarkConfig:
    name: str = MISSING
    # xstest | openai_moderation | toxicchat | beavertails | xsafety | rtp_lx | multijail |
    # jbb_artifacts | samples (our own schema, jsonl/csv/parquet)
    format: str = MISSING
    path: str = MISSING
    language: str | None = None  # for single-language files that do not say
    limit: int | None = None  # evaluate the first N examples only
    # loader options, e.g. {human_annotated_only: true} (toxicchat), {toxicity_threshold: 1.0} (rtp_lx)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalConfig:
    guardrail_path: str | None = None  # checkpoint to evaluate (duoguard-eval requires it)
    benchmarks: list[BenchmarkConfig] = field(default_factory=list)
    batch_size: int = 64
    report_name: str = "eval_report"


# ---------------------------------------------------------------- infrastructure
@dataclass
class LoggerConfig:
    backend: LoggerBackend = LoggerBackend.wandb
    mode: WandbMode = WandbMode.offline  # offline needs no account; `wandb sync` uploads later
    project: str = "duoguard"
    entity: str | None = None
    group: str | None = None
    name: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class RoleResources:
    num_cpus: float = 1.0
    num_gpus: float = 0.0


@dataclass
class RuntimeConfig:
    name: RuntimeName = RuntimeName.local
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    torch_threads: int | None = None  # pin intra-op threads (same value in every runtime = same numbers)


@dataclass
class Config:
    experiment: str = "tiny_cpu"
    seed: int = 0
    cache_dir: str = "~/.cache/duoguard"  # tiny offline checkpoints are built here
    output_dir: str = MISSING  # Hydra's run dir unless overridden
    progress: bool = True  # progress bars on long work
    taxonomy: TaxonomyConfig = field(default_factory=TaxonomyConfig)
    data: DataConfig = field(default_factory=DataConfig)
    guardrail: GuardrailConfig = field(default_factory=GuardrailConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


SCHEMA_NAME = "duoguard_schema"


def register_configs() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=SCHEMA_NAME, node=Config)


# ---------------------------------------------------------------- checks beyond types
def require(cfg: DictConfig, *keys: str) -> None:
    """Fail when any of `keys` (full dotted names) is missing (`???`) or null."""
    for key in keys:
        try:
            value = OmegaConf.select(cfg, key, throw_on_missing=True)
        except MissingMandatoryValue:
            value = None
        if value is None:
            raise ConfigError(f"missing required value '{key}': set it on the command line, e.g. {key}=...")


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def validate(cfg: DictConfig, sections: tuple[str, ...] = ("data", "guardrail", "taxonomy")) -> None:
    """Range and consistency checks for the sections an app uses; raises ConfigError naming the key."""
    missing = sorted(k for k in OmegaConf.missing_keys(cfg) if k.split(".")[0] in sections or "." not in k)
    if missing:
        raise ConfigError(f"missing required value(s): {', '.join(missing)}")
    if "taxonomy" in sections:
        _check(len(cfg.taxonomy.categories) > 0, "taxonomy.categories", "needs at least one category")
    if "data" in sections:
        d = cfg.data
        _check(0.0 <= d.heldout_fraction < 1.0, "data.heldout_fraction", f"must be in [0, 1), got {d.heldout_fraction}")
        _check(len(d.languages) > 0, "data.languages", "needs at least one language")
        _check(len(d.attack_styles) > 0, "data.attack_styles", "needs at least one attack style")
        _check(d.max_text_chars > 0, "data.max_text_chars", "must be > 0")
        for i, f in enumerate(d.train_files):
            _check(bool(f.path), f"data.train_files[{i}].path", "is empty")
    if "guardrail" in sections:
        g = cfg.guardrail
        _check(0.0 < g.threshold < 1.0, "guardrail.threshold", f"must be in (0, 1), got {g.threshold}")
        _check(g.max_length > 0, "guardrail.max_length", "must be > 0")
        _check(
            "{prompt}" in g.response_template and "{response}" in g.response_template,
            "guardrail.response_template",
            "must contain {prompt} and {response}",
        )
        t = g.train
        _check(t.learning_rate > 0, "guardrail.train.learning_rate", "must be > 0")
        _check(0.0 <= t.warmup_ratio < 1.0, "guardrail.train.warmup_ratio", "must be in [0, 1)")
        _check(t.per_device_batch_size > 0, "guardrail.train.per_device_batch_size", "must be > 0")
        _check(
            t.global_batch_size >= t.per_device_batch_size,
            "guardrail.train.global_batch_size",
            f"must be >= guardrail.train.per_device_batch_size ({t.per_device_batch_size})",
        )
        _check(t.epochs > 0 or t.max_steps > 0, "guardrail.train.epochs", "must be > 0 (or set max_steps)")


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """Plain, resolved dict of the config (for trackers and reports)."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]
