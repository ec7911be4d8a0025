"""game -> pairs -> SafeDPO -> evaluation, each stage runnable alone from the previous one's dir.

    duoguard-game                                   -> <game>/pool, <game>/guardrail
    duoguard-safedpo safedpo.game_dir=<game>        -> <safedpo>/pairs, <safedpo>/target, held-out attacks
    duoguard-eval eval.mode=target eval.target.safedpo_dir=<safedpo>
                                                    -> target_report.{md,json}, plots
    duoguard-pipeline                               -> all three in <run>/game, <run>/safedpo, <run>/eval

The game's pool is split by prompt id: most prompts become preference pairs, the held-out rest
attack the target before and after SafeDPO (it never trains on them). Prompt files in the sample
schema (`safedpo.prompt_files`, read like `data.train_files`) add prompts, or replace the pool:

    duoguard-safedpo safedpo.guardrail_path=<guardrail> 'safedpo.prompt_files=[{path: attacks.jsonl}]'
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from duoguard.atomic import atomic_dir, write_text_atomic
from duoguard.config import Config, ConfigError, OnBadRow, RefusalJudge, Responder, to_container, with_overrides
from duoguard.data.pool import Pool
from duoguard.errors import UserError
from duoguard.factory import load_benchmark_entry, model_path, set_up_torch
from duoguard.report import markdown_table, plot_asr_by_style, plot_asr_heatmap, write_report
from duoguard.tracking import Tracker

log = logging.getLogger(__name__)

HELDOUT_ATTACKS = "attacks_heldout.jsonl"


# ---------------------------------------------------------------- the pool's prompts
def split_prompts(prompts: list[dict], heldout_fraction: float) -> tuple[list[dict], list[dict]]:
    """Prompts split by a hash of their id (stable across runs and machines)."""
    train, heldout = [], []
    for prompt in prompts:
        bucket = int(hashlib.sha256(prompt["id"].encode()).hexdigest(), 16) % 10_000
        (heldout if bucket < heldout_fraction * 10_000 else train).append(prompt)
    return train, heldout


def as_prompt(sample) -> dict:
    """A prompt for the target to answer, with its provenance (round: the game's, None for a file's)."""
    return {
        "id": sample.id, "text": sample.text, "language": sample.language, "unsafe": sample.unsafe,
        "category": (sample.categories or [None])[0], "attack_style": sample.attack_style, "source": sample.source,
        "round": (sample.provenance or {}).get("round"),
    }  # fmt: skip


def pool_prompts(pool_dir: Path) -> list[dict]:
    """A game's accepted prompts (its pool)."""
    return [as_prompt(s) for s in Pool(pool_dir).samples()]


def prompt_file_prompts(cfg: Config) -> list[dict]:
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
    return [as_prompt(s) for s in samples]


def _stage_inputs(cfg: Config) -> tuple[Path | None, Path | None]:
    s = cfg.safedpo
    game = Path(s.game_dir).expanduser() if s.game_dir else None
    pool = Path(s.pool_path).expanduser() if s.pool_path else (game / "pool" if game else None)
    guard = Path(s.guardrail_path).expanduser() if s.guardrail_path else (game / "guardrail" if game else None)
    if pool is None and not s.prompt_files and not s.pairs.files:
        raise ConfigError(
            "nothing to train on: set safedpo.game_dir (a duoguard-game run, whose pool/ gives the prompts), "
            "safedpo.pool_path, safedpo.prompt_files (prompt files in the sample schema) or safedpo.pairs.files "
            "(PKU-SafeRLHF-style preference files)"
        )
    if guard is None and (pool is not None or s.prompt_files):
        raise ConfigError(
            "safedpo.guardrail_path (or safedpo.game_dir) is required with prompts from a pool or "
            "safedpo.prompt_files: the guardrail labels the target's answers"
        )
    if guard is not None and not (guard / "config.json").is_file():
        raise FileNotFoundError(
            f"guardrail checkpoint not found at {guard} (safedpo.game_dir / safedpo.guardrail_path)"
        )
    if pool is not None and not (pool / "manifest.json").is_file():
        raise FileNotFoundError(f"no game pool at {pool} (safedpo.game_dir / safedpo.pool_path)")
    return pool, guard


