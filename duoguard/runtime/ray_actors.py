"""Where the roles run: all in this process (`local`) or each in its own Ray actor (`ray`).

The game talks to every role through a handle with one method, `call(method, *args)`. The
local handle calls the object; the Ray handle calls it in the role's actor. Roles are built by a
module-level builder function inside their process, so the same role classes run in both
runtimes and nothing above this module imports Ray.

Ray placement: one placement-group bundle per role worker, {CPU: num_cpus, GPU: num_gpus}
from `runtime.roles`, so the generator and the guardrail get GPUs of their own when GPUs exist.
What each role asks for is checked against what the cluster has before any role is built.

A role with several workers (`generator.num_workers`) is a `WorkerGroup`: one actor per rank,
joined in a torch.distributed process group (NCCL on GPUs, gloo on CPUs) that its trainer uses
for data parallelism. Every call goes to every rank (collectives need them all); the group
returns rank 0's result, or merges all ranks' results where the role says how.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from duoguard.config import RayConfig, RolesConfig, RuntimeConfig, RuntimeName
from duoguard.errors import UserError

log = logging.getLogger(__name__)

ROLES = ("generator", "guardrail", "judge")


class ResourceError(UserError):
    """The roles ask for more than the cluster has."""


class RoleError(RuntimeError):
    """A role failed; the message names it."""


class RoleDied(RoleError):
    """A role's process died (Ray restarts its actor); the game retries the round."""

    def __init__(self, role: str, method: str, detail: str = ""):
        self.role, self.method = role, method
        super().__init__(f"role '{role}' died during {method}(){': ' + detail if detail else ''}")


class RoleOutOfMemory(RoleError):
    """A role ran out of memory; the message names the batch size and the key to lower."""


# (config key, value) to name when a role's method runs out of memory
OomHints = Mapping[str, tuple[str, Any]]


