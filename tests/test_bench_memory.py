"""scripts/bench_memory.py on the CPU: every case's code path runs on the tiny shape and the memory plan
has a number for each (on CPU nothing is measured; the GPU run fills the measured column)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_memory_cpu_tiny(tmp_path, cache_dir):
    out = tmp_path / "memory.json"
    env = {**os.environ, "DUOGUARD_CACHE": str(cache_dir), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_memory.py"), "--device", "cpu", "--shapes", "tiny"]
        + ["--json", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [r["case"] for r in rows] == ["guardrail train", "guardrail predict", "generator grpo", "target generate"]
    for r in rows:
        assert r["error"] is None, r
        assert r["measured_gib"] is None and r["ratio"] is None  # CPU: nothing measured
        terms = r["planned_terms_gib"]
        assert r["planned_gib"] > 0 and abs(sum(terms.values()) - r["planned_gib"]) < 1e-9
    train, predict, grpo, generate = rows
    # the sizes of tiny_cpu, as the plan sees them: guardrail batches of 32 x 128, 4 prompts x 4 completions
    assert train["batch_x_len"] == "32 x 128" and grpo["batch_x_len"] == "16 x 256+24"
    assert train["planned_terms_gib"]["optimizer"] > 0 and predict["planned_terms_gib"]["optimizer"] == 0
    assert grpo["planned_terms_gib"]["reference"] > 0  # tiny_cpu's GRPO beta is 0.04
    assert generate["planned_terms_gib"]["grads"] == 0
    assert "| guardrail train" in proc.stdout  # the table
