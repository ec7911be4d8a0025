"""What the configuration describes, built: the taxonomy, the training data, model paths, and the
three roles of the game.

Every app and stage builds through here, so a setting such as `guardrail.init_checkpoint` or a
model's `revision` means the same thing in `duoguard-guardrail`, the game and the pipeline. Every
builder takes the typed `Config` (it pickles, so the runtime may call a role builder inside a Ray
actor); role builders take keyword arguments only, the ones a `RoleSpec` names.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from duoguard.config import (
    BenchmarkConfig,
    CalibrationRule,
    Config,
    ConfigError,
    Contaminated,
    ModelConfig,
    OnBadRow,
)
from duoguard.data.benchmarks import Benchmark, load_benchmark
from duoguard.data.decontam import Decontaminator
from duoguard.data.readers import builtin_seed_texts, load_seeds, load_train_files
from duoguard.data.responses import response_examples
from duoguard.data.schema import Sample, SchemaContext, split_heldout, split_heldout_both_sides
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
    return _with_responses(train, cfg), _with_responses(heldout, cfg)


def split_for_calibration(samples: list[Sample], cfg: Config) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """duoguard-guardrail's train / calibration / held-out split: the held-out split of `split_with_responses`,
    its families divided again (`guardrail.calibration.split` of them choose the decision thresholds, the
    others measure them), so no reported held-out row is one the thresholds were chosen on. With
    `guardrail.calibration.rule: none` nothing is calibrated and the whole held-out split is measured."""
    d, c = cfg.data, cfg.guardrail.calibration
    train, heldout = split_heldout(samples, d.heldout_fraction, d.split_seed)
    calibration: list[Sample] = []
    if c.rule != CalibrationRule.none and heldout:
        heldout, calibration = split_heldout_both_sides(heldout, c.split, d.split_seed + 1)
        if not (heldout and calibration):
            log.warning(
                "guardrail.calibration.split: the held-out split has one family (%d rows): %s; raise "
                "data.heldout_fraction for both",
                len(heldout) + len(calibration),
                "nothing to calibrate on, the threshold stays guardrail.threshold"
                if heldout
                else "every held-out row calibrates, none is measured",
            )
    return _with_responses(train, cfg), _with_responses(calibration, cfg), _with_responses(heldout, cfg)


def _with_responses(prompts: list[Sample], cfg: Config) -> list[Sample]:
    """`prompts` and, with data.response_examples, their response examples (made from these prompts only)."""
    if not cfg.data.response_examples:
        return prompts
    return prompts + response_examples(prompts, cfg.data.response_templates)


def load_benchmark_entry(b: BenchmarkConfig, key: str) -> Benchmark:
    """One benchmark file from its config entry; any bad format, option, path or row is a
    UserError naming the config key, the file and (for a row) its line."""
    fmt = str(b.format)  # a BenchmarkFormat (its value), or a string a section built by hand was given
    try:
        return load_benchmark(
            b.name,
            fmt,
            b.path,
            language=b.language,
            limit=b.limit,
            columns=dict(b.columns),
            unsafe_values=list(b.unsafe_values),
            safe_values=list(b.safe_values),
            **dict(b.options),
        )
    except (UserError, OSError) as e:  # OSError: a missing, unreadable or damaged file
        raise UserError(f"{key} ({b.name}): {e}") from None


def load_benchmarks_from(entries: Sequence[BenchmarkConfig], key: str) -> list[Benchmark]:
    """Benchmark files from a list of config entries; errors name `key[i]`."""
    return [load_benchmark_entry(b, f"{key}[{i}]") for i, b in enumerate(entries)]


# ---------------------------------------------------------------- decontamination
DECONTAMINATION_DIR = "decontamination"  # a run's overlap lists, one jsonl per training source
T = TypeVar("T")


def evaluation_entries(cfg: Config) -> list[tuple[str, BenchmarkConfig]]:
    """(config key, entry) of every configured evaluation set: guardrail benchmarks, target attacks and the
    over-refusal set. The built-in seed set as the offline over-refusal set is left out: it is the
    training seed set itself (a smoke-test default; eval=shared_benchmarks measures on XSTest)."""
    e = cfg.eval
    entries = [(f"eval.benchmarks[{i}]", b) for i, b in enumerate(e.benchmarks)]
    entries += [(f"eval.target.attacks[{i}]", b) for i, b in enumerate(e.target.attacks)]
    if e.target.over_refusal is not None:
        entries.append(("eval.target.over_refusal", e.target.over_refusal))
    return [(k, b) for k, b in entries if not (str(b.format) == "duoguard_seeds" and b.path == "builtin")]


def build_decontaminator(cfg: Config) -> Decontaminator | None:
    """Every prompt (and answer) of every configured evaluation set, whole (their `limit`s ignored); None
    when no evaluation set is configured."""
    sets: dict[str, list[str]] = {}
    for key, b in evaluation_entries(cfg):
        bench = load_benchmark_entry(dataclasses.replace(b, limit=None), key)
        texts = sets.setdefault(bench.name, [])
        texts += [t for ex in bench.examples for t in (ex.text, ex.response) if t]
    if not sets:
        return None
    d = cfg.data.decontamination
    return Decontaminator({k: list(dict.fromkeys(v)) for k, v in sets.items()}, ngram=d.ngram, threshold=d.threshold)


def decontaminate(
    items: Sequence[T],
    source: str,
    cfg: Config,
    finder: Decontaminator | None,
    *,
    text: Callable[[T], str],
    family: Callable[[T], str] | None = None,
    report: Path | None = None,
) -> tuple[list[T], dict[str, int]]:
    """Training items with near-copies of evaluation prompts (and, given `family`, their families) dropped,
    kept or refused as `data.decontamination.action` says; the overlaps, both texts, are written to the jsonl
    file `report` (replaced; empty when none). Returns the items to train on and counts for reports."""
    if finder is None or not items:
        return list(items), {"checked": len(items), "overlaps": 0, "dropped": 0}
    action = cfg.data.decontamination.action
    clean, contaminated, overlaps = finder.split(items, source, text, family)
    if overlaps and action == Contaminated.fail:
        shown = "; ".join(
            f"{o.text!r} ~ {o.benchmark}: {o.benchmark_text!r} ({o.similarity:.2f})" for o in overlaps[:3]
        )
        raise UserError(
            f"data.decontamination.action=fail: {len(overlaps)} {source} text(s) nearly copy evaluation prompts "
            f"(similarity >= {finder.threshold}): {shown}"
        )
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text("".join(json.dumps(o.to_dict(), ensure_ascii=False) + "\n" for o in overlaps), "utf-8")
    dropped = len(contaminated) if action == Contaminated.drop else 0
    if overlaps:
        log.warning(
            "decontamination: %d %s text(s) nearly copy prompts of %s; %s (%s)",
            len(overlaps),
            source,
            ", ".join(sorted({o.benchmark for o in overlaps})),
            f"{dropped} row(s) dropped with their families" if dropped else "kept (data.decontamination.action)",
            report or "not written",
        )
    kept = clean if action == Contaminated.drop else list(items)
    return kept, {"checked": len(items), "overlaps": len(overlaps), "dropped": dropped}


def decontaminated_training_samples(
    cfg: Config, samples: list[Sample], finder: Decontaminator | None, run_dir: Path | None
) -> tuple[list[Sample], dict[str, int]]:
    """Seeds and data.train_files checked against every configured evaluation set (whole families dropped)."""
    return decontaminate(
        samples,
        "training",
        cfg,
        finder,
        text=lambda s: s.text,
        family=lambda s: s.family or s.id,
        report=run_dir / DECONTAMINATION_DIR / "training.jsonl" if run_dir else None,
    )


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


# ---------------------------------------------------------------- who judges the target's answers
@dataclasses.dataclass(frozen=True)
class AnswerJudgeSource:
    """The judge of target answers a config names, resolved before any model loads."""

    kind: str  # game | guardrail | llm_guard | pattern (AnswerJudge)
    path: str  # the checkpoint or model it loads
    circular: bool  # it is the guardrail of the game that picked the prompts (the pool)

    def describe(self) -> str:
        return f"{self.kind} ({self.path})"


def same_checkpoint(a: str | None, b: str | None) -> bool:
    return bool(a and b) and Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def answer_judge_source(cfg: Config, judge_cfg, *, game_guardrail: str | None, key: str) -> AnswerJudgeSource:
    """Which model judges answers (`judge_cfg`, an AnswerJudgeConfig at `key`): `game` is `game_guardrail`
    (the guardrail of the game whose pool gave the prompts); a missing checkpoint fails here, naming `key`."""
    from duoguard.config import AnswerJudge

    kind = AnswerJudge(judge_cfg.kind)
    if kind == AnswerJudge.pattern:  # no model: the path names the patterns, for reports and manifests
        path = f"pattern: answer ~ {judge_cfg.pattern!r}, prompt ~ {judge_cfg.prompt_pattern!r}"
        return AnswerJudgeSource(str(kind), path, circular=False)
    if kind == AnswerJudge.llm_guard:
        return AnswerJudgeSource(str(kind), model_path(judge_cfg.model, cfg.cache_dir), circular=False)
    path = game_guardrail if kind == AnswerJudge.game else str(Path(judge_cfg.path).expanduser())
    if not path:
        raise ConfigError(
            f"{key}.kind=game, but there is no game guardrail (safedpo.game_dir or safedpo.guardrail_path; for "
            f"eval.target, the SafeDPO run of eval.target.safedpo_dir): set {key}.kind=guardrail or llm_guard"
        )
    if not Path(path, "config.json").is_file():
        raise FileNotFoundError(f"no guardrail checkpoint to judge answers at {path} ({key})")
    return AnswerJudgeSource(str(kind), str(path), circular=same_checkpoint(path, game_guardrail))


def build_answer_judge(*, cfg: Config, judge_cfg, source: AnswerJudgeSource, device: str, key: str):
    """The judge `source` names, with `unsafe_scores` / `is_unsafe` / `threshold` whichever kind it is:
    a Guardrail (its own threshold unless `judge_cfg.threshold`) or an LLMGuard over the taxonomy."""
    from duoguard.models import pick_device

    if source.kind == "pattern":
        from duoguard.roles.pattern_guard import PatternGuard

        return PatternGuard(judge_cfg.pattern, judge_cfg.prompt_pattern, key=key)
    pin_threads(cfg.runtime.torch_threads)
    device = pick_device(device)
    if source.kind != "llm_guard":
        from duoguard.roles.guardrail import Guardrail

        return Guardrail.from_pretrained(source.path, device=device, threshold=judge_cfg.threshold)
    from duoguard.models import load_causal_lm
    from duoguard.roles.llm_guard import LLMGuard

    model, tok = load_causal_lm(source.path, judge_cfg.model, device)
    return LLMGuard(
        model,
        tok,
        categories=[(c.code, c.name) for c in build_taxonomy(cfg).categories],
        template=judge_cfg.template,
        use_chat_template=judge_cfg.use_chat_template,
        threshold=0.5 if judge_cfg.threshold is None else judge_cfg.threshold,
        batch_size=judge_cfg.batch_size,
        unsafe_token=judge_cfg.unsafe_token,
        safe_token=judge_cfg.safe_token,
        key=key,
    )


def build_helpfulness_scorer(*, cfg: Config, helpfulness_cfg, device: str, key: str = "safedpo.pairs.helpfulness"):
    """The scorer that orders answers by helpfulness (`scores(prompts, responses)`, higher = better)."""
    from duoguard.config import HelpfulnessScorer
    from duoguard.models import pick_device

    pin_threads(cfg.runtime.torch_threads)
    h, device = helpfulness_cfg, pick_device(device)
    path = model_path(h.model, cfg.cache_dir)
    if HelpfulnessScorer(h.scorer) == HelpfulnessScorer.reward_model:
        from duoguard.roles.helpfulness import RewardModel

        return RewardModel.from_pretrained(path, h.model, device=device, batch_size=h.batch_size, key=f"{key}.model")
    from duoguard.models import load_causal_lm
    from duoguard.roles.helpfulness import LLMHelpfulnessRater

    model, tok = load_causal_lm(path, h.model, device)
    try:
        return LLMHelpfulnessRater(model, tok, template=h.template, batch_size=h.batch_size)
    except UserError as e:
        raise ConfigError(f"{key}: {str(e).removeprefix('judge.llm: ')}") from None
