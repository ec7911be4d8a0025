"""duoguard-eval's target mode: attack success rate and over-refusal of a target, before and after SafeDPO.

inputs   the SafeDPO stage's manifest (eval.target.safedpo_dir): the target after SafeDPO, its
         base (before), the guardrail that judges answers, the held-out game prompts; plus
         eval.target.attacks and eval.target.over_refusal
outputs  target_report.{md,json}, plots, and manifest.json last
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from duoguard.config import Config, RefusalJudge, to_container
from duoguard.data.record import PromptRecord, read_prompts
from duoguard.distributed import run_ranks
from duoguard.errors import UserError
from duoguard.factory import (
    AnswerJudgeSource,
    answer_judge_source,
    build_answer_judge,
    load_benchmark_entry,
    model_path,
    same_checkpoint,
    set_up_torch,
)
from duoguard.manifest import StageManifest, read_manifest, write_manifest
from duoguard.report import plot_asr_by_style, plot_asr_heatmap, write_report
from duoguard.tracking import Tracker

log = logging.getLogger(__name__)


def _heldout_attacks(safedpo: StageManifest | None, limit: int | None) -> list[PromptRecord]:
    """The SafeDPO stage's held-out game prompts that were meant to be unsafe (the target never trained on them)."""
    if safedpo is None:
        return []
    attacks = [p for p in read_prompts(safedpo.output("heldout_attacks")) if p.unsafe]
    return attacks[:limit] if limit else attacks


def _refusal_judge(cfg: Config, device: str):
    """The over-refusal judge `eval.target.refusal_judge` names, and how the report labels it."""
    from duoguard.refusal import DEFAULT_PATTERNS, LLMRefusalJudge, RefusalDetector

    t = cfg.eval.target
    if t.refusal_judge == RefusalJudge.llm:
        path = model_path(t.refusal_llm.model, cfg.cache_dir)
        return LLMRefusalJudge.from_pretrained(path, t.refusal_llm, device=device), f"llm ({path})"
    return RefusalDetector(list(t.refusal_patterns) or DEFAULT_PATTERNS), "rules"


def eval_judge_warnings(source: AnswerJudgeSource, pairs_judge: dict[str, Any] | None) -> list[str]:
    """Why the ASR judge is not independent of what it measures, one line each (empty: independent)."""
    out = []
    if source.circular:
        out.append(
            "circular evaluation: the judge is the game's own guardrail, which also picked the attack prompts "
            "(and labelled the SafeDPO pairs): attacks it misjudges are invisible to this ASR. Set "
            "eval.target.judge.kind=guardrail (another checkpoint) or llm_guard for an independent judge."
        )
    elif source.kind != "pattern" and pairs_judge and same_checkpoint(pairs_judge.get("path"), source.path):
        # (a pattern judge is the world's truth: a target trained to satisfy it is simply safer)
        out.append(
            "the judge also labelled the SafeDPO pairs: the target was trained to satisfy it, so this ASR is not "
            "independent. Set eval.target.judge to another guardrail or LLM guard."
        )
    return out


def target_eval_sets(cfg: Config) -> tuple[list, list[str]]:
    """The attack prompts of `eval.target.attacks` and the safe prompts of `eval.target.over_refusal`
    (at most `eval.target.max_prompts` each), read and checked without loading a model; a bad set
    is a UserError naming its key, file and line."""
    from duoguard.evaluate import attacks_from_benchmark

    t = cfg.eval.target
    attacks = []
    for i, entry in enumerate(t.attacks):
        bench = load_benchmark_entry(entry, f"eval.target.attacks[{i}]")
        found = attacks_from_benchmark(bench, t.max_prompts)
        if not found:
            raise UserError(
                f"eval.target.attacks[{i}] ({bench.name}): {bench.source} has no unsafe prompts to attack with"
            )
        attacks += found
    safe_prompts: list[str] = []
    if t.over_refusal is not None:
        bench = load_benchmark_entry(t.over_refusal, "eval.target.over_refusal")
        safe_prompts = [e.text for e in bench.examples if not e.unsafe][: t.max_prompts]
        if not safe_prompts:
            raise UserError(f"eval.target.over_refusal ({bench.name}): {bench.source} has no safe prompts")
    return attacks, safe_prompts


class Answered:
    """A target's answers computed ahead (by its ranks), served the way `Target.answer` gives them."""

    def __init__(self, calls: list[tuple[list[str], int]], answers: list[list[list[str]]]):
        self.table = {(tuple(prompts), n): got for (prompts, n), got in zip(calls, answers, strict=True)}

    def answer(self, prompts: list[str], *, n: int = 1, seed: int = 0, progress: bool = False) -> list[list[str]]:
        return self.table[(tuple(prompts), n)]


def answer_share(path: str, cfg: Config, calls: list[tuple[list[str], int]], seed: int = 0) -> list[list[list[str]]]:
    """One rank's part of the answers: for each (prompts, n), rank r of w answers prompts[r::w] (sampled from
    seed + r); every rank returns all the answers, in order."""
    from duoguard.distributed import gather_strided, rank, rank_device, world_size
    from duoguard.roles.target import Target

    set_up_torch(cfg)
    target = Target(path, cfg.target, device=rank_device(cfg.runtime.device))
    r, w = rank(), world_size()
    out = []
    for prompts, n in calls:
        mine = target.answer(prompts[r::w], n=n, seed=seed + r, progress=cfg.progress and r == 0)
        out.append(gather_strided(mine, len(prompts)))
    return out


