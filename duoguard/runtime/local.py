"""runtime=local: every role in this process (debugging, one GPU, a machine without Ray)."""

from __future__ import annotations

from typing import Any, TypeVar, cast

from duoguard.config import RuntimeConfig
from duoguard.runtime.handles import RoleHandle, RoleSpec, call_role

T = TypeVar("T")


class LocalHandle(RoleHandle):
    """A role object in this process; `_obj` is the object itself (for tests and debugging)."""

    def __init__(self, spec: RoleSpec[Any], obj: Any):
        self._role, self._obj, self._hints, self._plan = spec.name, obj, dict(spec.oom_hints), spec.memory_plan

    def _call(self, method: str, args: tuple, kwargs: dict) -> Any:
        return call_role(self._obj, self._role, method, args, kwargs, self._hints, self._plan)


class LocalRuntime:
    name = "local"

    def __init__(self, runtime_cfg: RuntimeConfig | None = None):
        self.cfg = runtime_cfg or RuntimeConfig()

    def device(self, role: str) -> str:
        """The role's `device` override, else runtime.device (auto: a GPU when one is visible)."""
        from duoguard.models import pick_device

        return getattr(self.cfg.roles, role).device or pick_device(self.cfg.device)

    def spawn(self, spec: RoleSpec[T]) -> T:
        """The role, built here; one process, so `spec.merge` has nothing to merge."""
        return cast(T, LocalHandle(spec, spec.build()))

    def shutdown(self) -> None:
        pass
