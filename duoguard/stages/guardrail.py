"""The guardrail's stages, from a composed config: train (`duoguard-guardrail`) and evaluate (`duoguard-eval`).

Each function takes the typed config and does one stage; the Hydra apps in `cli.py`
only compose config and call these. Everything that can fail on bad input (config values,
data files, benchmark files, checkpoint paths) is checked before a model is loaded.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

from duoguard.atomic import atomic_dir
from duoguard.config import BenchmarkFormat, Config, ConfigError, to_container
from duoguard.data.benchmarks import Benchmark, samples_benchmark
from duoguard.data.schema import Sample
from duoguard.distributed import run_ranks
from duoguard.evaluate import eval_tables, evaluate_guardrail, flat_metrics
from duoguard.factory import (
    build_decontaminator,
    build_guardrail,
    build_taxonomy,
    decontaminated_training_samples,
    load_benchmarks_from,
    load_training_samples,
    model_path,
    new_guardrail,
    set_up_torch,
    split_for_calibration,
)
from duoguard.manifest import StageManifest, write_manifest
from duoguard.metrics import calibrate_thresholds
from duoguard.report import decontamination_line, markdown_table, write_report
from duoguard.suite import suite_markdown, suite_table
from duoguard.tracking import Tracker

log = logging.getLogger(__name__)


def load_benchmarks(cfg: Config) -> list[Benchmark]:
    return load_benchmarks_from(cfg.eval.benchmarks, "eval.benchmarks")


def train_guardrail(guardrail, samples: list[Sample], cfg: Config, work_dir: Path, **overrides) -> dict:
    trainer_dir = work_dir / ".trainer"
    try:
        return guardrail.train(
            samples,
            cfg.guardrail.train,
            output_dir=trainer_dir,
            precision=cfg.guardrail.model.precision,
            progress=cfg.progress,
            **overrides,
        )
    finally:
        shutil.rmtree(trainer_dir, ignore_errors=True)


def save_guardrail(guardrail, path: Path) -> Path:
    return atomic_dir(path, guardrail.save_pretrained, replace=True)


def train_and_save(cfg: Config, taxonomy, train: list[Sample], path: Path) -> dict[str, Any]:
    """One rank's part of the training stage: every rank trains (data parallel), rank 0 saves."""
    from duoguard.distributed import is_main

    set_up_torch(cfg)
    guardrail = new_guardrail(cfg, taxonomy)
    stats = train_guardrail(guardrail, train, cfg, path.parent)
    if is_main():
        save_guardrail(guardrail, path)
    return stats


def calibrate_guardrail(guardrail, rows: list[Sample], cfg: Config, *, progress: bool = False) -> dict[str, Any]:
    """Choose the decision thresholds on the calibration rows (`guardrail.calibration`), overall and per
    language, and give them to `guardrail`; a language or split the rule cannot calibrate keeps the
    fallback (the overall threshold, or `guardrail.threshold`)."""
    c = cfg.guardrail.calibration
    scores = guardrail.unsafe_scores([s.text for s in rows], [s.response for s in rows], progress=progress)
    calibration = calibrate_thresholds(
        [s.unsafe for s in rows],
        scores,
        [s.language for s in rows],
        c.rule.value,
        target_fpr=c.target_fpr,
        min_rows=c.min_rows,
        default=cfg.guardrail.threshold,
    )
    calibration["min_rows"] = c.min_rows
    calibration["split"] = c.split if c.rule.value != "none" else None  # none: nothing split off
    guardrail.calibrate(calibration)
    if "all" in calibration["fallback"] and c.rule.value != "none":
        log.warning(
            "guardrail.calibration: calibration rows not calibrated (%s); threshold stays %s",
            calibration["fallback"]["all"],
            cfg.guardrail.threshold,
        )
    return calibration


def composition(samples: list[Sample]) -> dict[str, dict[str, int]]:
    """Counts per language of safe and unsafe rows (for reports)."""
    out: dict[str, Counter] = {}
    for s in samples:
        out.setdefault(s.language, Counter())["unsafe" if s.unsafe else "safe"] += 1
    return {lang: dict(c) for lang, c in sorted(out.items())}


