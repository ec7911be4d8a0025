"""Faults: non-finite rewards, out-of-memory errors, dead role actors, and placement errors."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import torch

from duoguard.errors import GameStopped
from duoguard.runtime import ResourceError, RoleOutOfMemory, check_resources
from tests.conftest import compose

TINY_GAME = [
    "generator.grpo.steps_per_round=2",
    "guardrail.train.epochs=1",
    "game.guardrail_epochs=1",
    "data.response_examples=false",
    "logger=none",
    "progress=false",
]


def nan_rewards_in_round(monkeypatch, bad_round: int):
    from duoguard.referee import Referee

    real = Referee.__call__

    def call(self, texts, conditions):
        rewards, records = real(self, texts, conditions)
        if self.round_index == bad_round:
            rewards = [float("nan")] * len(rewards)
        return rewards, records

    monkeypatch.setattr(Referee, "__call__", call)


@pytest.mark.slow
def test_nan_rewards_skip_updates_and_stop_the_game_after_the_limit(tmp_path, monkeypatch, cache_dir):
    from duoguard.data.pool import Pool
    from duoguard.game import play_game

    nan_rewards_in_round(monkeypatch, 2)
    out = tmp_path / "stopped"
    with pytest.raises(GameStopped, match=r"role 'generator' skipped 2 updates .* by round 2.* round 1 complete"):
        play_game(compose([*TINY_GAME, "game.rounds=3", "game.max_nonfinite_updates=2", f"output_dir={out}"], "game"))
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["round"] == 1
    assert Pool(out / "pool").rounds() == [1] and not (out / "pool" / "round_0002.parquet").exists()

    tolerant = play_game(
        compose(
            [*TINY_GAME, "game.rounds=2", "game.max_nonfinite_updates=100", f"output_dir={tmp_path / 'tolerant'}"],
            "game",
        )
    )
    first, second = tolerant["history"]
    assert first["gen/skipped_updates"] == 0 and second["gen/skipped_updates"] == 2  # every step of round 2


def raise_oom(*args, **kwargs):
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


@pytest.mark.parametrize(
    "target,method,message",
    [
        (
            "duoguard.roles.guardrail.Guardrail",
            "train",
            r"role 'guardrail' ran out of memory in train\(\); "
            r"its batch size is guardrail\.train\.per_device_batch_size=32",
        ),
        (
            "duoguard.roles.generator.Generator",
            "play",
            r"role 'generator' ran out of memory in play\(\); "
            r"its batch size is generator\.grpo\.prompts_per_step=4 \(x num_generations=4\)",
        ),
    ],
)
def test_out_of_memory_names_role_batch_size_and_key(tmp_path, monkeypatch, cache_dir, target, method, message):
    import importlib

    from duoguard.game import play_game

    module, cls = target.rsplit(".", 1)
    monkeypatch.setattr(getattr(importlib.import_module(module), cls), method, raise_oom)
    with pytest.raises(RoleOutOfMemory, match=message):
        play_game(compose([*TINY_GAME, "game.rounds=1", f"output_dir={tmp_path}"], "game"))


def test_resource_checks_name_every_role():
    asks = {
        "generator": {"num_cpus": 4, "num_gpus": 2},
        "guardrail": {"num_cpus": 1, "num_gpus": 0.5},
        "judge": {"num_cpus": 1, "num_gpus": 0.25},
    }
    check_resources(asks, {"CPU": 8, "GPU": 3})  # fits
    with pytest.raises(ResourceError) as e:
        check_resources(asks, {"CPU": 8, "GPU": 2})
    msg = str(e.value)
    for part in (
        "generator asks num_cpus=4, num_gpus=2 (runtime.roles.generator)",
        "guardrail asks num_cpus=1, num_gpus=0.5",
        "judge asks num_cpus=1, num_gpus=0.25",
        "together CPU=6, GPU=2.75",
        "the cluster has CPU=8, GPU=2",
    ):
        assert part in msg
    with pytest.raises(ResourceError, match=r"runtime.roles.generator.num_gpus=1.5: above 1 it must be a whole number"):
        check_resources({**asks, "generator": {"num_cpus": 1, "num_gpus": 1.5}}, {"CPU": 8, "GPU": 8})
    with pytest.raises(ResourceError, match="CPU=6, GPU=2.75, but the cluster has CPU=2"):
        check_resources(asks, {"CPU": 2, "GPU": 8})


@pytest.mark.slow
def test_placement_that_cannot_be_reserved_fails_with_the_bundles(monkeypatch):
    import ray

    from duoguard.runtime.ray_actors import RayRuntime

    monkeypatch.setattr(ray, "wait", lambda refs, timeout=None: ([], refs))  # as if no node could hold a bundle
    from duoguard.config import RayConfig, RolesConfig

    with pytest.raises(
        ResourceError, match=r"could not reserve the roles' bundles .*'generator': \{'CPU': 1.0\}.* within 1 s"
    ):
        RayRuntime(RolesConfig(), RayConfig(placement_timeout_s=1, num_cpus=4))
    assert not ray.is_initialized()  # the runtime cleaned up after itself


@pytest.mark.slow
@pytest.mark.parametrize(
    "workers,victim",
    [
        (1, "duoguard-generator-"),
        (2, "duoguard-generator-1-"),
    ],  # one actor (Ray restarts it); rank 1 of 2 (all ranks restart)
    ids=["actor", "data-parallel-rank"],
)
def test_a_killed_role_actor_is_restarted_and_its_round_retried(tmp_path, cache_dir, workers, victim):
    import ray

    from duoguard.data.pool import Pool
    from duoguard.game import play_game

    out = tmp_path / "run"
    killed = []

    def kill_generator_during_round_2():
        latest = out / "checkpoints" / "latest.json"
        deadline = time.time() + 300
        while time.time() < deadline:
            if latest.is_file() and json.loads(latest.read_text())["round"] >= 1:
                break
            time.sleep(0.1)
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(victim)]
        actor = ray.get_actor(names[0], namespace="duoguard")
        ray.kill(actor, no_restart=False)  # Ray restarts it (ray.max_restarts)
        killed.append(names[0])

    killer = threading.Thread(target=kill_generator_during_round_2, daemon=True)
    killer.start()
    result = play_game(
        compose(
            [*TINY_GAME, "runtime=ray", f"generator.num_workers={workers}", "game.rounds=2", f"output_dir={out}"],
            "game",
        )
    )
    killer.join(timeout=5)
    assert killed, "the generator actor was never killed"
    rounds = [h["round"] for h in result["history"]]
    assert rounds == [1, 2]
    assert result["history"][1]["role_failures"] == 1  # round 2 was retried once
    ids = [r.id for r in Pool(out / "pool").records()]
    assert len(ids) == len(set(ids)) and Pool(out / "pool").rounds() == [1, 2]
    assert np.isfinite(result["history"][1]["mean_reward"])


@pytest.mark.parametrize(
    "cluster_gpus,judge_gpus,gen_workers,expect",
    [
        (0, 0, 1, {"generator": 0.0, "guardrail": 0.0}),  # a CPU cluster
        (2, 0, 1, {"generator": 1.0, "guardrail": 1.0}),  # separate GPUs when there are enough
        (1, 0, 1, {"generator": 0.5, "guardrail": 0.5}),  # else an equal share
        (4, 0, 2, {"generator": 1.0, "guardrail": 1.0}),  # two generator ranks + guardrail on 3 of 4
        (2, 1, 1, {"generator": 0.5, "guardrail": 0.5}),  # what a fixed request leaves is shared
        (3, 0, 2, {"generator": 1.0, "guardrail": 1.0}),
        (3, 0, 2, {"generator": 1.0, "guardrail": 1.0}),  # a group's ranks take whole GPUs first
        (3.5, 0, 2, {"generator": 1.0, "guardrail": 1.0}),
        (2.5, 0, 2, {"generator": 1.0, "guardrail": 0.5}),  # the single role shares what is left
    ],
)
def test_auto_gpus_give_generator_and_guardrail_their_own_gpus_when_they_can(
    cluster_gpus, judge_gpus, gen_workers, expect
):
    from duoguard.runtime import share_gpus

    requests = {
        "generator": {"num_cpus": 1.0, "num_gpus": None, "workers": gen_workers},
        "guardrail": {"num_cpus": 1.0, "num_gpus": None, "workers": 1},
        "judge": {"num_cpus": 1.0, "num_gpus": judge_gpus, "workers": 1},
    }
    share_gpus(requests, cluster_gpus)
    assert {role: requests[role]["num_gpus"] for role in expect} == expect
    assert requests["judge"]["num_gpus"] == judge_gpus
    check_resources(requests, {"CPU": 8, "GPU": cluster_gpus})  # what auto picks always fits


@pytest.mark.parametrize("cluster_gpus, gen_workers, short", [(2, 2, "guardrail"), (1, 2, "generator")])
def test_auto_gpus_never_put_two_ranks_of_a_group_on_one_gpu(cluster_gpus, gen_workers, short):
    from duoguard.runtime import ResourceError, share_gpus

    requests = {
        "generator": {"num_cpus": 1.0, "num_gpus": None, "workers": gen_workers},
        "guardrail": {"num_cpus": 1.0, "num_gpus": None, "workers": 1},
        "judge": {"num_cpus": 1.0, "num_gpus": 0, "workers": 1},
    }
    with pytest.raises(ResourceError, match=rf"runtime\.roles\.{{{short}}}\.num_gpus=null.*whole GPU each"):
        share_gpus(requests, cluster_gpus)


def test_a_fractional_gpu_for_the_ranks_of_a_group_is_refused():
    requests = {
        "generator": {"num_cpus": 1.0, "num_gpus": 0.5, "workers": 2},
        "guardrail": {"num_cpus": 1.0, "num_gpus": 0.5, "workers": 1},  # a single role may share
        "judge": {"num_cpus": 1.0, "num_gpus": 0, "workers": 1},
    }
    with pytest.raises(ResourceError, match=r"generator\.num_gpus=0\.5 for 2 ranks: .*whole GPU each") as e:
        check_resources(requests, {"CPU": 8, "GPU": 8})
    assert "guardrail.num_gpus=0.5 for" not in str(e.value)


def test_too_many_role_failures_stop_the_game_with_the_last_round_intact(tmp_path, monkeypatch, cache_dir):
    """The retry policy, in one process: round 2 keeps losing a role; after game.max_role_failures
    retries the game stops, and what is on disk is round 1."""
    import duoguard.game as game
    from duoguard.data.pool import Pool
    from duoguard.runtime import RoleDied

    real, attempts = game.play_round, []

    def flaky(r, roles, *args, **kwargs):
        result = real(r, roles, *args, **kwargs)  # the round runs (and writes its pool shard) ...
        if r == 2:  # ... then a role dies before its checkpoint
            attempts.append(r)
            raise RoleDied("generator", "play", "killed by the test")
        return result

    monkeypatch.setattr(game, "play_round", flaky)
    out = tmp_path / "run"
    with pytest.raises(
        GameStopped,
        match=r"role 'generator' died during play\(\).*3 role failures \(game.max_role_failures=2\).*round 1 complete",
    ):
        game.play_game(compose([*TINY_GAME, "game.rounds=3", "game.max_role_failures=2", f"output_dir={out}"], "game"))
    assert len(attempts) == 3  # the first try and two retries
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["round"] == 1
    assert Pool(out / "pool").rounds() == [1]