def run_target_eval(cfg: Config) -> dict[str, Any]:
    from duoguard.evaluate import attack_success, over_refusal, target_comparison_markdown
    from duoguard.metrics import binary_metrics

    out = Path(cfg.output_dir)
    t = cfg.eval.target
    safedpo = read_manifest(t.safedpo_dir, "safedpo", key="eval.target.safedpo_dir") if t.safedpo_dir else None
    after = t.after or (str(safedpo.output("target")) if safedpo else None)
    if not after or not Path(after, "config.json").is_file():
        raise FileNotFoundError(f"no target after SafeDPO at {after} (eval.target.safedpo_dir or eval.target.after)")
    source = answer_judge_source(
        cfg, t.judge, game_guardrail=safedpo.input("guardrail") if safedpo else None, key="eval.target.judge"
    )
    judge_warnings = eval_judge_warnings(source, safedpo.facts.get("pairs_judge") if safedpo else None)
    judge_path = source.path
    public_attacks, safe_prompts = target_eval_sets(cfg)
    attacks = _heldout_attacks(safedpo, t.max_prompts) + public_attacks
    if not attacks:
        raise UserError(
            "no attack prompts: give eval.target.safedpo_dir (held-out game prompts) or eval.target.attacks"
        )
    set_up_torch(cfg)
    tracker = Tracker(cfg.logger, out, config=to_container(cfg), job_type="eval")
    try:
        device = cfg.runtime.device
        judge = build_answer_judge(cfg=cfg, judge_cfg=t.judge, source=source, device=device, key="eval.target.judge")
        detector, refusal_judge = _refusal_judge(cfg, device)
        before = t.before or (safedpo.input("target_base") if safedpo else None)
        before = before or model_path(cfg.target.model, cfg.cache_dir)
        report: dict[str, Any] = {
            "judge": judge_path,
            "judge_kind": source.kind,
            "judge_circular": source.circular,
            "judge_warnings": judge_warnings,
            "attacks": len(attacks),
            "safe_prompts": len(safe_prompts),
            "over_refusal_set": t.over_refusal.name if safe_prompts else None,
            "refusal_judge": refusal_judge,
        }
        n = t.samples_per_prompt
        calls = [([a.text for a in attacks], n)] + ([(safe_prompts, 1)] if safe_prompts else [])
        for name, path in (("before", before), ("after", after)):
            answers = run_ranks(
                answer_share, str(path), cfg, calls, ranks=t.num_workers, name=f"target answers ({name})"
            )
            target = Answered(calls, answers)
            report[name] = {
                "model": str(path),
                "asr": attack_success(target, judge, attacks, samples=n, progress=cfg.progress),
                "over_refusal": over_refusal(target, detector, safe_prompts)
                if safe_prompts
                else {"n": 0, "rate": None},
            }
        if safe_prompts:
            report["guardrail_fpr"] = binary_metrics(
                [False] * len(safe_prompts), judge.unsafe_scores(safe_prompts), judge.threshold
            )["fpr"]
        plots = [
            plot_asr_by_style(
                report["before"]["asr"]["by_attack_style"],
                report["after"]["asr"]["by_attack_style"],
                out / "asr_by_attack_style.png",
            ),
            plot_asr_heatmap(
                report["before"]["asr"]["by_style_and_language"],
                report["after"]["asr"]["by_style_and_language"],
                out / "asr_heatmap.png",
            ),
        ]
        md = (
            f"# Target evaluation: before and after SafeDPO\n\nJudge: `{judge_path}` (eval.target.judge.kind="
            f"{source.kind}) · {len(attacks)} attack prompts · {len(safe_prompts)} safe prompts\n\n"
            + "".join(f"> **WARNING: {w}**\n\n" for w in judge_warnings)
            + target_comparison_markdown(report)
            + "\n![ASR per attack style](asr_by_attack_style.png)\n\n![ASR heat map](asr_heatmap.png)\n"
        )
        write_report(out, "target_report", report, md)
        write_manifest(
            out,
            StageManifest(
                stage="target_eval",
                outputs={
                    "report": "target_report.json",
                    "markdown": "target_report.md",
                    **{p.stem: p.name for p in plots},
                },
                inputs={
                    "before": str(before),
                    "after": str(after),
                    "judge": str(judge_path),
                    "safedpo": str(t.safedpo_dir) if t.safedpo_dir else None,
                },
                facts={
                    "judge_kind": source.kind,
                    "judge_circular": source.circular,
                    "asr_before": report["before"]["asr"]["overall"]["asr"],
                    "asr_after": report["after"]["asr"]["overall"]["asr"],
                },
                config=to_container(cfg),
            ),
        )
        print(md)
        tracker.log(
            {f"{k}/asr": report[k]["asr"]["overall"]["asr"] for k in ("before", "after")}
            | {f"{k}/over_refusal": report[k]["over_refusal"]["rate"] for k in ("before", "after")}
        )
        tracker.log_images({p.stem: p for p in plots})
        tracker.log_table(
            "asr_by_attack_style",
            ["attack_style", "n", "before", "after"],
            [
                [s, v["n"], v["asr"], report["after"]["asr"]["by_attack_style"].get(s, {}).get("asr")]
                for s, v in report["before"]["asr"]["by_attack_style"].items()
            ],
        )
        return report
    finally:
        tracker.finish()
