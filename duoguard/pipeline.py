"""The pipeline: game -> SafeDPO -> target evaluation, one folder each in one run folder.

    duoguard-game                                   -> <game>/      pool, guardrail, generator, manifest.json
    duoguard-safedpo safedpo.game_dir=<game>        -> <safedpo>/   pairs, target, held-out attacks, manifest.json
    duoguard-eval eval.mode=target eval.target.safedpo_dir=<safedpo>
                                                    -> <eval>/      target_report.{md,json}, plots, manifest.json
    duoguard-pipeline                               -> all three in <run>/game, <run>/safedpo, <run>/eval

Each stage reads the previous one's manifest (duoguard/manifest.py) and writes its own last, so a
rerun keeps the stages whose manifest is there.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from duoguard.config import Config, SearchConfig, with_overrides
from duoguard.manifest import has_manifest, read_manifest

log = logging.getLogger(__name__)


def _stage_cfg(cfg: Config, output_dir: Path, **updates: Any) -> Config:
    """The pipeline's config for one stage: its own output dir and inputs."""
    return with_overrides(cfg, {"output_dir": str(output_dir), **updates})


def run_pipeline(cfg: Config) -> dict[str, Any]:
    """The three stages in turn; a stage whose manifest is there is kept (the game resumes a
    stopped run itself). Returns the target evaluation's report."""
    from duoguard.game import play_game
    from duoguard.stages.safedpo import run_safedpo_stage
    from duoguard.stages.target_eval import run_target_eval, target_eval_sets

    out = Path(cfg.output_dir)
    if not cfg.logger.group:  # the stages' W&B runs share one group
        cfg.logger.group = out.name
    game, safedpo, evaluation = out / "game", out / "safedpo", out / "eval"
    target_eval_sets(cfg)  # bad evaluation files fail now, not after the game and SafeDPO

    log.info("pipeline stage 1/3: the game (%s)", game)
    history = play_game(_stage_cfg(cfg, game))["history"]

    if has_manifest(safedpo, "safedpo"):
        log.info("pipeline stage 2/3: SafeDPO already done in %s", safedpo)
    else:
        log.info("pipeline stage 2/3: pairs and SafeDPO (%s)", safedpo)
        run_safedpo_stage(_stage_cfg(cfg, safedpo, **{"safedpo.game_dir": str(game)}))

    log.info("pipeline stage 3/3: evaluation (%s)", evaluation)
    report = run_target_eval(_stage_cfg(cfg, evaluation, **{"eval.target.safedpo_dir": str(safedpo)}))
    report["objective"] = sweep_objective(report, history[-1] if history else {}, cfg.search)
    if cfg.experiment == "toy_world":  # the toy world's numbers against its truth: <run>/toy_world.md
        from duoguard.toy_report import toy_world_report

        toy_world_report(out, cfg.target)
    index = write_pipeline_index(out, report["objective"])
    log.info(
        "pipeline done (objective %.4f): the reports are linked from %s (the target's: %s)",
        report["objective"],
        index,
        read_manifest(evaluation, "target_eval").output("markdown"),
    )
    return report


# the pipeline's reports, by stage: each stage folder's own file, linked from <run>/report.md
STAGE_REPORTS = (
    ("game", "report.md", "rounds, diversity, coverage, candidates"),
    ("safedpo", "safedpo_report.md", "pairs, T(D), training"),
    ("eval", "target_report.md", "attack success rate and over-refusal, before and after SafeDPO"),
    (".", "toy_world.md", "experiment=toy_world: every number above against the world's truth"),
)


def write_pipeline_index(out: Path, objective: float) -> Path:
    """<run>/report.md: a link to each stage's report that exists, and the sweep objective."""
    lines = ["# Pipeline report", ""]
    lines += [
        f"- [{stage}/{name}]({stage}/{name}): {what}"
        for stage, name, what in STAGE_REPORTS
        if (out / stage / name).is_file()
    ]
    lines += ["", f"Sweep objective (search.*, minimised): {objective:.4f}", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def sweep_objective(report: dict[str, Any], game_metrics: dict[str, Any], s: SearchConfig) -> float:
    """What a sweep minimises (search.*): the attack success rate after SafeDPO plus weighted over-refusal
    after SafeDPO (a target that refuses everything pays for it) and the game guardrail's held-out F1 loss."""
    after = report["after"]
    value = after["asr"]["overall"]["asr"]
    if s.over_refusal_weight:
        value += s.over_refusal_weight * after["over_refusal"]["rate"]
    if s.heldout_f1_weight:
        value += s.heldout_f1_weight * (1.0 - (game_metrics.get("heldout_f1") or 0.0))
    return float(value)
