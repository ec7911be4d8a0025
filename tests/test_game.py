"""duoguard-game end to end: the default run and its outputs, Ray = local, resume after a kill."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import BIN, ROOT, compose, run_app

SMALL = ["generator.grpo.steps_per_round=2", "guardrail.train.epochs=2", "game.guardrail_epochs=1", "progress=false"]


@pytest.mark.slow
def test_default_game_completes_two_rounds_with_every_output(tmp_path, cache_dir):
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM

    from duoguard import Guardrail
    from duoguard.data.record import arrow_schema

    proc = run_app("duoguard-game", f"hydra.run.dir={tmp_path}")  # the default: tiny_cpu, W&B offline
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["round"] for x in lines] == [1, 2]
    for key in (
        "generated",
        "kept",
        "accepted",
        "fool_rate",
        "keep_rate",
        "mean_reward",
        "kl",
        "heldout_f1",
        "guardrail_acc_before",
        "guardrail_acc_after",
        "seconds_rollout",
        "seconds_guardrail_train",
    ):
        assert key in lines[0], key
    assert lines[0]["generated"] == 64
    # tiny_cpu checks no labels, and says so in every round's metrics and in the game's manifest
    assert {x["label_check"] for x in lines} == {"none"}
    assert json.loads((tmp_path / "manifest.json").read_text())["facts"]["label_check"] == "none"
    pool = load_dataset("parquet", data_files=str(tmp_path / "pool" / "round_*.parquet"), split="train")
    assert pool.column_names == arrow_schema().names  # PromptRecord's fields, the judge's verdict a struct
    assert {"text", "language", "category", "unsafe", "attack_style", "round", "seed_id", "source"} <= set(
        pool.column_names
    ) and {"guardrail_score", "judge"} <= set(pool.column_names)
    assert all(row["judge"]["keep"] and isinstance(row["judge"]["reasons"], list) for row in pool)
    assert pool.num_rows == sum(x["accepted"] for x in lines)
    guard = Guardrail.from_pretrained(tmp_path / "guardrail", device="cpu")
    assert guard.predict(["hello there"]).shape == (1, 12)
    AutoModelForCausalLM.from_pretrained(tmp_path / "generator")
    assert json.loads((tmp_path / "checkpoints" / "latest.json").read_text())["round"] == 2
    assert list((tmp_path / "wandb").glob("offline-run-*"))
    assert not (tmp_path / ".generator").exists() and not (tmp_path / ".trainer").exists()
    # every candidate the judge rejected is counted by the rules it failed
    rejected = {k: v for k, v in lines[0].items() if k.startswith("judge/rejected_")}
    assert bool(rejected) == (lines[0]["kept"] < 64)
    assert sum(rejected.values()) >= 64 - lines[0]["kept"]  # each rejected candidate failed a rule or more

    # game health: diversity of the accepted candidates, coverage of the cells, and the game's own report
    assert all(k in lines[0] for k in ("diversity/distinct_2", "diversity/self_bleu", "diversity/cells", "coverage"))
    report = (tmp_path / "report.md").read_text()
    assert "## Rounds" in report and "## Diversity" in report and "## Coverage" in report
    assert all((tmp_path / png).is_file() for png in re.findall(r"\((report/[^)]+\.png)\)", report))

    def cells(round_index: int) -> list[dict]:
        state = tmp_path / "checkpoints" / f"round_{round_index:04d}" / "state.json"
        return json.loads(state.read_text())["archive"]["cells"]

    assert sum(c["generated"] for c in cells(2)) == 128  # the archive counts every candidate of both rounds
    assert sum(c["accepted"] for c in cells(2)) == pool.num_rows

    # played on for a third round: the same W&B run continues, and so does the archive
    run_id = json.loads((tmp_path / "wandb_run.json").read_text())["id"]
    more = run_app("duoguard-game", f"hydra.run.dir={tmp_path}", "game.rounds=3", "progress=false")
    assert more.returncode == 0, more.stderr[-3000:]
    assert [json.loads(x)["round"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert json.loads((tmp_path / "wandb_run.json").read_text())["id"] == run_id
    assert sum(c["generated"] for c in cells(3)) == 192


def _start_game(run_dir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "duoguard-game"), f"hydra.run.dir={run_dir}", "logger=none", *SMALL, *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "WANDB_SILENT": "true"},
    )


@pytest.mark.slow
def test_resume_after_a_kill_loses_nothing_and_duplicates_nothing(tmp_path, cache_dir):
    from duoguard.data.pool import Pool

    rounds = "game.rounds=3"
    reference = run_app("duoguard-game", f"hydra.run.dir={tmp_path / 'reference'}", "logger=none", *SMALL, rounds)
    assert reference.returncode == 0, reference.stderr[-3000:]

    run = tmp_path / "interrupted"
    proc = _start_game(run, rounds)
    latest = run / "checkpoints" / "latest.json"
    deadline = time.time() + 240
    while not (latest.is_file() and json.loads(latest.read_text())["round"] >= 1):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() < deadline, "no checkpoint within 240 s"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver dies at the round boundary or inside round 2
    proc.wait()
    killed_at = json.loads(latest.read_text())["round"]
    assert killed_at < 3

    resumed = run_app("duoguard-game", f"hydra.run.dir={run}", "logger=none", *SMALL, rounds)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = [json.loads(x)["round"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics == [1, 2, 3]
    pool = Pool(run / "pool")
    assert pool.rounds() == [1, 2, 3]
    ids = [r.id for r in pool.records()]
    assert len(ids) == len(set(ids))
    assert sorted(p.name for p in (run / "pool").glob("*.parquet")) == [f"round_000{i}.parquet" for i in (1, 2, 3)]
    # the same seed gives the same game, interrupted or not
    reference_rows = [(r.id, r.text) for r in Pool(tmp_path / "reference" / "pool").records()]
    assert [(r.id, r.text) for r in pool.records()] == reference_rows


def test_resume_modes_fail_clearly(tmp_path, cache_dir):
    proc = run_app("duoguard-game", f"hydra.run.dir={tmp_path}", "logger=none", "game.resume=true")
    assert proc.returncode == 2 and "holds no checkpoint" in proc.stderr
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest.json").write_text('{"round": 1, "dir": "round_0001"}')
    proc = run_app("duoguard-game", f"hydra.run.dir={tmp_path}", "logger=none", "game.resume=false")
    assert proc.returncode == 2 and "already holds a game checkpoint" in proc.stderr


def test_ray_resource_error_names_each_role_before_models_load(tmp_path):
    proc = run_app(
        "duoguard-game",
        f"hydra.run.dir={tmp_path}",
        "logger=none",
        "runtime=ray",
        "runtime.roles.generator.num_gpus=1",
        "runtime.roles.guardrail.num_gpus=0.5",
    )
    assert proc.returncode == 2
    msg = proc.stderr
    assert "generator asks num_cpus=1, num_gpus=1 (runtime.roles.generator)" in msg
    assert "guardrail asks num_cpus=1, num_gpus=0.5" in msg and "the cluster has" in msg and "GPU=0" in msg
    assert "warm-up" not in msg and not (tmp_path / "checkpoints").exists()


def test_game_config_errors_name_the_key():
    from hydra.errors import ConfigCompositionException

    from duoguard.config import ConfigError

    for override, key in [
        ("generator.grpo.num_generations=1", "generator.grpo.num_generations"),
        ("generator.grpo.loss_type=ppo", "generator.grpo.loss_type"),
        ("judge.rules=[vibes]", "judge.rules"),
        ("judge.label_pattern='('", "judge.label_pattern"),
        ("game.rounds=0", "game.rounds"),
        ("generator.templates.unsafe=no_seed_slot", "generator.templates.unsafe"),
    ]:
        with pytest.raises((ConfigError, ConfigCompositionException)) as e:  # enums fail while Hydra composes
            compose([override, "output_dir=/tmp/x"], "game")
        assert key in str(e.value) + str(e.value.__cause__)
