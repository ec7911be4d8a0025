"""duoguard-safedpo: preference pairs from a game's pool (and/or files), then SafeDPO on the target.

    inputs   the game's manifest (safedpo.game_dir): its pool gives the prompts, its guardrail the
             labels; or safedpo.pool_path / guardrail_path / prompt_files / pairs.files
    outputs  pairs/, target/, attacks_heldout.jsonl (prompts kept out of training, to attack the
             target with), safedpo_report.{md,json}, and manifest.json last

The prompts are split by a hash of their id: most become preference pairs, the held-out rest
attack the target before and after SafeDPO (it never trains on them).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path
from typing import Any

from duoguard.atomic import atomic_dir
from duoguard.config import AnswerJudge, Config, ConfigError, OnBadRow, PairRecipe, Responder, to_container
from duoguard.data.pool import Pool
from duoguard.data.record import PromptRecord, write_prompts
from duoguard.distributed import run_ranks
from duoguard.errors import UserError
from duoguard.factory import (
    DECONTAMINATION_DIR,
    AnswerJudgeSource,
    answer_judge_source,
    build_answer_judge,
    build_decontaminator,
    build_helpfulness_scorer,
    decontaminate,
    model_path,
    same_checkpoint,
    set_up_torch,
)
from duoguard.manifest import StageManifest, read_manifest, write_manifest
from duoguard.report import decontamination_line, markdown_table, write_report
from duoguard.tracking import Tracker

log = logging.getLogger(__name__)

HELDOUT_ATTACKS = "attacks_heldout.jsonl"


# ---------------------------------------------------------------- the prompts
def split_prompts(
    prompts: list[PromptRecord], heldout_fraction: float
) -> tuple[list[PromptRecord], list[PromptRecord]]:
    """Prompts split by a hash of their family (stable across runs and machines): the game's rewrites of one
    seed, and its translations, land on one side, so held-out attacks are never paraphrases of trained ones."""
    train, heldout = [], []
    for prompt in prompts:
        bucket = int(hashlib.sha256((prompt.family or prompt.id).encode()).hexdigest(), 16) % 10_000
        (heldout if bucket < heldout_fraction * 10_000 else train).append(prompt)
    return train, heldout


def pool_prompts(pool_dir: Path) -> list[PromptRecord]:
    """A game's accepted prompts (its pool)."""
    return Pool(pool_dir).records()


def prompt_file_prompts(cfg: Config) -> list[PromptRecord]:
    """`safedpo.prompt_files` as prompts: each row is checked by the sample schema (a bad row
    stops the read with file and line, or is skipped with data.on_bad_row=skip); `source` is the
    row's, else the file's `source`, else the file name; `id` the row's, else `<file name>:<line>`."""
    from duoguard.data.readers import load_train_files
    from duoguard.factory import build_taxonomy, schema_context

    files = cfg.safedpo.prompt_files
    if not files:
        return []
    samples = load_train_files(
        files,
        schema_context(cfg, build_taxonomy(cfg)),
        skip_bad_rows=cfg.data.on_bad_row == OnBadRow.skip,
        key="safedpo.prompt_files",
    )
    return [PromptRecord.from_sample(s) for s in samples]


def _stage_inputs(cfg: Config) -> tuple[Path | None, Path | None]:
    """The pool and the guardrail to use: the game's (from its manifest) unless overridden."""
    s = cfg.safedpo
    game = read_manifest(s.game_dir, "game", key="safedpo.game_dir") if s.game_dir else None
    pool = Path(s.pool_path).expanduser() if s.pool_path else (game.output("pool") if game else None)
    guard = Path(s.guardrail_path).expanduser() if s.guardrail_path else (game.output("guardrail") if game else None)
    if pool is None and not s.prompt_files and not s.pairs.files:
        raise ConfigError(
            "nothing to train on: set safedpo.game_dir (a duoguard-game run, whose pool/ gives the prompts), "
            "safedpo.pool_path, safedpo.prompt_files (prompt files in the sample schema) or safedpo.pairs.files "
            "(PKU-SafeRLHF-style preference files)"
        )
    if guard is None and (pool is not None or s.prompt_files) and s.pairs.judge.kind == AnswerJudge.game:
        raise ConfigError(
            "safedpo.guardrail_path (or safedpo.game_dir) is required with prompts from a pool or "
            "safedpo.prompt_files and safedpo.pairs.judge.kind=game: the guardrail labels the target's answers "
            "(or set safedpo.pairs.judge.kind=guardrail / llm_guard)"
        )
    if guard is not None and not (guard / "config.json").is_file():
        raise FileNotFoundError(
            f"guardrail checkpoint not found at {guard} (safedpo.game_dir / safedpo.guardrail_path)"
        )
    if pool is not None and not (pool / "manifest.json").is_file():
        raise FileNotFoundError(f"no game pool at {pool} (safedpo.game_dir / safedpo.pool_path)")
    return pool, guard