def _is_oom(error: BaseException) -> bool:
    import torch

    if isinstance(error, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def call_role(obj: Any, role: str, method: str, args: tuple, kwargs: dict, hints: OomHints) -> Any:
    """Call a role's method; an out-of-memory error comes back naming role, batch size and key."""
    try:
        return getattr(obj, method)(*args, **kwargs)
    except Exception as e:
        if not _is_oom(e):
            raise
        key, value = hints.get(method, (None, None))
        advice = f"; its batch size is {key}={value}: lower it" if key else ""
        raise RoleOutOfMemory(f"role '{role}' ran out of memory in {method}(){advice} ({type(e).__name__}: {e})") from e


class LocalHandle:
    def __init__(self, role: str, obj: Any, hints: OomHints | None = None):
        self.role, self.obj, self.hints = role, obj, dict(hints or {})

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return call_role(self.obj, self.role, method, args, kwargs, self.hints)

    def call_each(self, method: str, *args: Any, **kwargs: Any) -> list[Any]:
        return [self.call(method, *args, **kwargs)]

    def wait_until_alive(self, timeout_s: float = 0) -> None:
        """A role in this process cannot die without the game."""


class RoleHost:
    """The body of a role's Ray actor: builds the role in the actor's process, then serves calls.
    A restarted actor (max_restarts) builds the role again from the same arguments."""

    def __init__(self, role: str, builder: Callable[..., Any], args: tuple, kwargs: dict, hints: OomHints):
        self.role, self.hints = role, dict(hints)
        self.obj = builder(*args, **kwargs)

    def rendezvous(self) -> tuple[str, int]:
        """This node's address and a free port: where rank 0 of a worker group listens."""
        import socket

        import ray

        with socket.socket() as sock:
            sock.bind(("", 0))
            return ray.util.get_node_ip_address(), sock.getsockname()[1]

    def set_env(self, env: Mapping[str, str]) -> None:
        """Environment for torch.distributed (RANK, WORLD_SIZE, MASTER_ADDR, ...), set before the
        role builds its trainer."""
        os.environ.update({k: str(v) for k, v in env.items()})

    def call(self, method: str, args: tuple, kwargs: dict) -> Any:
        return call_role(self.obj, self.role, method, args, kwargs, self.hints)

    def ready(self) -> bool:
        return True


class RayHandle:
    def __init__(self, role: str, actor: Any):
        self.role, self.actor = role, actor

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.result(self.submit(method, *args, **kwargs), method)

    def call_each(self, method: str, *args: Any, **kwargs: Any) -> list[Any]:
        return [self.call(method, *args, **kwargs)]

    def submit(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.actor.call.remote(method, args, kwargs)

    def result(self, ref: Any, method: str) -> Any:
        """The value of a submitted call; a failure comes back as a RoleError naming the role."""
        import ray

        try:
            return ray.get(ref)
        except ray.exceptions.RayActorError as e:
            raise RoleDied(self.role, method, type(e).__name__) from e
        except ray.exceptions.RayTaskError as e:
            cause = e.cause
            if isinstance(cause, RoleDied):  # a role this one was calling died (e.g. the guardrail, via the referee)
                raise RoleDied(cause.role, cause.method, f"while '{self.role}' ran {method}()") from e
            if isinstance(cause, RoleError):
                raise type(cause)(str(cause)) from e
            raise RoleError(f"role '{self.role}' failed in {method}(): {cause!r}") from e

    def wait_until_alive(self, timeout_s: float = 300) -> None:
        """Block while Ray restarts this role's actor; raise once it is dead for good."""
        import ray

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                ray.get(self.actor.ready.remote(), timeout=max(1.0, deadline - time.monotonic()))
                return
            except ray.exceptions.ActorUnavailableError:  # restarting: the role is being rebuilt
                if time.monotonic() > deadline:
                    raise RoleError(f"role '{self.role}' did not come back within {timeout_s:g} s") from None
                time.sleep(0.5)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as e:
                raise RoleError(
                    f"role '{self.role}' died and was not restarted (ray.max_restarts exhausted?): {type(e).__name__}"
                ) from e


class WorkerGroup:
    """The workers of one data-parallel role, called as one role (see the module docstring)."""

    def __init__(self, role: str, spawn: Callable[[], list[RayHandle]], merge: Mapping[str, Callable] | None = None):
        self.role, self._spawn, self.merge = role, spawn, dict(merge or {})
        self.workers = spawn()

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        results = self.call_each(method, *args, **kwargs)
        merge = self.merge.get(method)
        return merge(results) if merge else results[0]

    def call_each(self, method: str, *args: Any, **kwargs: Any) -> list[Any]:
        """Every rank's result, in rank order."""
        import ray

        refs = [w.submit(method, *args, **kwargs) for w in self.workers]
        pending = list(refs)
        while pending:  # fail fast: a failed rank leaves the others waiting in a collective
            done, pending = ray.wait(pending, num_returns=1)
            try:
                ray.get(done[0])
            except ray.exceptions.RayError:
                self.kill()
                rank = refs.index(done[0])
                self.workers[rank].result(done[0], method)  # raises that rank's error, named
        return [w.result(ref, method) for w, ref in zip(self.workers, refs, strict=True)]

    def wait_until_alive(self, timeout_s: float = 300) -> None:
        """A process group cannot take back a restarted rank: after a failure, every rank is
        started afresh (the caller then reloads the last checkpoint)."""
        self.kill()
        self.workers = self._spawn()

    def kill(self) -> None:
        import ray

        for w in self.workers:
            ray.kill(w.actor, no_restart=True)


class LocalRuntime:
    name = "local"

    def __init__(self, runtime_cfg: RuntimeConfig | None = None):
        self.cfg = runtime_cfg or RuntimeConfig()

    def device(self, role: str) -> str:
        """The role's `device` override, else runtime.device (auto: a GPU when one is visible)."""
        from duoguard.models import pick_device

        return getattr(self.cfg.roles, role).device or pick_device(self.cfg.device)

    def spawn(
        self, role: str, builder: Callable[..., Any], *args: Any, hints: OomHints | None = None,
        merge: Mapping[str, Callable] | None = None, **kwargs: Any,
    ) -> LocalHandle:  # fmt: skip
        return LocalHandle(role, builder(*args, **kwargs), hints)

    def shutdown(self) -> None:
        pass


def check_resources(requests: Mapping[str, Mapping[str, float]], available: Mapping[str, float]) -> None:
    """Raise ResourceError, naming each role's request, when the roles cannot fit.

    A request is {num_cpus, num_gpus} per worker, and optionally `workers` (default 1)."""
    workers = {role: int(r.get("workers", 1)) for role, r in requests.items()}
    need_cpu = sum(float(r["num_cpus"]) * workers[role] for role, r in requests.items())
    need_gpu = sum(float(r["num_gpus"]) * workers[role] for role, r in requests.items())
    have_cpu, have_gpu = float(available.get("CPU", 0)), float(available.get("GPU", 0))
    problems = []
    for role, r in requests.items():
        gpus = float(r["num_gpus"])
        if gpus > 1 and not gpus.is_integer():
            problems.append(f"runtime.roles.{role}.num_gpus={gpus}: above 1 it must be a whole number")
        if float(r["num_cpus"]) <= 0:
            problems.append(f"runtime.roles.{role}.num_cpus={r['num_cpus']}: must be > 0")
    if need_cpu > have_cpu or need_gpu > have_gpu or problems:
        asks = "; ".join(
            f"{role} asks {f'{workers[role]} workers x ' if workers[role] > 1 else ''}"
            f"num_cpus={r['num_cpus']:g}, num_gpus={r['num_gpus']:g} (runtime.roles.{role})"
            for role, r in requests.items()
        )
        raise ResourceError(
            "runtime=ray cannot place the roles: "
            + (" ".join(problems) + " " if problems else "")
            + f"{asks}; together CPU={need_cpu:g}, GPU={need_gpu:g}, "
            f"but the cluster has CPU={have_cpu:g}, GPU={have_gpu:g}. "
            "Lower runtime.roles.<role>.num_cpus/num_gpus (or generator.num_workers), or add nodes to the cluster."
        )


def share_gpus(requests: dict[str, dict[str, Any]], cluster_gpus: float) -> None:
    """Resolve `num_gpus: null` (auto), in place: a whole GPU per worker when the cluster has
    enough for every auto worker, else an equal fraction of what is left (none without GPUs)."""
    auto = [role for role, r in requests.items() if r["num_gpus"] is None]
    fixed = sum(float(r["num_gpus"]) * r["workers"] for r in requests.values() if r["num_gpus"] is not None)
    wanted = sum(requests[role]["workers"] for role in auto)
    left = max(0.0, cluster_gpus - fixed)
    share = 1.0 if left >= wanted else math.floor(100 * left / wanted) / 100 if wanted else 0.0
    for role in auto:
        requests[role]["num_gpus"] = share
        log.info("runtime.roles.%s.num_gpus=auto: %g GPU per worker (the cluster has %g)", role, share, cluster_gpus)
    for r in requests.values():
        r["num_gpus"] = float(r["num_gpus"])


class RayRuntime:
    """Roles in Ray actors: one placement group, one bundle per role worker, reserved up front."""

    name = "ray"

    def __init__(
        self, roles_cfg: RolesConfig, ray_cfg: RayConfig, workers: Mapping[str, int] | None = None
    ):
        import ray
        from ray.util.placement_group import placement_group

        workers = {role: int((workers or {}).get(role, 1)) for role in ROLES}
        self.roles_cfg = roles_cfg
        self.requests = {
            role: {
                "num_cpus": getattr(roles_cfg, role).num_cpus,
                "num_gpus": getattr(roles_cfg, role).num_gpus,
                "workers": workers[role],
            }
            for role in ROLES
        }
        # bundle indices per role: generator workers first, then the guardrail, then the judge
        self.bundles: dict[str, list[int]] = {}
        for role in ROLES:
            start = sum(len(b) for b in self.bundles.values())
            self.bundles[role] = list(range(start, start + workers[role]))
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
                "runtime_env": dict(ray_cfg.runtime_env) or None,
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
            bundles = [self._bundle(self.requests[role]) for role in ROLES for _ in self.bundles[role]]
            self.pg = placement_group(bundles, strategy="PACK")
            timeout = ray_cfg.placement_timeout_s
            ready, _ = ray.wait([self.pg.ready()], timeout=timeout)
            if not ready:
                asked = {role: self._bundle(self.requests[role]) for role in ROLES}
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

    @staticmethod
    def _bundle(request: Mapping[str, float]) -> dict[str, float]:
        bundle = {"CPU": request["num_cpus"]}
        if request["num_gpus"] > 0:
            bundle["GPU"] = request["num_gpus"]
        return bundle

    def _actor(self, role: str, rank: int | None, builder: Callable[..., Any], args: tuple, kwargs: dict,
               hints: OomHints | None, restarts: int) -> RayHandle:  # fmt: skip
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        req = self.requests[role]
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
        actor = actor_cls.remote(role, builder, args, kwargs, dict(hints or {}))
        self.actors.append(actor)
        try:  # wait for the build, so a role that cannot start fails here, by name
            ray.get(actor.ready.remote())
        except ray.exceptions.RayError as e:
            raise RoleError(f"role '{role}' failed to start: {getattr(e, 'cause', e)!r}") from e
        return RayHandle(role, actor)

    def spawn(
        self, role: str, builder: Callable[..., Any], *args: Any, hints: OomHints | None = None,
        merge: Mapping[str, Callable] | None = None, **kwargs: Any,
    ) -> RayHandle | WorkerGroup:  # fmt: skip
        """One actor (Ray restarts it up to ray.max_restarts), or a WorkerGroup of
        `workers` ranks (rebuilt whole after a failure) when the role has several."""
        n = self.requests[role]["workers"]
        if n == 1:
            return self._actor(role, None, builder, args, kwargs, hints, self.max_restarts)

        def start_group() -> list[RayHandle]:
            import ray

            ranks = [self._actor(role, rank, builder, args, kwargs, hints, 0) for rank in range(n)]
            addr, port = ray.get(ranks[0].actor.rendezvous.remote())
            # LOCAL_RANK 0: in its actor, each rank sees only its own GPU(s); OMP_NUM_THREADS set
            # keeps accelerate from re-pinning the threads the role's builder chose
            env = {"MASTER_ADDR": addr, "MASTER_PORT": port, "WORLD_SIZE": n, "LOCAL_RANK": 0, "LOCAL_WORLD_SIZE": 1,
                   "OMP_NUM_THREADS": max(1, int(self.requests[role]["num_cpus"]))}  # fmt: skip
            ray.get([h.actor.set_env.remote({**env, "RANK": rank}) for rank, h in enumerate(ranks)])
            return ranks

        group = WorkerGroup(role, start_group, merge)
        self.groups.append(group)
        return group

    def shutdown(self) -> None:
        """Kill the role actors and free their placement group; stop Ray if this runtime started it,
        so consecutive jobs (e.g. a Hydra multirun) never share state."""
        import ray
        from ray.util.placement_group import remove_placement_group

        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors, self.groups = [], []
        if self.pg is not None:
            remove_placement_group(self.pg)
            self.pg = None
        if self._started and ray.is_initialized():
            ray.shutdown()


def make_runtime(runtime_cfg: RuntimeConfig, ray_cfg: RayConfig, workers: Mapping[str, int] | None = None):
    if runtime_cfg.name == RuntimeName.local:
        return LocalRuntime(runtime_cfg)
    try:
        import ray  # noqa: F401
    except ImportError:
        raise UserError("runtime=ray needs Ray (pip install 'ray[default]'); runtime=local runs without it") from None
    return RayRuntime(runtime_cfg.roles, ray_cfg, workers)
