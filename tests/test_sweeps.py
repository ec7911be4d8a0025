"""Hydra multirun sweeps: a grid with one folder, checkpoint dir and W&B run per job in one W&B
group (Ray shut down between jobs), and Optuna search through `sweep=game_optuna`."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import run_app

TINY = [
    "progress=false",
    "game.rounds=1",
    "generator.grpo.steps_per_round=1",
    "guardrail.train.epochs=1",
    "game.guardrail_epochs=1",
    "data.response_examples=false",
]


@pytest.mark.slow
def test_a_2x2_multirun_gives_every_job_its_own_folder_checkpoints_and_wandb_run(tmp_path, cache_dir):
    proc = run_app(
        "duoguard-game",
        "-m",
        f"hydra.sweep.dir={tmp_path}",
        "runtime=local,ray",
        "game.reward.fool_weight=0.5,1.0",
        *TINY,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted((p for p in tmp_path.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    combos, runs = set(), []
    for job in jobs:
        assert [json.loads(x)["round"] for x in (job / "metrics.jsonl").read_text().splitlines()] == [1]
        assert json.loads((job / "checkpoints" / "latest.json").read_text())["round"] == 1
        assert len(list((job / "wandb").glob("offline-run-*"))) == 1
        combos.add(tuple(sorted(yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()))))
        runs.append(json.loads((job / "wandb_run.json").read_text()))
    assert len(combos) == 4  # every combination ran once
    assert {r["group"] for r in runs} == {f"game-{tmp_path.name}"}  # one W&B group for the sweep
    assert len({r["id"] for r in runs}) == 4 and all(r["name"].startswith("game-") for r in runs)


@pytest.mark.slow
def test_optuna_sweeper_searches_and_reports_the_best_trial(tmp_path, cache_dir):
    proc = run_app(
        "duoguard-game",
        "-m",
        "sweep=game_optuna",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweep.dir={tmp_path}",
        "logger=none",
        *TINY,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert result["name"] == "optuna"
    assert set(result["best_params"]) == {
        "guardrail.train.learning_rate",
        "game.reward.fool_weight",
        "generator.grpo.beta",
    }
    assert 0.0 <= result["best_value"] <= 1.0  # the held-out F1 the game returned
    trials = sorted(p.name for p in tmp_path.iterdir() if p.is_dir() and p.name.isdigit())
    assert trials == ["0", "1"]
    lrs = [
        next(
            o for o in yaml.safe_load((tmp_path / t / ".hydra" / "overrides.yaml").read_text()) if "learning_rate" in o
        )
        for t in trials
    ]
    assert lrs[0] != lrs[1]  # the sampler proposed two settings
