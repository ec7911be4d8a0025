"""The main job end to end (game -> pairs -> SafeDPO -> evaluation) and each stage run alone."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from duoguard.manifest import read_manifest
from tests.conftest import run_app


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, cache_dir) -> tuple[Path, float]:
    run = tmp_path_factory.mktemp("pipeline")
    start = time.perf_counter()
    proc = run_app(
        "duoguard-pipeline", f"hydra.run.dir={run}", timeout=900
    )  # the default config, as the README runs it
    assert proc.returncode == 0, proc.stderr[-4000:]
    return run, time.perf_counter() - start


@pytest.mark.slow
def test_pipeline_writes_every_stage_and_the_report(pipeline_run):
    from datasets import load_from_disk

    run, seconds = pipeline_run
    assert seconds < 600
    assert [json.loads(x)["round"] for x in (run / "game" / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    pairs = load_from_disk(str(run / "safedpo" / "pairs"))
    assert pairs.num_rows > 0 and {"chosen_unsafe", "rejected_unsafe", "prompt_id", "attack_style"} <= set(
        pairs.column_names
    )
    assert (run / "safedpo" / "target" / "config.json").is_file()
    safedpo = json.loads((run / "safedpo" / "safedpo_report.json").read_text())
    assert sum(safedpo["train"]["transform"].values()) == len(pairs)
    assert safedpo["pool_label_check"] == "none"  # the game's unchecked labels are named where they are used
    assert "The pool's labels are unchecked" in (run / "safedpo" / "safedpo_report.md").read_text()
    report = json.loads((run / "eval" / "target_report.json").read_text())
    for side in ("before", "after"):
        asr = report[side]["asr"]
        assert asr["overall"]["n"] > 0 and 0 <= asr["overall"]["asr"] <= 1
        assert asr["by_attack_style"] and asr["by_language"] and asr["by_category"]
        assert report[side]["over_refusal"]["n"] > 0
    assert report["before"]["model"] != report["after"]["model"]
    for png in ("asr_by_attack_style.png", "asr_heatmap.png"):
        assert (run / "eval" / png).stat().st_size > 1000
    md = (run / "eval" / "target_report.md").read_text()
    assert "## ASR per attack style" in md and "over-refusal" in md
    assert len(list(run.glob("*/wandb/offline-run-*"))) == 3  # one W&B run per stage


@pytest.mark.slow
def test_rerun_keeps_finished_stages(pipeline_run):
    run, _ = pipeline_run
    before = (run / "safedpo" / "target" / "model.safetensors").stat().st_mtime_ns
    proc = run_app("duoguard-pipeline", f"hydra.run.dir={run}", "logger=none", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "already played" in proc.stdout + proc.stderr and "SafeDPO already done" in proc.stdout + proc.stderr
    assert (run / "safedpo" / "target" / "model.safetensors").stat().st_mtime_ns == before


@pytest.mark.slow
def test_each_stage_runs_alone_from_the_previous_stage_dir(pipeline_run, tmp_path):
    run, _ = pipeline_run
    proc = run_app(
        "duoguard-safedpo",
        f"safedpo.game_dir={run / 'game'}",
        "safedpo.epochs=1",
        "logger=none",
        "progress=false",
        f"hydra.run.dir={tmp_path / 'safedpo'}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "safedpo" / "target" / "config.json").is_file()
    for report in ("safedpo_report.md", "safedpo_report.json"):  # the next stage reads the manifest, not reports
        (tmp_path / "safedpo" / report).unlink()
    proc = run_app(
        "duoguard-eval",
        "eval.mode=target",
        "eval=none",
        f"eval.target.safedpo_dir={tmp_path / 'safedpo'}",
        "logger=none",
        "progress=false",
        "eval.target.max_prompts=16",
        f"hydra.run.dir={tmp_path / 'eval'}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "eval" / "target_report.json").read_text())
    assert report["after"]["model"] == str(tmp_path / "safedpo" / "target")
    assert report["judge"] == str(run / "game" / "guardrail")  # the game's guardrail, through both manifests
    evaluation = read_manifest(tmp_path / "eval", "target_eval")
    assert evaluation.output("report") == tmp_path / "eval" / "target_report.json"
    assert evaluation.facts["asr_after"] == report["after"]["asr"]["overall"]["asr"]


def test_safedpo_stage_errors_before_loading_models(tmp_path):
    proc = run_app("duoguard-safedpo", "logger=none", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2
    assert all(key in proc.stderr for key in ("safedpo.game_dir", "safedpo.prompt_files", "safedpo.pairs.files"))
    proc = run_app(
        "duoguard-safedpo",
        f"safedpo.prompt_files=[{{path: {tmp_path / 'p.jsonl'}}}]",
        "logger=none",
        f"hydra.run.dir={tmp_path}",
    )
    assert proc.returncode == 2 and "safedpo.guardrail_path" in proc.stderr
    proc = run_app(
        "duoguard-safedpo", f"safedpo.game_dir={tmp_path / 'nope'}", "logger=none", f"hydra.run.dir={tmp_path}"
    )
    assert (
        proc.returncode == 2 and "safedpo.game_dir" in proc.stderr and "not a finished duoguard game run" in proc.stderr
    )
    proc = run_app(
        "duoguard-safedpo",
        f"safedpo.guardrail_path={tmp_path / 'nope'}",
        "logger=none",
        f"safedpo.prompt_files=[{{path: {tmp_path / 'p.jsonl'}}}]",
        f"hydra.run.dir={tmp_path}",
    )
    assert proc.returncode == 2 and "guardrail checkpoint not found" in proc.stderr
    proc = run_app("duoguard-safedpo", "safedpo.pairs.recipe=best", "logger=none", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2 and "safedpo.pairs.recipe" in proc.stderr
    proc = run_app("duoguard-eval", "eval.mode=target", "logger=none", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2 and "eval.target.safedpo_dir" in proc.stderr
