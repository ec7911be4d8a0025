"""Where the roles run: all in this process (`local`) or each in its own Ray actor (`ray`).

A role is built from one `RoleSpec` (name, builder, keyword arguments, out-of-memory hints, merge
rule) by a module-level builder inside the role's process, so the same role classes run in both
runtimes and nothing outside `runtime.ray_actors` imports Ray.

`runtime.spawn(spec)` returns a handle whose methods are the role's: `guardrail.unsafe_scores(texts)`
runs in this process or in the role's actor. The handle is typed as the role class, so calls read,
type-check and "go to definition" as the role's own methods (only methods are forwarded: results
cross a process boundary as copies). `each_rank(handle)` and `wait_until_alive(handle)` are the
two things a handle does that a role does not.

    runtime.handles    RoleSpec, the handle protocol, role errors, the out-of-memory hint
    runtime.placement  pure arithmetic: requests, bundles, fit checks, automatic GPU shares
    runtime.local      LocalRuntime
    runtime.ray_actors RayRuntime, its actors and worker groups
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping

from duoguard.config import RayConfig, RuntimeConfig, RuntimeName
from duoguard.errors import UserError
from duoguard.runtime.handles import (
    RoleDied,
    RoleError,
    RoleOutOfMemory,
    RoleSpec,
    Runtime,
    each_rank,
    wait_until_alive,
)
from duoguard.runtime.local import LocalRuntime
from duoguard.runtime.placement import ResourceError, check_resources, share_gpus

__all__ = [
    "LocalRuntime",
    "ResourceError",
    "RoleDied",
    "RoleError",
    "RoleOutOfMemory",
    "RoleSpec",
    "Runtime",
    "check_resources",
    "each_rank",
    "make_runtime",
    "share_gpus",
    "wait_until_alive",
]


def make_runtime(runtime_cfg: RuntimeConfig, ray_cfg: RayConfig, workers: Mapping[str, int] | None = None) -> Runtime:
    if runtime_cfg.name == RuntimeName.local:
        return LocalRuntime(runtime_cfg)
    if importlib.util.find_spec("ray") is None:
        raise UserError("runtime=ray needs Ray (pip install 'ray[default]'); runtime=local runs without it")
    from duoguard.runtime.ray_actors import RayRuntime

    return RayRuntime(runtime_cfg.roles, ray_cfg, workers)
