"""Where the roles run: all in this process (`local`) or each in its own Ray actor (`ray`).

The game talks to every role through a handle with one method, `call(method, *args)`. The
local handle calls the object; the Ray handle calls it in the role's actor. Roles are built by a
module-level builder function inside their process, so the same role classes run in both
runtimes and nothing above this module imports Ray.

Ray placement: one placement-group bundle per role, {CPU: num_cpus, GPU: num_gpus} from
`runtime.roles`, so the generator and the guardrail get GPUs of their own when GPUs exist.
What each role asks for is checked against what the cluster has before any role is built.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

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

    def wait_until_alive(self, timeout_s: float = 0) -> None:
        """A role in this process cannot die without the game."""


class RoleHost:
    """The body of a role's Ray actor: builds the role in the actor's process, then serves calls.
    A restarted actor (max_restarts) builds the role again from the same arguments."""

    def __init__(self, role: str, builder: Callable[..., Any], args: tuple, kwargs: dict, hints: OomHints):
        self.role, self.hints = role, dict(hints)
        self.obj = builder(*args, **kwargs)

    def call(self, method: str, args: tuple, kwargs: dict) -> Any:
        return call_role(self.obj, self.role, method, args, kwargs, self.hints)

    def ready(self) -> bool:
        return True

    def pid(self) -> int:
        return os.getpid()


class RayHandle:
    def __init__(self, role: str, actor: Any):
        self.role, self.actor = role, actor

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        import ray

        try:
            return ray.get(self.actor.call.remote(method, args, kwargs))
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


class LocalRuntime:
    name = "local"

    def spawn(
        self, role: str, builder: Callable[..., Any], *args: Any, hints: OomHints | None = None, **kwargs: Any
    ) -> LocalHandle:
        return LocalHandle(role, builder(*args, **kwargs), hints)

    def shutdown(self) -> None:
        pass


def check_resources(requests: Mapping[str, Mapping[str, float]], available: Mapping[str, float]) -> None:
    """Raise ResourceError, naming each role's request, when the roles cannot fit."""
    need_cpu = sum(float(r["num_cpus"]) for r in requests.values())
    need_gpu = sum(float(r["num_gpus"]) for r in requests.values())
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
            f"{role} asks num_cpus={r['num_cpus']:g}, num_gpus={r['num_gpus']:g} (runtime.roles.{role})"
            for role, r in requests.items()
        )
        raise ResourceError(
            "runtime=ray cannot place the roles: "
            + (" ".join(problems) + " " if problems else "")
            + f"{asks}; together CPU={need_cpu:g}, GPU={need_gpu:g}, "
            f"but the cluster has CPU={have_cpu:g}, GPU={have_gpu:g}. "
            "Lower runtime.roles.<role>.num_cpus/num_gpus, or add nodes to the cluster."
        )


class RayRuntime:
    name = "ray"

    def __init__(self, roles_cfg: Mapping[str, Mapping[str, Any]], ray_cfg: Mapping[str, Any]):
        import ray
        from ray.util.placement_group import placement_group

        self.requests = {
            role: {"num_cpus": float(roles_cfg[role]["num_cpus"]), "num_gpus": float(roles_cfg[role]["num_gpus"])}
            for role in ROLES
        }
        self.max_restarts = int(ray_cfg.get("max_restarts") or 0)
        self.run_tag = f"{os.getpid()}-{id(self):x}"  # actor names: duoguard-<role>-<run_tag>
        self.actors: list[Any] = []
        self.pg = None
        self._started = not ray.is_initialized()
        if self._started:
            init: dict[str, Any] = {
                "address": ray_cfg.get("address"),
                "namespace": ray_cfg.get("namespace"),
                "include_dashboard": bool(ray_cfg.get("include_dashboard")),
                "runtime_env": dict(ray_cfg.get("runtime_env") or {}) or None,
                "log_to_driver": True,
            }
            if not ray_cfg.get("address"):  # resources can only be declared for a Ray we start
                # The roles take turns (the generator waits on the guardrail and the judge), so a
                # local Ray may promise them more logical CPUs than the machine has cores.
                asked = sum(r["num_cpus"] for r in self.requests.values())
                init["num_cpus"] = ray_cfg.get("num_cpus") or max(os.cpu_count() or 1, math.ceil(asked))
                init["num_gpus"] = ray_cfg.get("num_gpus")
            ray.init(**{k: v for k, v in init.items() if v is not None})
        try:
            check_resources(self.requests, ray.cluster_resources())
            bundles = [self._bundle(self.requests[role]) for role in ROLES]
            self.pg = placement_group(bundles, strategy="PACK")
            timeout = float(ray_cfg.get("placement_timeout_s") or 60)
            ready, _ = ray.wait([self.pg.ready()], timeout=timeout)
            if not ready:
                raise ResourceError(
                    f"Ray could not reserve the roles' bundles {dict(zip(ROLES, bundles, strict=True))} within "
                    f"{timeout:g} s (cluster: {ray.cluster_resources()}); each bundle must fit on one node"
                )
        except BaseException:
            self.shutdown()
            raise

    @staticmethod
    def _bundle(request: Mapping[str, float]) -> dict[str, float]:
        bundle = {"CPU": request["num_cpus"]}
        if request["num_gpus"] > 0:
            bundle["GPU"] = request["num_gpus"]
        return bundle

    def spawn(
        self, role: str, builder: Callable[..., Any], *args: Any, hints: OomHints | None = None, **kwargs: Any
    ) -> RayHandle:
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        req = self.requests[role]
        actor_cls = ray.remote(RoleHost).options(
            num_cpus=req["num_cpus"],
            num_gpus=req["num_gpus"],
            scheduling_strategy=PlacementGroupSchedulingStrategy(
                self.pg, placement_group_bundle_index=ROLES.index(role)
            ),
            name=f"duoguard-{role}-{self.run_tag}",
            max_restarts=self.max_restarts,
            max_task_retries=0,  # a call running when the actor died fails; the game retries the round
        )
        actor = actor_cls.remote(role, builder, args, kwargs, dict(hints or {}))
        self.actors.append(actor)
        try:  # wait for the build, so a role that cannot start fails here, by name
            ray.get(actor.ready.remote())
        except ray.exceptions.RayError as e:
            raise RoleError(f"role '{role}' failed to start: {getattr(e, 'cause', e)!r}") from e
        return RayHandle(role, actor)

    def shutdown(self) -> None:
        """Kill the role actors and free their placement group; stop Ray if this runtime started it,
        so consecutive jobs (e.g. a Hydra multirun) never share state."""
        import ray
        from ray.util.placement_group import remove_placement_group

        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []
        if self.pg is not None:
            remove_placement_group(self.pg)
            self.pg = None
        if self._started and ray.is_initialized():
            ray.shutdown()


def make_runtime(runtime_cfg: Mapping[str, Any], ray_cfg: Mapping[str, Any]):
    name = getattr(runtime_cfg["name"], "value", runtime_cfg["name"])
    if name == "local":
        return LocalRuntime()
    try:
        import ray  # noqa: F401
    except ImportError:
        raise UserError("runtime=ray needs Ray (pip install 'ray[default]'); runtime=local runs without it") from None
    return RayRuntime(runtime_cfg["roles"], ray_cfg)
