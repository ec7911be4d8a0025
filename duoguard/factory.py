"""What the configuration describes, built: the taxonomy, the training data, model paths, and the
three roles of the game.

Every app and stage builds through here, so a setting such as `guardrail.init_checkpoint` or a
model's `revision` means the same thing in `duoguard-guardrail`, the game and the pipeline. Every
builder takes the typed `Config` (it pickles, so the runtime may call a role builder inside a Ray
actor); role builders take keyword arguments only, the ones a `RoleSpec` names.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from duoguard.config import BenchmarkConfig, Config, ConfigError, ModelConfig, OnBadRow
from duoguard.data.benchmarks import Benchmark, load_benchmark
from duoguard.data.readers import builtin_seed_texts, load_seeds, load_train_files
from duoguard.data.responses import response_examples
from duoguard.data.schema import Sample, SchemaContext, split_heldout
from duoguard.distributed import rank_device
from duoguard.errors import UserError
from duoguard.taxonomy import Taxonomy

if TYPE_CHECKING:  # the role classes load torch: imported where a role is built
    from duoguard.roles.generator import Generator
    from duoguard.roles.guardrail import Guardrail
    from duoguard.roles.judge import Judge

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- process set-up
def pin_threads(threads: int | None) -> None:
    """The same thread count gives the same numbers (and keeps roles from oversubscribing cores)."""
    import torch

    if threads:
        torch.set_num_threads(threads)


def set_up_torch(cfg: Config) -> None:
    """Seed everything and pin threads."""
    from transformers import set_seed

    pin_threads(cfg.runtime.torch_threads)
    set_seed(cfg.seed)


# ---------------------------------------------------------------- taxonomy and data
def build_taxonomy(cfg: Config) -> Taxonomy:
    return Taxonomy.from_config(cfg.taxonomy)


def schema_context(cfg: Config, taxonomy: Taxonomy) -> SchemaContext:
    return SchemaContext(
        taxonomy=taxonomy,
        languages=list(cfg.data.languages),
        attack_styles=list(cfg.data.attack_styles),
        max_text_chars=cfg.data.max_text_chars,
    )


def load_training_samples(cfg: Config, taxonomy: Taxonomy) -> list[Sample]:
    """Seeds plus every configured training file, all checked against the schema."""
    d = cfg.data
    samples = load_seeds(d.seeds, taxonomy, list(d.languages), list(d.attack_styles), d.max_text_chars)
    samples += load_train_files(
        d.train_files, schema_context(cfg, taxonomy), skip_bad_rows=d.on_bad_row == OnBadRow.skip
    )
    if not samples:
        raise ConfigError("data.seeds: no training samples (data.seeds is null and data.train_files is empty)")
    return samples


def split_with_responses(samples: list[Sample], cfg: Config) -> tuple[list[Sample], list[Sample]]:
    """Train / held-out split; each side then gets its own response examples (no prompt leaks
    across the split through its answers)."""
    d = cfg.data
    train, heldout = split_heldout(samples, d.heldout_fraction, d.split_seed)
    if d.response_examples:
        train += response_examples(train, d.response_templates)
        heldout += response_examples(heldout, d.response_templates)
    return train, heldout


def load_benchmark_entry(b: BenchmarkConfig, key: str) -> Benchmark:
    """One benchmark file from its config entry; any bad format, option, path or row is a
    UserError naming the config key, the file and (for a row) its line."""
    fmt = str(b.format)  # a BenchmarkFormat (its value), or a string a section built by hand was given
    try:
        return load_benchmark(b.name, fmt, b.path, language=b.language, limit=b.limit, **dict(b.options))
    except (UserError, OSError) as e:  # OSError: a missing, unreadable or damaged file
        raise UserError(f"{key} ({b.name}): {e}") from None


def load_benchmarks_from(entries: Sequence[BenchmarkConfig], key: str) -> list[Benchmark]:
    """Benchmark files from a list of config entries; errors name `key[i]`."""
    return [load_benchmark_entry(b, f"{key}[{i}]") for i, b in enumerate(entries)]


# ---------------------------------------------------------------- models and roles
def model_path(model_cfg: ModelConfig, cache_dir: str) -> str:
    """Resolve a model config to a loadable id or folder (building the tiny model if asked)."""
    from duoguard.models import resolve_model_path

    return resolve_model_path(model_cfg, cache_dir, builtin_seed_texts())


def build_guardrail(
    *,
    cfg: Config,
    categories: Sequence[str],
    base_path: str,
    checkpoint: str | None,
    device: str,
    key: str = "guardrail.init_checkpoint",
) -> Guardrail:
    """The guardrail: a checkpoint (a game round's, or `guardrail.init_checkpoint`) or the base
    model with a fresh head over `categories`; either way with the configured inference settings.
    `key` names the checkpoint's origin in the error when its categories are not the taxonomy's."""
    import torch

    from duoguard.roles.guardrail import Guardrail, GuardrailError

    pin_threads(cfg.runtime.torch_threads)
    g, m = cfg.guardrail, cfg.guardrail.model
    opts = dict(
        threshold=g.threshold,
        max_length=g.max_length,
        response_template=g.response_template,
        batch_size=g.predict_batch_size,
        max_batch_tokens=g.predict_max_tokens,
    )
    base_options = {"trust_remote_code": m.trust_remote_code, "revision": m.revision}
    if checkpoint:
        guard = Guardrail.from_pretrained(
            checkpoint, device=device, precision="fp32", trust_remote_code=m.trust_remote_code, **opts
        )
        if guard.categories != list(categories):
            raise GuardrailError(
                f"{key}={checkpoint} has categories {guard.categories}, but the taxonomy has {list(categories)}"
            )
        guard.base_path, guard.base_options = base_path, base_options  # restart() goes back to the base model
        return guard
    torch.manual_seed(cfg.seed)
    return Guardrail.from_base(base_path, list(categories), device=device, **base_options, **opts)


def new_guardrail(cfg: Config, taxonomy: Taxonomy) -> Guardrail:
    """The guardrail a training stage starts from (`guardrail.init_checkpoint` or the base model)."""
    base = model_path(cfg.guardrail.model, cfg.cache_dir)
    return build_guardrail(
        cfg=cfg,
        categories=taxonomy.names,
        base_path=base,
        checkpoint=cfg.guardrail.init_checkpoint,
        device=rank_device(cfg.runtime.device),  # in a process group: this rank's own GPU
    )


def build_generator(*, cfg: Config, path: str, reference_path: str, work_dir: str, device: str) -> Generator:
    """The generator policy at `path` (the base model or a round's checkpoint); TRL's KL reference
    stays the base model at `reference_path`."""
    from duoguard.roles.generator import Generator

    pin_threads(cfg.runtime.torch_threads)
    return Generator(
        path,
        cfg.generator,
        work_dir=work_dir,
        device=device,
        seed=cfg.seed,
        reference_path=reference_path,
        progress=cfg.progress,
    )


def build_judge(*, cfg: Config, llm_path: str | None, device: str) -> Judge:
    """The judge: rule checks always, an LLM rating 1-5 when `judge.llm.model` is set."""
    from duoguard.roles.judge import Judge, LLMJudge

    pin_threads(cfg.runtime.torch_threads)
    j = cfg.judge
    llm = None
    if llm_path:
        from duoguard.models import load_causal_lm

        model, tok = load_causal_lm(llm_path, j.llm.model, device)
        llm = LLMJudge(model, tok, template=j.llm.template, min_rating=j.llm.min_rating, batch_size=j.llm.batch_size)
    return Judge(j, llm)