# ---------------------------------------------------------------- duoguard-guardrail
def run_guardrail_stage(cfg: Config) -> dict[str, Any]:
    out_dir = Path(cfg.output_dir)
    taxonomy = build_taxonomy(cfg)
    benchmarks = load_benchmarks(cfg)  # bad benchmark paths fail here, before training
    # near-copies of any configured evaluation prompt leave training (data.decontamination)
    samples, decontamination = decontaminated_training_samples(
        cfg, load_training_samples(cfg, taxonomy), build_decontaminator(cfg), out_dir
    )
    # thresholds are chosen on one part of the held-out families and measured on the other
    train, calibration_rows, heldout = split_for_calibration(samples, cfg)
    set_up_torch(cfg)
    tracker = Tracker(cfg.logger, out_dir, config=to_container(cfg), job_type="guardrail")
    try:
        g = cfg.guardrail
        log.info(
            "training guardrail on %d samples (%d held out to calibrate, %d to measure)",
            len(train),
            len(calibration_rows),
            len(heldout),
        )
        checkpoint = out_dir / "guardrail"
        stats = run_ranks(
            train_and_save,
            cfg,
            taxonomy,
            train,
            checkpoint,
            ranks=g.num_workers,
            deepspeed=bool(g.train.deepspeed),
            name="guardrail training",
        )
        guardrail = build_guardrail(  # the trained checkpoint, evaluated in this process
            cfg=cfg,
            categories=taxonomy.names,
            base_path=model_path(g.model, cfg.cache_dir),
            checkpoint=str(checkpoint),
            device=cfg.runtime.device,
        )
        calibration = calibrate_guardrail(guardrail, calibration_rows, cfg, progress=cfg.progress)
        guardrail.save_thresholds(checkpoint)  # from_pretrained (classify, eval, SafeDPO) decides with them
        evals = ([samples_benchmark("heldout", heldout)] if heldout else []) + benchmarks
        report = evaluate_guardrail(guardrail, evals, progress=cfg.progress)
        result = {
            "experiment": cfg.experiment,
            "checkpoint": str(checkpoint),
            "taxonomy": taxonomy.name,
            "data": {
                "train": composition(train),
                "calibration": composition(calibration_rows),
                "heldout": composition(heldout),
                "decontamination": decontamination,
            },
            "train": stats,
            "calibration": calibration,
            "eval": report,
        }
        md = guardrail_markdown(result)
        write_report(out_dir, "guardrail_report", result, md)
        print(md)
        tracker.log({**stats, **flat_metrics(report)})
        tracker.summary(flat_metrics(report))
        tracker.log_artifact(checkpoint, "guardrail", "model")
        write_manifest(
            out_dir,
            StageManifest(
                "guardrail",
                outputs={"guardrail": "guardrail", "report": "guardrail_report.json"},
                inputs={"base": cfg.guardrail.model.name_or_path, "init_checkpoint": cfg.guardrail.init_checkpoint},
                facts={
                    "mean_f1": report.get("mean_f1"),
                    "threshold": guardrail.threshold,
                    "decontamination": decontamination,
                },
                config=to_container(cfg),
            ),
        )
        return result
    finally:
        tracker.finish()


