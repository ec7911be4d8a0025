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
def test_a_2x2_multirun_gives_every_job_its_own_run_and_the_ray_runtime_plays_the_local_game(tmp_path, cache_dir):
    from duoguard.data.pool import Pool

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
    games, runs = {}, []
    for job in jobs:
        metrics = [json.loads(x) for x in (job / "metrics.jsonl").read_text().splitlines()]
        assert [m["round"] for m in metrics] == [1]
        assert json.loads((job / "checkpoints" / "latest.json").read_text())["round"] == 1
        assert len(list((job / "wandb").glob("offline-run-*"))) == 1
        overrides = dict(o.split("=", 1) for o in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()))
        pool = [(r.id, r.text, round(r.guardrail_score, 5)) for r in Pool(job / "pool").records()]
        games[overrides["runtime"], overrides["game.reward.fool_weight"]] = (metrics[0], pool)
        runs.append(json.loads((job / "wandb_run.json").read_text()))
    assert set(games) == {(r, w) for r in ("local", "ray") for w in ("0.5", "1.0")}  # every combination ran once
    assert {r["group"] for r in runs} == {f"game-{tmp_path.name}"}  # one W&B group for the sweep
    assert len({r["id"] for r in runs}) == 4 and all(r["name"].startswith("game-") for r in runs)
    # the same game on Ray actors as in one process: the same metrics and the same pool
    keys = ("generated", "kept", "accepted", "fool_rate", "mean_reward", "kl", "heldout_f1", "guardrail_acc_after")
    for weight in ("0.5", "1.0"):
        (local, local_pool), (ray, ray_pool) = games["local", weight], games["ray", weight]
        for key in keys:
            assert local[key] == pytest.approx(ray[key], abs=1e-6), (weight, key)
        assert local_pool == ray_pool and local_pool, weight


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


def test_a_sweep_searches_the_presets_learning_rate_range():
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from duoguard.config import conf_dir, register_configs

    register_configs()

    def searched(app: str, *overrides: str) -> dict:
        with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
            cfg = hydra_compose(app, overrides=list(overrides), return_hydra_config=True)
        return dict(cfg.hydra.sweeper.params)

    tiny = searched("pipeline", "sweep=pipeline_optuna")
    assert tiny["safedpo.learning_rate"] == "tag(log, interval(0.0001, 0.003))"
    big = searched("pipeline", "sweep=pipeline_optuna", "experiment=safedpo_llama8b")
    assert big["safedpo.learning_rate"] == "tag(log, interval(1e-07, 3e-06))"
    lora = searched("pipeline", "sweep=pipeline_optuna", "experiment=safedpo_qwen7b_lora")
    assert lora["safedpo.learning_rate"] == "tag(log, interval(5e-06, 0.0001))"
    guard = searched("game", "sweep=game_optuna", "experiment=duoguard_qwen")
    assert guard["guardrail.train.learning_rate"] == "tag(log, interval(1e-05, 0.0002))"


def test_the_pipeline_objective_does_not_reward_refusing_everything():
    from duoguard.config import SearchConfig
    from duoguard.pipeline import sweep_objective

    def report(asr: float, over_refusal: float) -> dict:
        return {"after": {"asr": {"overall": {"asr": asr}}, "over_refusal": {"rate": over_refusal}}}

    refuses_all, balanced = report(0.0, 1.0), report(0.1, 0.05)
    s = SearchConfig()
    assert sweep_objective(refuses_all, {}, s) == pytest.approx(1.0)
    assert sweep_objective(balanced, {}, s) == pytest.approx(0.15)
    assert sweep_objective(balanced, {}, s) < sweep_objective(refuses_all, {}, s)
    asr_only = SearchConfig(over_refusal_weight=0.0)  # the old objective: the refuser would win the sweep
    assert sweep_objective(refuses_all, {}, asr_only) < sweep_objective(balanced, {}, asr_only)
    with_guard = SearchConfig(heldout_f1_weight=0.5)
    assert sweep_objective(balanced, {"heldout_f1": 0.8}, with_guard) == pytest.approx(0.15 + 0.5 * 0.2)


def test_an_over_refusal_weight_without_an_over_refusal_set_is_refused(tmp_path):
    from duoguard.config import ConfigError
    from tests.conftest import compose

    with pytest.raises(ConfigError, match=r"search\.over_refusal_weight.*eval\.target\.over_refusal is null"):
        compose(["eval.target.over_refusal=null"], config_name="pipeline")
    compose(["eval.target.over_refusal=null", "search.over_refusal_weight=0"], config_name="pipeline")


def test_the_pipeline_index_links_the_stage_reports_that_exist(tmp_path):
    from duoguard.pipeline import write_pipeline_index

    (tmp_path / "game").mkdir()
    (tmp_path / "game" / "report.md").write_text("# Game report")
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "target_report.md").write_text("# Target")
    text = write_pipeline_index(tmp_path, 0.25).read_text()
    assert "[game/report.md](game/report.md)" in text and "[eval/target_report.md](eval/target_report.md)" in text
    assert "safedpo_report" not in text  # no SafeDPO report in this folder: no dead link
    assert "0.2500" in text
