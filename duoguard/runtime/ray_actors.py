"""runtime=ray: each role in its own Ray actor; the only module that imports Ray.

Placement: one placement group, one bundle per role worker (see placement.py), reserved and
checked against the cluster before any role is built.

A role with several workers (`generator.num_workers`) is a `WorkerGroup`: one actor per rank,
joined in a torch.distributed process group (NCCL on GPUs, gloo on CPUs) that its trainer uses
for data parallelism. Every call goes to every rank (collectives need them all); the group
returns rank 0's result, or merges all ranks' results where the role's spec says how.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from duoguard.config import RayConfig, RolesConfig
from duoguard.runtime.handles import RoleDied, RoleError, RoleHandle, RoleSpec, call_role
from duoguard.runtime.placement import (
    ROLES,
    ResourceError,
    actor_runtime_env,
    bundle,
    bundle_indices,
    check_resources,
    role_requests,
    share_gpus,
)

T = TypeVar("T")


def cluster_hardware(address: str) -> dict[str, float]:
    """What a running Ray cluster offers, as `hardware.*` overrides: nodes with GPUs, the most GPUs on one of
    them, and one GPU's memory in GiB (asked of a GPU through a one-GPU task; left out when that GPU has no
    CUDA, e.g. a cluster that only declares GPUs)."""
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        gpus = [n["Resources"].get("GPU", 0) for n in ray.nodes() if n.get("Alive")]
        found: dict[str, float] = {"nodes": sum(1 for g in gpus if g) or 1, "gpus_per_node": max(gpus, default=0)}
        if found["gpus_per_node"]:
            memory = ray.get(ray.remote(num_gpus=1)(_gpu_memory_gib).remote(), timeout=120)
            if memory:
                found["gpu_memory_gib"] = memory
        return found
    finally:
        if started:
            ray.shutdown()


def _gpu_memory_gib() -> float | None:
    import torch

    return torch.cuda.get_device_properties(0).total_memory / 2**30 if torch.cuda.is_available() else None


class RoleHost:
    """The body of a role's Ray actor: builds the role in the actor's process, then serves calls.
    A restarted actor (max_restarts) builds the role again from the same spec."""

    def __init__(self, spec: RoleSpec[Any]):
        self.role, self.hints, self.plan = spec.name, dict(spec.oom_hints), spec.memory_plan
        self.obj = spec.build()

    def rendezvous(self) -> tuple[str, int]:
        """This node's address and a free port: where rank 0 of a worker group listens."""
        with socket.socket() as sock:
            sock.bind(("", 0))
            return ray.util.get_node_ip_address(), sock.getsockname()[1]

    def set_env(self, env: Mapping[str, str]) -> None:
        """Environment for torch.distributed (RANK, WORLD_SIZE, MASTER_ADDR, ...), set before the
        role builds its trainer."""
        os.environ.update({k: str(v) for k, v in env.items()})

    def call(self, method: str, args: tuple, kwargs: dict) -> Any:
        return call_role(self.obj, self.role, method, args, kwargs, self.hints, self.plan)

    def ready(self) -> bool:
        return True


