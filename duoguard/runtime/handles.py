"""What every runtime shares: the spec a role is built from, the handle a role is called through,
and the errors a call can end in.

A handle forwards `handle.method(*args)` to the role's method, wherever the role runs. Its own
names start with an underscore, so every public name is the role's; the two things that are not
role methods are functions: `each_rank(handle).method()` and `wait_until_alive(handle)`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")

# method -> (config key, value): the batch size to name when that method runs out of memory
OomHints = Mapping[str, tuple[str, Any]]


class RoleError(RuntimeError):
    """A role failed; the message names it."""


class RoleDied(RoleError):
    """A role's process died (Ray restarts its actor); the game retries the round."""

    def __init__(self, role: str, method: str, detail: str = ""):
        self.role, self.method = role, method
        super().__init__(f"role '{role}' died during {method}(){': ' + detail if detail else ''}")


class RoleOutOfMemory(RoleError):
    """A role ran out of memory; the message names the batch size and the key to lower, and the memory
    plan's estimate for the role when the spec carries one."""


@dataclass(frozen=True)
class RoleSpec(Generic[T]):
    """How to build one role, wherever the runtime puts it.

    `builder(**kwargs)` runs in the role's process: a module-level function, so it pickles into a
    Ray actor. `merge` says how a data-parallel role's rank results become one (else rank 0's)."""

    name: str  # generator | guardrail | judge: its resources are runtime.roles.<name>
    builder: Callable[..., T]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    oom_hints: OomHints = field(default_factory=dict)
    memory_plan: str = ""  # the memory plan's line for this role (duoguard.plan), added to out-of-memory errors
    merge: Mapping[str, Callable[[list[Any]], Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:  # a wrong keyword fails here, in the driver, not later in a remote process
            inspect.signature(self.builder).bind(**self.kwargs)
        except TypeError as e:
            raise TypeError(f"role '{self.name}': {self.builder.__qualname__}() {e}") from None

    def build(self) -> T:
        return self.builder(**self.kwargs)


class Runtime(Protocol):
    """Where the roles run (LocalRuntime, RayRuntime)."""

    name: str

    def device(self, role: str) -> str: ...

    def spawn(self, spec: RoleSpec[T]) -> T: ...

    def shutdown(self) -> None: ...


def _is_oom(error: BaseException) -> bool:
    import torch

    if isinstance(error, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def call_role(
    obj: Any, role: str, method: str, args: tuple, kwargs: Mapping, hints: OomHints, memory_plan: str = ""
) -> Any:
    """Call a role's method; an out-of-memory error comes back naming role, batch size and key, and
    what the memory plan estimated for the role."""
    try:
        return getattr(obj, method)(*args, **kwargs)
    except Exception as e:
        if not _is_oom(e):
            raise
        key, value = hints.get(method, (None, None))
        advice = f"; its batch size is {key}={value}: lower it" if key else ""
        planned = f"; memory plan: {memory_plan}" if memory_plan else ""
        raise RoleOutOfMemory(
            f"role '{role}' ran out of memory in {method}(){advice} ({type(e).__name__}: {e}){planned}"
        ) from e


class _Methods:
    """`proxy.method(*args, **kwargs)` -> `proxy._call(method, args, kwargs)`, for public names only
    (pickle and copy look up dunder names; they must not reach the role)."""

    _role: str

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._call(method, args, kwargs)

        call.__name__ = call.__qualname__ = f"{self._role}.{method}"
        return call

    def _call(self, method: str, args: tuple, kwargs: dict) -> Any:
        raise NotImplementedError


class RoleHandle(_Methods):
    """A role wherever it runs: its methods are called as the role's own."""

    def _call_each(self, method: str, args: tuple, kwargs: dict) -> list[Any]:
        """Every rank's result, in rank order; a single-process role has one."""
        return [self._call(method, args, kwargs)]

    def _wait_until_alive(self, timeout_s: float) -> None:
        """A role in this process cannot die without the game."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of role '{self._role}'>"


class _EachRank(_Methods):
    def __init__(self, handle: RoleHandle):
        self._role, self._handle = handle._role, handle

    def _call(self, method: str, args: tuple, kwargs: dict) -> list[Any]:
        return self._handle._call_each(method, args, kwargs)


def each_rank(role: Any) -> Any:
    """`each_rank(roles.generator).checksum()`: the method's result from every rank of the role, in
    rank order (a list of one for a role in one process)."""
    return _EachRank(role)


def wait_until_alive(role: Any, timeout_s: float = 300) -> None:
    """Block while the runtime brings a dead role back (Ray rebuilds its actor from the spec);
    raise RoleError once it is dead for good. Returns at once for a role in this process."""
    role._wait_until_alive(timeout_s)