# ---------------------------------------------------------------- who labels the answers
def pairs_judge_source(
    cfg: Config, guard_path: Path | None, pool_dir: Path | None, game: StageManifest | None
) -> AnswerJudgeSource:
    """`safedpo.pairs.judge`, resolved before any model loads. Circular: the judge is the guardrail of the
    game whose pool gave the prompts (the game kept the prompts that fooled it or that it labelled)."""
    source = answer_judge_source(
        cfg, cfg.safedpo.pairs.judge, game_guardrail=str(guard_path) if guard_path else None, key="safedpo.pairs.judge"
    )
    pool_guard = str(game.output("guardrail")) if game else (str(guard_path) if guard_path else None)
    return dataclasses.replace(source, circular=pool_dir is not None and same_checkpoint(source.path, pool_guard))


def judge_facts(source: AnswerJudgeSource | None) -> dict[str, Any] | None:
    """What reports and manifests say of a judge (None: no answers were judged)."""
    return dataclasses.asdict(source) if source else None


def judge_markdown(source: AnswerJudgeSource | None, what: str, key: str) -> str:
    """The report's judge line, and a visible warning when the judge is circular."""
    if source is None:
        return f"Judge of the {what}: none (no target answers were labelled)"
    line = f"Judge of the {what}: `{source.path}` ({key}.kind={source.kind})"
    if source.circular:
        line += (
            f"\n\n> **WARNING: circular judge.** The {what} are labelled by the game's own guardrail, which also "
            "picked the pool's prompts: an attack it misjudges is misjudged in training and evaluation alike. "
            f"Set {key}.kind=guardrail (another checkpoint) or llm_guard for an independent label."
        )
    return line


def transform_line(counts: dict[str, int]) -> str:
    """SafeDPO's T(D) on the pairs trained on, one line: what Δ can act on."""
    line = f"T(D): keep {counts.get('kept', 0)} · swap {counts.get('swapped', 0)} · drop {counts.get('dropped', 0)}"
    if not counts.get("swapped") and not counts.get("dropped"):
        line += " (every chosen answer was already safe; safedpo.pairs.recipe=helpfulness also swaps and drops)"
    return line


# ---------------------------------------------------------------- the stage
def train_target(cfg: Config, pairs: list[dict[str, Any]], base: str, out: str) -> dict[str, Any]:
    """One rank's part of the stage: every rank trains the target (data parallel, sharded under ZeRO),
    rank 0 saves it to <out>/target."""
    from duoguard.distributed import is_main, rank_device
    from duoguard.roles.target import Target
    from duoguard.safedpo.trainer import train_safedpo

    set_up_torch(cfg)
    target = Target(base, cfg.target, device=rank_device(cfg.runtime.device))  # this rank's own GPU
    stats = train_safedpo(
        pairs, target, cfg.safedpo, work_dir=out, precision=cfg.target.model.precision, progress=cfg.progress
    )
    if is_main():
        atomic_dir(Path(out) / "target", target.save, replace=True)
    return stats


