"""The runtime's API on a toy role: a role built from a RoleSpec is called as its own methods, an
out-of-memory error names the configured key, and the same calls work in Ray actors."""

from __future__ import annotations

import os
import sys

import pytest

from duoguard.runtime import LocalRuntime, RoleOutOfMemory, RoleSpec, each_rank, wait_until_alive


class Counter:
    """A toy role: state, a method with keyword arguments, and one that runs out of memory."""

    def __init__(self, start: int, step: int = 1):
        self.value, self.step = start, step

    def add(self, times: int = 1) -> int:
        self.value += self.step * times
        return self.value

    def rank(self) -> str:
        return os.environ.get("RANK", "-")

    def grow(self, n: int) -> None:
        raise MemoryError(f"cannot allocate {n} items")


def build_counter(*, start: int, step: int = 1) -> Counter:
    return Counter(start, step)


def counter_spec(name: str = "judge", **merge) -> RoleSpec[Counter]:
    return RoleSpec(
        name,
        build_counter,
        kwargs={"start": 10, "step": 2},
        oom_hints={"grow": ("judge.llm.batch_size", 64)},
        merge=merge,
    )


def test_a_role_from_its_spec_is_called_as_its_own_methods():
    counter = LocalRuntime().spawn(counter_spec())
    assert counter.add() == 12
    assert counter.add(times=3) == 18  # keyword arguments reach the method; state stays in the role
    assert each_rank(counter).add() == [20]  # one process: one rank
    wait_until_alive(counter)  # a role in this process is always alive
    assert counter.add.__name__ == "judge.add"
    with pytest.raises(AttributeError):
        counter._private()  # the handle's own names: never forwarded to the role


def test_out_of_memory_in_a_role_method_names_the_configured_key():
    counter = LocalRuntime().spawn(counter_spec())
    with pytest.raises(
        RoleOutOfMemory,
        match=r"role 'judge' ran out of memory in grow\(\); its batch size is judge\.llm\.batch_size=64: "
        r"lower it \(MemoryError: cannot allocate 5 items\)",
    ):
        counter.grow(5)


def test_a_spec_with_a_wrong_keyword_fails_before_the_role_is_built():
    with pytest.raises(TypeError, match=r"role 'judge': build_counter\(\) got an unexpected keyword argument 'begin'"):
        RoleSpec("judge", build_counter, kwargs={"start": 1, "begin": 2})
    with pytest.raises(TypeError, match=r"role 'judge': build_counter\(\) missing a required argument: 'start'"):
        RoleSpec("judge", build_counter, kwargs={"step": 2})


@pytest.mark.slow
def test_the_same_calls_reach_roles_in_ray_actors_and_worker_groups():
    import ray

    from duoguard.config import RayConfig, RolesConfig
    from duoguard.runtime.ray_actors import RayRuntime

    # the toy role travels by value: Ray's workers cannot import a test module
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    runtime = RayRuntime(RolesConfig(), RayConfig(num_cpus=4), workers={"generator": 2})
    try:
        counter = runtime.spawn(counter_spec())
        assert counter.add() == 12 and counter.add(times=3) == 18
        assert each_rank(counter).add() == [20]
        with pytest.raises(
            RoleOutOfMemory,
            match=r"role 'judge' ran out of memory in grow\(\); its batch size is judge\.llm\.batch_size=64",
        ):
            counter.grow(5)
        wait_until_alive(counter)

        group = runtime.spawn(counter_spec("generator", add=sum))  # two data-parallel ranks
        assert each_rank(group).rank() == ["0", "1"]  # every call reaches every rank, in rank order
        assert group.add() == 24  # merged as the spec says: 12 + 12
        assert group.rank() == "0"  # no merge rule: rank 0's result
        wait_until_alive(group)  # a group comes back whole, every rank rebuilt from the spec
        assert each_rank(group).add(times=2) == [14, 14]
    finally:
        runtime.shutdown()
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert not ray.is_initialized()


def test_ray_actors_get_the_hub_token_and_caches_but_the_config_never_holds_them(monkeypatch):
    """ray=cluster workers need HF_TOKEN for gated models: forwarded by name from the driver's
    environment into the actors' runtime_env, never resolved into the config (which W&B logs)."""
    import json

    from duoguard.config import compose, to_container
    from duoguard.runtime.placement import actor_runtime_env

    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    cfg = compose("game", ["runtime=ray", "ray=cluster", "output_dir=/tmp/x"])
    env = actor_runtime_env(cfg.ray.runtime_env, cfg.ray.forward_env, {"HF_TOKEN": "hf_secret", "HF_HOME": "/d"})
    assert env["env_vars"]["HF_TOKEN"] == "hf_secret"
    assert env["env_vars"]["HF_HOME"] == cfg.ray.runtime_env["env_vars"]["HF_HOME"]  # the configured value wins
    assert "HF_HUB_OFFLINE" not in env["env_vars"]  # unset: not forwarded
    assert env["env_vars"]["WANDB_PROJECT"] == cfg.ray.runtime_env["env_vars"]["WANDB_PROJECT"]
    assert "hf_secret" not in json.dumps(to_container(cfg))
    assert actor_runtime_env({}, ["HF_TOKEN"], {}) == {}  # nothing set, nothing added
