"""Placement on a Ray cluster that declares 4 GPUs (`ray start --head --num-gpus=4` on this CPU machine):
the ranks each role gets, one device per rank, and the starts that are refused, with their messages."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from duoguard.config import RayConfig, RoleResources, RolesConfig
from duoguard.runtime import ResourceError, RoleSpec, each_rank
from tests.conftest import BIN
from tests.test_ray_cluster import free_port

pytestmark = pytest.mark.slow


class Probe:
    """A toy role that reports where Ray put it."""

    def where(self) -> tuple[str, str, str]:
        import ray

        gpus = ",".join(str(g) for g in ray.get_gpu_ids())
        return os.environ.get("RANK", "-"), os.environ.get("CUDA_VISIBLE_DEVICES", ""), gpus


def build_probe() -> Probe:
    return Probe()


@pytest.fixture(scope="module")
def gpu_cluster():
    port = free_port()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "RAY_USAGE_STATS_ENABLED": "0"}
    start = [str(BIN / "ray"), "start", "--head", f"--port={port}", "--num-cpus=8", "--num-gpus=4"]
    start += ["--include-dashboard=false", "--disable-usage-stats"]
    proc = subprocess.run(start, env=env, text=True, capture_output=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    import ray

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import tests
    try:
        yield f"127.0.0.1:{port}"
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        subprocess.run([str(BIN / "ray"), "stop", "--force"], env=env, capture_output=True, timeout=120)


def runtime(address: str, workers: dict[str, int], **gpus: float | None):
    from duoguard.runtime.ray_actors import RayRuntime

    roles = RolesConfig(**{role: RoleResources(num_cpus=1, num_gpus=n) for role, n in gpus.items()})
    return RayRuntime(roles, RayConfig(address=address, placement_timeout_s=30), workers)


def test_each_rank_of_each_role_gets_a_gpu_of_its_own(gpu_cluster):
    rt = runtime(gpu_cluster, {"generator": 2, "guardrail": 2}, generator=None, guardrail=None, judge=0)
    try:
        assert rt.requests["generator"]["num_gpus"] == rt.requests["guardrail"]["num_gpus"] == 1.0
        generator = each_rank(rt.spawn(RoleSpec("generator", build_probe))).where()
        guardrail = each_rank(rt.spawn(RoleSpec("guardrail", build_probe))).where()
        judge = rt.spawn(RoleSpec("judge", build_probe)).where()
    finally:
        rt.shutdown()
    assert [rank for rank, _, _ in generator] == ["0", "1"] and [rank for rank, _, _ in guardrail] == ["0", "1"]
    devices = [gpus for _, _, gpus in generator + guardrail]
    assert sorted(devices) == ["0", "1", "2", "3"]  # four ranks, four devices, none shared
    assert all(visible == gpus for _, visible, gpus in generator + guardrail)  # each rank sees only its own
    assert judge[2] == ""  # num_gpus=0: no device


def test_a_fraction_of_a_gpu_for_a_rank_of_a_group_is_refused(gpu_cluster):
    with pytest.raises(ResourceError) as e:
        runtime(gpu_cluster, {"generator": 2}, generator=0.5, guardrail=0.5, judge=0)
    assert "runtime.roles.generator.num_gpus=0.5 for 2 ranks" in str(e.value)
    assert "whole GPU each" in str(e.value) and "guardrail.num_gpus=0.5 for" not in str(e.value)


def test_auto_shares_that_would_put_two_ranks_on_one_gpu_are_refused(gpu_cluster):
    with pytest.raises(ResourceError) as e:  # 3 + 2 ranks want 5 GPUs, the cluster declares 4
        runtime(gpu_cluster, {"generator": 3, "guardrail": 2}, generator=None, guardrail=None, judge=0)
    assert "runtime.roles.{generator,guardrail}.num_gpus=null (auto): the cluster has 4 GPUs" in str(e.value)
    assert "generator (3 ranks), guardrail (2 ranks)" in str(e.value)


def test_a_single_role_may_share_what_the_groups_leave(gpu_cluster):
    rt = runtime(gpu_cluster, {"generator": 3}, generator=None, guardrail=None, judge=None)
    try:
        assert rt.requests["generator"]["num_gpus"] == 1.0
        assert rt.requests["guardrail"]["num_gpus"] == rt.requests["judge"]["num_gpus"] == 0.5
        judge = rt.spawn(RoleSpec("judge", build_probe)).where()
        assert judge[2] in {"0", "1", "2", "3"}  # a share carved from one device
    finally:
        rt.shutdown()


def test_the_plan_reads_the_hardware_from_a_running_cluster(gpu_cluster):
    from tests.conftest import run_app

    asked = ["game", "--from-cluster", f"ray.address={gpu_cluster}", "runtime=ray"]
    proc = run_app("duoguard-plan", *asked, "hardware.gpu_memory_gib=80")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "hardware from the cluster: hardware.nodes=1, hardware.gpus_per_node=4" in proc.stdout
    assert "generator" in proc.stdout and "guardrail" in proc.stdout  # the plan's table
    # declared GPUs have no memory to read: the plan says which key to give
    proc = run_app("duoguard-plan", *asked)
    assert proc.returncode == 2
    assert "hardware.gpu_memory_gib: must be > 0 when hardware.gpus_per_node=4" in proc.stderr