# ---------------------------------------------------------------- duoguard-safedpo
def run_safedpo_stage(cfg: Config) -> dict[str, Any]:
    from duoguard.align import build_pairs, read_pku_saferlhf, save_pairs, train_safedpo
    from duoguard.roles.guardrail import Guardrail
    from duoguard.roles.target import Target

    out = Path(cfg.output_dir)
    s, p = cfg.safedpo, cfg.safedpo.pairs
    pool_dir, guard_path = _stage_inputs(cfg)
    extra_pairs = []  # public preference files are read (and checked) before any model loads
    for i, f in enumerate(p.files):
        try:
            extra_pairs += read_pku_saferlhf(f.path, limit=f.limit)
        except UserError as e:
            raise UserError(f"safedpo.pairs.files[{i}]: {e}") from None
    from_pool = pool_prompts(pool_dir) if pool_dir else []
    from_files = prompt_file_prompts(cfg)  # read (and checked) before any model loads, too
    train_prompts, heldout = split_prompts(from_pool + from_files, p.heldout_fraction)
    n_split = len(train_prompts)
    if p.unsafe_prompts_only:
        train_prompts = [x for x in train_prompts if x["unsafe"]]
    if (from_pool or from_files) and not train_prompts and not extra_pairs:
        raise UserError(
            f"no prompts left to build pairs from: {len(from_pool)} from the pool and {len(from_files)} from "
            f"safedpo.prompt_files, {len(heldout)} held out (safedpo.pairs.heldout_fraction), "
            f"{n_split - len(train_prompts)} safe-labelled left out (safedpo.pairs.unsafe_prompts_only)"
        )
    write_text_atomic(out / HELDOUT_ATTACKS, "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in heldout))
    set_up_torch(cfg)
    tracker = Tracker(cfg.logger, out, config=to_container(cfg), job_type="safedpo")
    try:
        device = cfg.runtime.device
        base = model_path(cfg.target.model, cfg.cache_dir)
        target = Target(base, cfg.target, device=device)
        pairs, pair_stats = [], {"prompts": 0}
        if train_prompts:  # only preference files: no answers to label
            guardrail = Guardrail.from_pretrained(guard_path, device=device)
            responder = None
            if p.responder == Responder.model:  # the config check made sure responder_model is set
                responder_cfg = dataclasses.replace(cfg.target, model=p.responder_model)
                responder = Target(model_path(p.responder_model, cfg.cache_dir), responder_cfg, device=device)
            pairs, pair_stats = build_pairs(
                train_prompts,
                target,
                guardrail,
                p,
                refusals=cfg.data.response_templates.refusal,
                responder=responder,
                progress=cfg.progress,
            )
        pairs += extra_pairs
        if not pairs:
            raise UserError(f"no preference pairs were built ({pair_stats}); with recipe=egida the target answered "
                            "every prompt safely: try more samples_per_prompt, recipe=all, or preference files")  # fmt: skip
        save_pairs(pairs, out / "pairs")
        stats = train_safedpo(
            pairs, target, s, work_dir=out, precision=cfg.target.model.precision, progress=cfg.progress
        )
        atomic_dir(out / "target", target.save, replace=True)
        result = {
            "target_base": base, "target": str(out / "target"), "guardrail": str(guard_path) if guard_path else None,
            "pool": str(pool_dir) if pool_dir else None, "prompt_files": [str(f.path) for f in s.prompt_files],
            "heldout_attacks": len(heldout),
            "pairs": {**pair_stats, "prompts_from_pool": len(from_pool), "prompts_from_files": len(from_files),
                      "from_files": len(extra_pairs)},
            "train": stats,
            "delta": s.delta, "beta": s.beta,
        }  # fmt: skip
        rows = [(k, v) for k, v in {**result["pairs"], **stats["transform"]}.items()]
        md = "\n\n".join([
            f"# SafeDPO (Δ = {s.delta:g}, β = {s.beta:g})", f"Target `{base}` -> `{out / 'target'}`",
            "## Pairs and T(D)\n\n" + markdown_table(("", "count"), rows),
            "## Training\n\n" + markdown_table(("metric", "value"), [(k, v) for k, v in stats.items() if k != "transform"]),
        ]) + "\n"  # fmt: skip
        write_report(out, "safedpo_report", result, md)
        print(md)
        tracker.log({k: v for k, v in stats.items() if k != "transform"})
        tracker.log_artifact(out / "pairs", "safedpo_pairs", "dataset")
        return result
    finally:
        tracker.finish()


# ---------------------------------------------------------------- duoguard-eval, target mode
def _heldout_attacks(safedpo_dir: Path | None, limit: int | None):
    from duoguard.evaluate import AttackPrompt

    path = safedpo_dir / HELDOUT_ATTACKS if safedpo_dir else None
    if path is None or not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    attacks = [
        AttackPrompt(r["text"], r["language"], r["category"], r["attack_style"], "game_heldout")
        for r in rows
        if r["unsafe"]
    ]
    return attacks[:limit] if limit else attacks


def _refusal_judge(cfg: Config, device: str):
    """The over-refusal judge `eval.target.refusal_judge` names, and how the report labels it."""
    from duoguard.refusal import DEFAULT_PATTERNS, LLMRefusalJudge, RefusalDetector

    t = cfg.eval.target
    if t.refusal_judge == RefusalJudge.llm:
        path = model_path(t.refusal_llm.model, cfg.cache_dir)
        return LLMRefusalJudge.from_pretrained(path, t.refusal_llm, device=device), f"llm ({path})"
    return RefusalDetector(list(t.refusal_patterns) or DEFAULT_PATTERNS), "rules"


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


def run_target_eval(cfg: Config) -> dict[str, Any]:
    from duoguard.evaluate import attack_success, over_refusal, target_comparison_markdown
    from duoguard.metrics import binary_metrics
    from duoguard.roles.guardrail import Guardrail
    from duoguard.roles.target import Target

    out = Path(cfg.output_dir)
    t = cfg.eval.target
    sdir = Path(t.safedpo_dir).expanduser() if t.safedpo_dir else None
    safedpo_report = (
        json.loads((sdir / "safedpo_report.json").read_text())
        if sdir and (sdir / "safedpo_report.json").is_file()
        else {}
    )
    after = t.after or (str(sdir / "target") if sdir else None)
    judge_path = t.judge_path or safedpo_report.get("guardrail")
    if not after or not Path(after, "config.json").is_file():
        raise FileNotFoundError(f"no target after SafeDPO at {after} (eval.target.safedpo_dir or eval.target.after)")
    if not judge_path or not Path(judge_path, "config.json").is_file():
        raise FileNotFoundError(f"no guardrail to judge answers at {judge_path} (eval.target.judge_path)")
    public_attacks, safe_prompts = target_eval_sets(cfg)
    attacks = _heldout_attacks(sdir, t.max_prompts) + public_attacks
    if not attacks:
        raise UserError(
            "no attack prompts: give eval.target.safedpo_dir (held-out game prompts) or eval.target.attacks"
        )
    set_up_torch(cfg)
    tracker = Tracker(cfg.logger, out, config=to_container(cfg), job_type="eval")
    try:
        device = cfg.runtime.device
        judge = Guardrail.from_pretrained(judge_path, device=device)
        detector, refusal_judge = _refusal_judge(cfg, device)
        before = t.before or safedpo_report.get("target_base") or model_path(cfg.target.model, cfg.cache_dir)
        report: dict[str, Any] = {"judge": judge_path, "attacks": len(attacks), "safe_prompts": len(safe_prompts),
                                  "over_refusal_set": t.over_refusal.name if safe_prompts else None,
                                  "refusal_judge": refusal_judge}  # fmt: skip
        for name, path in (("before", before), ("after", after)):
            target = Target(str(path), cfg.target, device=device)
            report[name] = {
                "model": str(path),
                "asr": attack_success(
                    target, judge, attacks, samples=t.samples_per_prompt, progress=cfg.progress
                ),
                "over_refusal": over_refusal(target, detector, safe_prompts)
                if safe_prompts
                else {"n": 0, "rate": None},
            }
        if safe_prompts:
            report["guardrail_fpr"] = binary_metrics(
                [False] * len(safe_prompts), judge.unsafe_scores(safe_prompts), judge.threshold
            )["fpr"]
        plots = [
            plot_asr_by_style(report["before"]["asr"]["by_attack_style"], report["after"]["asr"]["by_attack_style"],
                              out / "asr_by_attack_style.png"),
            plot_asr_heatmap(report["before"]["asr"]["by_style_and_language"],
                             report["after"]["asr"]["by_style_and_language"], out / "asr_heatmap.png"),
        ]  # fmt: skip
        md = f"# Target evaluation: before and after SafeDPO\n\nJudge: `{judge_path}` · {len(attacks)} attack prompts" \
             f" · {len(safe_prompts)} safe prompts\n\n" + target_comparison_markdown(report) + \
             "\n![ASR per attack style](asr_by_attack_style.png)\n\n![ASR heat map](asr_heatmap.png)\n"  # fmt: skip
        write_report(out, "target_report", report, md)
        print(md)
        tracker.log({f"{k}/asr": report[k]["asr"]["overall"]["asr"] for k in ("before", "after")}
                    | {f"{k}/over_refusal": report[k]["over_refusal"]["rate"] for k in ("before", "after")})  # fmt: skip
        tracker.log_images({p.stem: p for p in plots})
        tracker.log_table("asr_by_attack_style", ["attack_style", "n", "before", "after"], [
            [s, v["n"], v["asr"], report["after"]["asr"]["by_attack_style"].get(s, {}).get("asr")]
            for s, v in report["before"]["asr"]["by_attack_style"].items()
        ])  # fmt: skip
        return report
    finally:
        tracker.finish()


# ---------------------------------------------------------------- duoguard-pipeline
def _stage_cfg(cfg: Config, output_dir: Path, **updates: Any) -> Config:
    """The pipeline's config for one stage: its own output dir and inputs."""
    return with_overrides(cfg, {"output_dir": str(output_dir), **updates})


def run_pipeline(cfg: Config) -> dict[str, Any]:
    from duoguard.game import play_game

    out = Path(cfg.output_dir)
    if not cfg.logger.group:  # the stages' W&B runs share one group
        cfg.logger.group = out.name
    game_dir, safedpo_dir, eval_dir = out / "game", out / "safedpo", out / "eval"
    target_eval_sets(cfg)  # bad evaluation files fail now, not after the game and SafeDPO
    log.info("pipeline stage 1/3: the game (%s)", game_dir)
    play_game(_stage_cfg(cfg, game_dir))
    if (safedpo_dir / "safedpo_report.json").is_file() and (safedpo_dir / "target" / "config.json").is_file():
        log.info("pipeline stage 2/3: SafeDPO already done in %s", safedpo_dir)
    else:
        log.info("pipeline stage 2/3: pairs and SafeDPO (%s)", safedpo_dir)
        run_safedpo_stage(_stage_cfg(cfg, safedpo_dir, **{"safedpo.game_dir": str(game_dir)}))
    log.info("pipeline stage 3/3: evaluation (%s)", eval_dir)
    report = run_target_eval(_stage_cfg(cfg, eval_dir, **{"eval.target.safedpo_dir": str(safedpo_dir)}))
    log.info("pipeline done: report at %s", eval_dir / "target_report.md")
    return report
