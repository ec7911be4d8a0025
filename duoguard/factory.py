"""What the configuration describes, built: the taxonomy, the training data, model paths, and the
three roles of the game.

Every app and stage builds through here, so a setting such as `guardrail.init_checkpoint` or a
model's `revision` means the same thing in `duoguard-guardrail`, the game and the pipeline. The
role builders take the plain (pickled) config because the runtime may call them inside a Ray
actor; the others take the composed DictConfig.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import DictConfig

from duoguard.config import ConfigError, to_container
from duoguard.data.benchmarks import Benchmark, load_benchmark
from duoguard.data.readers import builtin_seed_texts, load_seeds, load_train_files
from duoguard.data.responses import response_examples
from duoguard.data.schema import Sample, SchemaContext, split_heldout
from duoguard.errors import UserError
from duoguard.taxonomy import Taxonomy

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- process set-up
def pin_threads(threads: int | None) -> None:
    """The same thread count gives the same numbers (and keeps roles from oversubscribing cores)."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))


def set_up_torch(cfg: DictConfig) -> None:
    """Seed everything and pin threads."""
    from transformers import set_seed

    pin_threads(cfg.runtime.torch_threads)
    set_seed(int(cfg.seed))


# ---------------------------------------------------------------- taxonomy and data
def build_taxonomy(cfg: DictConfig) -> Taxonomy:
    return Taxonomy.from_config(to_container(cfg.taxonomy))


def schema_context(cfg: DictConfig, taxonomy: Taxonomy) -> SchemaContext:
    return SchemaContext(
        taxonomy=taxonomy,
        languages=list(cfg.data.languages),
        attack_styles=list(cfg.data.attack_styles),
        max_text_chars=int(cfg.data.max_text_chars),
    )


def load_training_samples(cfg: DictConfig, taxonomy: Taxonomy) -> list[Sample]:
    """Seeds plus every configured training file, all checked against the schema."""
    d = cfg.data
    samples = load_seeds(d.seeds, taxonomy, list(d.languages), list(d.attack_styles), int(d.max_text_chars))
    files = to_container(d.train_files)
    samples += load_train_files(files, schema_context(cfg, taxonomy), skip_bad_rows=d.on_bad_row.value == "skip")
    if not samples:
        raise ConfigError("data.seeds: no training samples (data.seeds is null and data.train_files is empty)")
    return samples


def split_with_responses(samples: list[Sample], cfg: DictConfig) -> tuple[list[Sample], list[Sample]]:
    """Train / held-out split; each side then gets its own response examples (no prompt leaks
    across the split through its answers)."""
    d = cfg.data
    train, heldout = split_heldout(samples, float(d.heldout_fraction), int(d.split_seed))
    if d.response_examples:
        templates = to_container(d.response_templates)
        train += response_examples(train, templates)
        heldout += response_examples(heldout, templates)
    return train, heldout


def load_benchmark_entry(b, key: str) -> Benchmark:
    """One benchmark file from a BenchmarkConfig node; any bad format, option, path or row is a
    UserError naming the config key, the file and (for a row) its line."""
    try:
        return load_benchmark(b.name, b.format, b.path, language=b.language, limit=b.limit, **to_container(b.options))
    except (UserError, OSError) as e:  # OSError: a missing, unreadable or damaged file
        raise UserError(f"{key} ({b.name}): {e}") from None


def load_benchmarks_from(entries, key: str) -> list[Benchmark]:
    """Benchmark files from a list of BenchmarkConfig nodes; errors name `key[i]`."""
    return [load_benchmark_entry(b, f"{key}[{i}]") for i, b in enumerate(entries)]


# ---------------------------------------------------------------- models and roles
def model_path(model_cfg: DictConfig | Mapping[str, Any], cache_dir: str) -> str:
    """Resolve a model config to a loadable id or folder (building the tiny model if asked)."""
    from duoguard.models import resolve_model_path

    plain = to_container(model_cfg) if isinstance(model_cfg, DictConfig) else dict(model_cfg)
    return resolve_model_path(plain, cache_dir, builtin_seed_texts())


def build_guardrail(cfg: Mapping[str, Any], categories: Sequence[str], base_path: str, checkpoint: str | None,
                    device: str, *, key: str = "guardrail.init_checkpoint"):  # fmt: skip
    """The guardrail: a checkpoint (a game round's, or `guardrail.init_checkpoint`) or the base
    model with a fresh head over `categories`; either way with the configured inference settings.
    `key` names the checkpoint's origin in the error when its categories are not the taxonomy's."""
    import torch

    from duoguard.roles.guardrail import Guardrail, GuardrailError

    pin_threads(cfg["runtime"]["torch_threads"])
    g, m = cfg["guardrail"], cfg["guardrail"]["model"]
    opts = dict(threshold=float(g["threshold"]), max_length=int(g["max_length"]), response_template=str(g["response_template"]),
                batch_size=int(g["predict_batch_size"]), max_batch_tokens=g["predict_max_tokens"])  # fmt: skip
    base_options = {"trust_remote_code": bool(m["trust_remote_code"]), "revision": m.get("revision")}
    if checkpoint:
        guard = Guardrail.from_pretrained(checkpoint, device=device, precision="fp32",
                                          trust_remote_code=base_options["trust_remote_code"], **opts)  # fmt: skip
        if guard.categories != list(categories):
            raise GuardrailError(
                f"{key}={checkpoint} has categories {guard.categories}, but the taxonomy has {list(categories)}"
            )
        guard.base_path, guard.base_options = base_path, base_options  # restart() goes back to the base model
        return guard
    torch.manual_seed(int(cfg["seed"]))
    return Guardrail.from_base(base_path, list(categories), device=device, **base_options, **opts)


def new_guardrail(cfg: DictConfig, taxonomy: Taxonomy):
    """The guardrail a training stage starts from (`guardrail.init_checkpoint` or the base model)."""
    base = model_path(cfg.guardrail.model, cfg.cache_dir)
    return build_guardrail(to_container(cfg), taxonomy.names, base, cfg.guardrail.init_checkpoint, cfg.runtime.device)


def build_generator(cfg: Mapping[str, Any], path: str, reference_path: str, work_dir: str, device: str):
    """The generator policy at `path` (the base model or a round's checkpoint); TRL's KL reference
    stays the base model at `reference_path`."""
    from duoguard.roles.generator import Generator

    pin_threads(cfg["runtime"]["torch_threads"])
    return Generator(path, cfg["generator"], work_dir=work_dir, device=device, seed=int(cfg["seed"]),
                     reference_path=reference_path, progress=bool(cfg["progress"]))  # fmt: skip


def build_judge(cfg: Mapping[str, Any], llm_path: str | None, device: str):
    """The judge: rule checks always, an LLM rating 1-5 when `judge.llm.model` is set."""
    from duoguard.roles.judge import Judge, LLMJudge

    pin_threads(cfg["runtime"]["torch_threads"])
    j = cfg["judge"]
    llm = None
    if llm_path:
        from duoguard.models import load_causal_lm

        model, tok = load_causal_lm(llm_path, j["llm"]["model"], device)
        llm = LLMJudge(model, tok, template=j["llm"]["template"], min_rating=j["llm"]["min_rating"],
                       batch_size=j["llm"]["batch_size"])  # fmt: skip
    return Judge(j, llm)
