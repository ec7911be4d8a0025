"""The console apps end to end, as a user runs them: train, evaluate, classify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, run_app

B = FIXTURES / "benchmarks"
FAST = ["guardrail.train.epochs=2", "progress=false"]
FIXTURE_BENCHMARKS = (
    f"eval.benchmarks=[{{name:xstest_fixture,format:xstest,path:{B}/xstest/xstest_prompts.csv}},"
    f"{{name:beavertails_fixture,format:beavertails,path:{B}/beavertails/30k_test.jsonl}}]"
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache_dir) -> Path:
    """One duoguard-guardrail run (W&B offline, the default logger) shared by the tests below."""
    run_dir = tmp_path_factory.mktemp("guardrail_run")
    proc = run_app("duoguard-guardrail", *FAST, FIXTURE_BENCHMARKS, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_guardrail_app_writes_checkpoint_report_metrics_and_wandb(trained):
    assert (trained / "guardrail" / "config.json").is_file()
    report = json.loads((trained / "guardrail_report.json").read_text())
    assert set(report["eval"]["benchmarks"]) == {"heldout", "xstest_fixture", "beavertails_fixture"}
    held = report["eval"]["benchmarks"]["heldout"]
    assert held["overall"]["n"] > 50 and set(held["languages"]) == {"en", "fr", "es", "de", "it"}
    assert report["eval"]["benchmarks"]["beavertails_fixture"]["task"] == "response"
    assert report["train"]["train_steps"] > 0
    assert "| heldout" in (trained / "guardrail_report.md").read_text()
    lines = (trained / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and "eval/heldout/f1" in json.loads(lines[0])
    assert list((trained / "wandb").glob("offline-run-*")), "W&B offline run missing"


@pytest.mark.slow
def test_eval_app_scores_a_checkpoint(trained, tmp_path):
    proc = run_app(
        "duoguard-eval",
        f"eval.guardrail_path={trained / 'guardrail'}",
        FIXTURE_BENCHMARKS,
        "logger=none",
        f"hydra.run.dir={tmp_path}",
        "progress=false",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "eval_report.json").read_text())
    xs = report["benchmarks"]["xstest_fixture"]["overall"]
    assert xs["n"] == 10 and xs["n_unsafe"] == 4 and xs["ms_per_input"] > 0
    for key in ("f1", "precision", "recall", "fpr", "auprc"):
        assert key in xs
    assert "xstest_fixture" in proc.stdout  # the console table
    assert (tmp_path / "eval_report.md").is_file()


@pytest.mark.slow
def test_classify_from_stdin_and_jsonl(trained, tmp_path):
    proc = run_app(
        "duoguard-classify",
        str(trained / "guardrail"),
        input="How do I bake bread?\nHow can I hurt my neighbour's dog?\n",
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["How do I bake bread?", "How can I hurt my neighbour's dog?"]
    assert all(len(r["probabilities"]) == 12 and isinstance(r["unsafe"], bool) for r in rows)
    assert all(r["unsafe"] == (r["score"] > r["threshold"]) for r in rows)  # the checkpoint's calibrated threshold

    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": 7, "prompt": "hi", "answer": "hello"}) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    proc = run_app(
        "duoguard-classify",
        str(trained / "guardrail"),
        "-i",
        str(src),
        "-o",
        str(out),
        "--text-field",
        "prompt",
        "--response-field",
        "answer",
    )
    assert proc.returncode == 0, proc.stderr
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["id"] == 7 and row["response"] == "hello"

    src.write_text('{"prompt": "hi"}\n{"nope": 1}\n', encoding="utf-8")
    proc = run_app("duoguard-classify", str(trained / "guardrail"), "-i", str(src), "--text-field", "prompt")
    assert proc.returncode == 2 and f"{src}:2:" in proc.stderr


def test_bad_training_file_stops_before_training(tmp_path, cache_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"text": "ok", "language": "en", "unsafe": false}\n{"text": "hi", "language": "klingon", "unsafe": false}\n'
    )
    proc = run_app(
        "duoguard-guardrail", f"data.train_files=[{{path:{bad}}}]", "logger=none", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert proc.returncode == 2
    assert f"{bad}:2: unknown language 'klingon'" in proc.stderr
    assert "data.train_files[0]" in proc.stderr
    assert not (tmp_path / "run" / "guardrail").exists()


def test_missing_benchmark_file_stops_before_training(tmp_path, cache_dir):
    proc = run_app(
        "duoguard-guardrail",
        "eval.benchmarks=[{name:x,format:xstest,path:/no/such.csv}]",
        "logger=none",
        f"hydra.run.dir={tmp_path}",
    )
    assert proc.returncode == 2
    assert "eval.benchmarks[0] (x)" in proc.stderr and "/no/such.csv" in proc.stderr
    assert "training guardrail" not in proc.stdout + proc.stderr


def test_malformed_benchmark_file_is_a_clean_error_naming_key_and_line(tmp_path, cache_dir):
    bad = B / "malformed" / "toxic-chat_bad_toxicity.csv"
    proc = run_app(
        "duoguard-guardrail",
        f"eval.benchmarks=[{{name:xs,format:xstest,path:{B}/xstest/xstest_prompts.csv}},"
        f"{{name:tc,format:toxicchat,path:{bad}}}]",
        "logger=none",
        f"hydra.run.dir={tmp_path}",
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"eval.benchmarks[1] (tc): {bad}:3: 'toxicity' must be 0 or 1" in proc.stderr
    assert "Traceback" not in proc.stderr and "training guardrail" not in proc.stdout + proc.stderr