class RayHandle(RoleHandle):
    """A role in one Ray actor."""

    def __init__(self, role: str, actor: Any):
        self._role, self._actor = role, actor

    def _call(self, method: str, args: tuple, kwargs: dict) -> Any:
        return self._result(self._submit(method, args, kwargs), method)

    def _submit(self, method: str, args: tuple, kwargs: dict) -> Any:
        return self._actor.call.remote(method, args, kwargs)

    def _result(self, ref: Any, method: str) -> Any:
        """The value of a submitted call; a failure comes back as a RoleError naming the role."""
        try:
            return ray.get(ref)
        except ray.exceptions.RayActorError as e:
            raise RoleDied(self._role, method, type(e).__name__) from e
        except ray.exceptions.RayTaskError as e:
            cause = e.cause
            if isinstance(cause, RoleDied):  # a role this one was calling died (e.g. the guardrail, via the referee)
                raise RoleDied(cause.role, cause.method, f"while '{self._role}' ran {method}()") from e
            if isinstance(cause, RoleError):
                raise type(cause)(str(cause)) from e
            raise RoleError(f"role '{self._role}' failed in {method}(): {cause!r}") from e

    def _wait_until_alive(self, timeout_s: float) -> None:
        """Block while Ray restarts this role's actor; raise once it is dead for good."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                ray.get(self._actor.ready.remote(), timeout=max(1.0, deadline - time.monotonic()))
                return
            except ray.exceptions.ActorUnavailableError:  # restarting: the role is being rebuilt
                if time.monotonic() > deadline:
                    raise RoleError(f"role '{self._role}' did not come back within {timeout_s:g} s") from None
                time.sleep(0.5)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as e:
                raise RoleError(
                    f"role '{self._role}' died and was not restarted (ray.max_restarts exhausted?): {type(e).__name__}"
                ) from e


class WorkerGroup(RoleHandle):
    """The workers of one data-parallel role, called as one role (see the module docstring)."""

    def __init__(self, role: str, spawn: Callable[[], list[RayHandle]], merge: Mapping[str, Callable] | None = None):
        self._role, self._spawn, self._merge = role, spawn, dict(merge or {})
        self._workers = spawn()

    def _call(self, method: str, args: tuple, kwargs: dict) -> Any:
        results = self._call_each(method, args, kwargs)
        merge = self._merge.get(method)
        return merge(results) if merge else results[0]

    def _call_each(self, method: str, args: tuple, kwargs: dict) -> list[Any]:
        """Every rank's result, in rank order."""
        refs = [w._submit(method, args, kwargs) for w in self._workers]
        pending = list(refs)
        while pending:  # fail fast: a failed rank leaves the others waiting in a collective
            done, pending = ray.wait(pending, num_returns=1)
            try:
                ray.get(done[0])
            except ray.exceptions.RayError:
                self._kill()
                rank = refs.index(done[0])
                self._workers[rank]._result(done[0], method)  # raises that rank's error, named
        return [w._result(ref, method) for w, ref in zip(self._workers, refs, strict=True)]

    def _wait_until_alive(self, timeout_s: float) -> None:
        """A process group cannot take back a restarted rank: after a failure, every rank is
        started afresh (the caller then reloads the last checkpoint)."""
        self._kill()
        self._workers = self._spawn()

    def _kill(self) -> None:
        for w in self._workers:
            ray.kill(w._actor, no_restart=True)