def release_memory() -> None:
    """Give back what models built in this process held, before ranks load their own."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_safedpo_stage(cfg: Config) -> dict[str, Any]:
    from duoguard.safedpo.pairs import build_pairs, read_pku_saferlhf, save_pairs

    out = Path(cfg.output_dir)
    s, p = cfg.safedpo, cfg.safedpo.pairs
    pool_dir, guard_path = _stage_inputs(cfg)
    game = read_manifest(s.game_dir, "game", key="safedpo.game_dir") if s.game_dir else None
    # how the game checked its pool's labels ("none": unchecked); None for a game from before the setting
    label_check = game.facts.get("label_check") if game else None
    extra_pairs = []  # public preference files are read (and checked) before any model loads
    for i, f in enumerate(p.files):
        try:
            extra_pairs += read_pku_saferlhf(f.path, limit=f.limit)
        except UserError as e:
            raise UserError(f"safedpo.pairs.files[{i}]: {e}") from None
    from_pool = pool_prompts(pool_dir) if pool_dir else []
    from_files = prompt_file_prompts(cfg)  # read (and checked) before any model loads, too
    # near-copies of any configured evaluation prompt leave the prompts first (data.decontamination)
    prompts, decontamination = decontaminate(
        from_pool + from_files,
        "safedpo prompts",
        cfg,
        build_decontaminator(cfg),
        text=lambda x: x.text,
        report=out / DECONTAMINATION_DIR / "safedpo_prompts.jsonl",
    )
    train_prompts, heldout = split_prompts(prompts, p.heldout_fraction)
    n_split = len(train_prompts)
    if p.unsafe_prompts_only:
        train_prompts = [x for x in train_prompts if x.unsafe]
    if (from_pool or from_files) and not train_prompts and not extra_pairs:
        raise UserError(
            f"no prompts left to build pairs from: {len(from_pool)} from the pool and {len(from_files)} from "
            f"safedpo.prompt_files, {len(heldout)} held out (safedpo.pairs.heldout_fraction), "
            f"{n_split - len(train_prompts)} safe-labelled left out (safedpo.pairs.unsafe_prompts_only)"
        )
    write_prompts(out / HELDOUT_ATTACKS, heldout)
    judge_source = pairs_judge_source(cfg, guard_path, pool_dir, game) if train_prompts else None
    from duoguard.roles.target import Target  # torch: after every check of the stage's inputs

    set_up_torch(cfg)
    tracker = Tracker(cfg.logger, out, config=to_container(cfg), job_type="safedpo")
    try:
        device = cfg.runtime.device
        base = model_path(cfg.target.model, cfg.cache_dir)
        target = Target(base, cfg.target, device=device)
        pairs, pair_stats = [], {"prompts": 0}
        judge = responder = scorer = None
        if train_prompts:  # only preference files: no answers to label
            judge = build_answer_judge(
                cfg=cfg, judge_cfg=p.judge, source=judge_source, device=device, key="safedpo.pairs.judge"
            )
            if p.recipe == PairRecipe.helpfulness:
                scorer = build_helpfulness_scorer(cfg=cfg, helpfulness_cfg=p.helpfulness, device=device)
            if p.responder == Responder.model:  # the config check made sure responder_model is set
                responder_cfg = dataclasses.replace(cfg.target, model=p.responder_model)
                responder = Target(model_path(p.responder_model, cfg.cache_dir), responder_cfg, device=device)
            pairs, pair_stats = build_pairs(
                train_prompts,
                target,
                judge,
                p,
                refusals=cfg.data.response_templates.refusal,
                responder=responder,
                scorer=scorer,
                progress=cfg.progress,
            )
        pairs += extra_pairs
        if not pairs:
            raise UserError(
                f"no preference pairs were built ({pair_stats}); with recipe=egida the target answered "
                "every prompt safely: try more samples_per_prompt, recipe=all, or preference files"
            )
        save_pairs(pairs, out / "pairs")
        target = judge = responder = scorer = None  # the training ranks load the target afresh: free its memory
        release_memory()
        stats = run_ranks(
            train_target,
            cfg,
            pairs,
            base,
            str(out),
            ranks=s.num_workers,
            deepspeed=bool(s.deepspeed),
            name="SafeDPO training",
        )
        result = {
            "target_base": base,
            "target": str(out / "target"),
            "guardrail": str(guard_path) if guard_path else None,
            "pool": str(pool_dir) if pool_dir else None,
            "prompt_files": [str(f.path) for f in s.prompt_files],
            "heldout_attacks": len(heldout),
            "pairs": {
                **pair_stats,
                "prompts_from_pool": len(from_pool),
                "prompts_from_files": len(from_files),
                "from_files": len(extra_pairs),
            },
            "train": stats,
            "delta": s.delta,
            "beta": s.beta,
            "pool_label_check": label_check,
            "pairs_judge": judge_facts(judge_source),
            "decontamination": decontamination,
        }
        rows = [(k, v) for k, v in {**result["pairs"], **stats["transform"]}.items()]
        md = (
            "\n\n".join(
                [
                    f"# SafeDPO (Δ = {s.delta:g}, β = {s.beta:g})",
                    f"Target `{base}` -> `{out / 'target'}`"
                    + (
                        "\n\n**The pool's labels are unchecked** (the game ran with judge.label_check=none)."
                        if label_check == "none"
                        else ""
                    ),
                    judge_markdown(judge_source, "pairs", "safedpo.pairs.judge"),
                    "## Pairs and T(D)\n\n"
                    + markdown_table(("", "count"), rows)
                    + "\n\n"
                    + decontamination_line(decontamination),
                    transform_line(stats["transform"]),
                    "## Training\n\n"
                    + markdown_table(("metric", "value"), [(k, v) for k, v in stats.items() if k != "transform"]),
                ]
            )
            + "\n"
        )
        write_report(out, "safedpo_report", result, md)
        print(md)
        tracker.log({k: v for k, v in stats.items() if k != "transform"})
        tracker.log_artifact(out / "pairs", "safedpo_pairs", "dataset")
        write_manifest(
            out,
            StageManifest(
                stage="safedpo",
                outputs={
                    "target": "target",
                    "pairs": "pairs",
                    "heldout_attacks": HELDOUT_ATTACKS,
                    "report": "safedpo_report.json",
                },
                inputs={
                    "target_base": base,
                    "guardrail": result["guardrail"],
                    "pool": result["pool"],
                    "game": str(s.game_dir) if s.game_dir else None,
                },
                facts={
                    "delta": s.delta,
                    "beta": s.beta,
                    "heldout_attacks": len(heldout),
                    "pairs_judge": result["pairs_judge"],
                },
                config=to_container(cfg),
            ),
        )
        return result
    finally:
        tracker.finish()