def guardrail_markdown(result: dict[str, Any]) -> str:
    data = result["data"]
    parts = ("train", "calibration", "heldout")
    data_rows = [
        (lang, *(data[part].get(lang, {}).get(label, 0) for part in parts for label in ("safe", "unsafe")))
        for lang in sorted({lang for part in parts for lang in data[part]})
    ]
    t = result["train"]
    c = result["calibration"]
    rule = c["rule"] + (f" (FPR <= {c['target_fpr']})" if c.get("target_fpr") is not None else "")
    threshold_rows = [("all", c["threshold"], c["fallback"].get("all") or "calibrated")]
    threshold_rows += [(lang, t_, "calibrated") for lang, t_ in c["languages"].items()]
    threshold_rows += [
        (lang, c["threshold"], f"overall ({why})") for lang, why in c["fallback"].items() if lang != "all"
    ]
    return (
        "\n\n".join(
            [
                f"# Guardrail report ({result['experiment']})",
                f"Checkpoint: `{result['checkpoint']}` · taxonomy `{result['taxonomy']}`",
                "## Data\n\n"
                + markdown_table(
                    (
                        "language",
                        "train safe",
                        "train unsafe",
                        "calibration safe",
                        "calibration unsafe",
                        "held-out safe",
                        "held-out unsafe",
                    ),
                    data_rows,
                )
                + "\n\n"
                + decontamination_line(result["data"]["decontamination"]),
                f"## Training\n\n{t['train_examples']:,} examples, {t['train_steps']} steps, "
                f"final loss {t['train_loss']:.4f}, {t['train_seconds']:.1f} s",
                "## Decision thresholds\n\n"
                + (
                    f"Rule `{rule}` on the calibration rows ({c['n']:,}: held-out families kept apart from the "
                    "held-out rows below), stored in the checkpoint's thresholds.json"
                    if c["rule"] != "none"
                    else "Rule `none`: guardrail.threshold, nothing calibrated"
                )
                + "\n\n"
                + markdown_table(("language", "threshold", "source"), threshold_rows),
                "## Evaluation (unsafe = max category probability > the threshold of the row's language; f1@0.5: "
                "DuoGuard's fixed threshold; no held-out row is one the thresholds were chosen on)\n\n"
                + eval_tables(result["eval"]),
            ]
        )
        + "\n"
    )


# ---------------------------------------------------------------- duoguard-eval
def run_eval_stage(cfg: Config) -> dict[str, Any]:
    from duoguard.roles.guardrail import Guardrail

    out_dir = Path(cfg.output_dir)
    path = Path(cfg.eval.guardrail_path).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"eval.guardrail_path={path}: no guardrail checkpoint there (config.json missing)")
    benchmarks = load_benchmarks(cfg)
    if not benchmarks:
        raise ConfigError("eval.benchmarks is empty: list benchmark files (e.g. eval=shared_benchmarks)")
    set_up_torch(cfg)
    tracker = Tracker(cfg.logger, out_dir, config=to_container(cfg), job_type="eval")
    try:
        guard = Guardrail.from_pretrained(
            path,
            device=cfg.runtime.device,
            batch_size=cfg.eval.batch_size,
            max_batch_tokens=cfg.guardrail.predict_max_tokens,
        )
        start = time.perf_counter()
        report = evaluate_guardrail(guard, benchmarks, progress=cfg.progress)
        report["checkpoint"] = str(path)
        report["seconds"] = time.perf_counter() - start
        by_language = ", ".join(f"{k} {v:.3f}" for k, v in report["language_thresholds"].items())
        md = (
            f"# Guardrail evaluation\n\nCheckpoint: `{path}` · threshold {report['threshold']:.3f}"
            + (f" (per language: {by_language})" if by_language else "")
            + f"\n\n{eval_tables(report)}\n"
        )
        suite = [b.name for b in cfg.eval.benchmarks if b.format == BenchmarkFormat.duoguard_eval_data]
        if suite:  # eval=duoguard_suite: DuoGuard's table, benchmarks x languages
            report["suite"] = suite_table(report, suite)
            md += "\n" + suite_markdown(report["suite"])
        write_report(out_dir, cfg.eval.report_name, report, md)
        print(md)
        tracker.log(flat_metrics(report))
        tracker.summary(flat_metrics(report))
        tracker.log_table(
            "eval/table",
            ["benchmark", "n", "f1@0.5", "threshold", "f1", "precision", "recall", "fpr", "auprc", "ms_per_input"],
            [
                [
                    n,
                    r["overall"]["n"],
                    r["overall"]["f1@0.5"],
                    r["overall"]["threshold"],
                    r["overall"]["f1"],
                    r["overall"]["precision"],
                    r["overall"]["recall"],
                    r["overall"]["fpr"],
                    r["overall"]["auprc"],
                    r["overall"]["ms_per_input"],
                ]
                for n, r in report["benchmarks"].items()
            ],
        )
        return report
    finally:
        tracker.finish()