class RayRuntime:
    """Roles in Ray actors: one placement group, one bundle per role worker, reserved up front."""

    name = "ray"

    def __init__(self, roles_cfg: RolesConfig, ray_cfg: RayConfig, workers: Mapping[str, int] | None = None):
        self.roles_cfg = roles_cfg
        self.requests = role_requests(roles_cfg, workers)
        self.bundles = bundle_indices(self.requests)
        self.max_restarts = ray_cfg.max_restarts
        self.run_tag = f"{os.getpid()}-{id(self):x}"  # actor names: duoguard-<role>[-<rank>]-<run_tag>
        self.actors: list[Any] = []
        self.groups: list[WorkerGroup] = []
        self.pg = None
        self._started = not ray.is_initialized()
        if self._started:
            init: dict[str, Any] = {
                # "local" starts a Ray of our own even where `ray start` runs a cluster on this machine
                "address": ray_cfg.address or "local",
                "namespace": ray_cfg.namespace,
                "include_dashboard": ray_cfg.include_dashboard,
                "runtime_env": actor_runtime_env(ray_cfg.runtime_env, ray_cfg.forward_env, os.environ) or None,
                "log_to_driver": True,
            }
            if init["address"] == "local":  # resources can only be declared for a Ray we start
                # The roles take turns (the generator waits on the guardrail and the judge), so a
                # local Ray may promise them more logical CPUs than the machine has cores.
                asked = sum(r["num_cpus"] * r["workers"] for r in self.requests.values())
                init["num_cpus"] = ray_cfg.num_cpus or max(os.cpu_count() or 1, math.ceil(asked))
                init["num_gpus"] = ray_cfg.num_gpus
            ray.init(**{k: v for k, v in init.items() if v is not None})
        try:
            share_gpus(self.requests, float(ray.cluster_resources().get("GPU", 0)))
            check_resources(self.requests, ray.cluster_resources())
            bundles = [bundle(self.requests[role]) for role in ROLES for _ in self.bundles[role]]
            self.pg = placement_group(bundles, strategy="PACK")
            timeout = ray_cfg.placement_timeout_s
            ready, _ = ray.wait([self.pg.ready()], timeout=timeout)
            if not ready:
                asked = {role: bundle(self.requests[role]) for role in ROLES}
                raise ResourceError(
                    f"Ray could not reserve the roles' bundles {asked} (per worker) within "
                    f"{timeout:g} s (cluster: {ray.cluster_resources()}); each bundle must fit on one node"
                )
        except BaseException:
            self.shutdown()
            raise

    def device(self, role: str) -> str:
        """In its actor a GPU role sees its own GPU(s) as cuda:0."""
        return getattr(self.roles_cfg, role).device or ("cuda" if self.requests[role]["num_gpus"] > 0 else "cpu")

    def _actor(self, spec: RoleSpec[Any], rank: int | None, restarts: int) -> RayHandle:
        role, req = spec.name, self.requests[spec.name]
        actor_cls = ray.remote(RoleHost).options(
            num_cpus=req["num_cpus"],
            num_gpus=req["num_gpus"],
            scheduling_strategy=PlacementGroupSchedulingStrategy(
                self.pg, placement_group_bundle_index=self.bundles[role][rank or 0]
            ),
            name=f"duoguard-{role}{'' if rank is None else f'-{rank}'}-{self.run_tag}-{len(self.actors)}",
            max_restarts=restarts,
            max_task_retries=0,  # a call running when the actor died fails; the game retries the round
        )
        actor = actor_cls.remote(spec)
        self.actors.append(actor)
        try:  # wait for the build, so a role that cannot start fails here, by name
            ray.get(actor.ready.remote())
        except ray.exceptions.RayError as e:
            raise RoleError(f"role '{role}' failed to start: {getattr(e, 'cause', e)!r}") from e
        return RayHandle(role, actor)

    def spawn(self, spec: RoleSpec[T]) -> T:
        """One actor (Ray restarts it up to ray.max_restarts), or a WorkerGroup of
        `workers` ranks (rebuilt whole after a failure) when the role has several."""
        n = self.requests[spec.name]["workers"]
        if n == 1:
            return cast(T, self._actor(spec, None, self.max_restarts))

        def start_group() -> list[RayHandle]:
            ranks = [self._actor(spec, rank, 0) for rank in range(n)]
            addr, port = ray.get(ranks[0]._actor.rendezvous.remote())
            # LOCAL_RANK 0: in its actor, each rank sees only its own GPU(s); OMP_NUM_THREADS set
            # keeps accelerate from re-pinning the threads the role's builder chose
            env = {
                "MASTER_ADDR": addr,
                "MASTER_PORT": port,
                "WORLD_SIZE": n,
                "LOCAL_RANK": 0,
                "LOCAL_WORLD_SIZE": 1,
                "OMP_NUM_THREADS": max(1, int(self.requests[spec.name]["num_cpus"])),
            }
            ray.get([h._actor.set_env.remote({**env, "RANK": rank}) for rank, h in enumerate(ranks)])
            return ranks

        group = WorkerGroup(spec.name, start_group, spec.merge)
        self.groups.append(group)
        return cast(T, group)

    def shutdown(self) -> None:
        """Kill the role actors and free their placement group; stop Ray if this runtime started it,
        so consecutive jobs (e.g. a Hydra multirun) never share state."""
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors, self.groups = [], []
        if self.pg is not None:
            remove_placement_group(self.pg)
            self.pg = None
        if self._started and ray.is_initialized():
            ray.shutdown()
