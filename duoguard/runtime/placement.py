"""Placement arithmetic for runtime=ray, as pure functions (no Ray): what each role asks for, the
placement-group bundles, and whether they fit the cluster.

A request is {num_cpus, num_gpus, workers} per role: one bundle {CPU: num_cpus, GPU: num_gpus}
per worker, so the generator and the guardrail get GPUs of their own when GPUs exist.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from duoguard.config import RolesConfig
from duoguard.errors import UserError

log = logging.getLogger(__name__)

ROLES = ("generator", "guardrail", "judge")


class ResourceError(UserError):
    """The roles ask for more than the cluster has."""


def role_requests(roles_cfg: RolesConfig, workers: Mapping[str, int] | None = None) -> dict[str, dict[str, Any]]:
    """Each role's request from `runtime.roles` (num_gpus None until share_gpus resolves it)."""
    return {
        role: {
            "num_cpus": getattr(roles_cfg, role).num_cpus,
            "num_gpus": getattr(roles_cfg, role).num_gpus,
            "workers": int((workers or {}).get(role, 1)),
        }
        for role in ROLES
    }


def bundle_indices(requests: Mapping[str, Mapping[str, Any]]) -> dict[str, list[int]]:
    """Each role's bundle indices in the placement group: generator workers first, then the
    guardrail, then the judge."""
    out: dict[str, list[int]] = {}
    for role in ROLES:
        start = sum(len(b) for b in out.values())
        out[role] = list(range(start, start + requests[role]["workers"]))
    return out


def bundle(request: Mapping[str, float]) -> dict[str, float]:
    """One worker's placement-group bundle."""
    out = {"CPU": request["num_cpus"]}
    if request["num_gpus"] > 0:
        out["GPU"] = request["num_gpus"]
    return out


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
        if workers[role] > 1 and 0 < gpus < 1:
            problems.append(
                f"runtime.roles.{role}.num_gpus={gpus:g} for {workers[role]} ranks: the ranks of a process group "
                "need a whole GPU each (NCCL puts one rank on one device); give 1, or 0 to run on CPU"
            )
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


def actor_runtime_env(runtime_env: Mapping[str, Any], forward: Sequence[str], environ: Mapping[str, str]) -> dict:
    """Ray's runtime_env for the role actors: the configured one, plus each variable named in
    `forward` that is set in `environ` (configured env_vars win)."""
    env = {name: environ[name] for name in forward if environ.get(name)}
    out = dict(runtime_env)
    if env:
        out["env_vars"] = {**env, **dict(out.get("env_vars") or {})}
    return out


def share_gpus(requests: dict[str, dict[str, Any]], cluster_gpus: float) -> None:
    """Resolve `num_gpus: null` (auto), in place: a whole GPU per worker when the cluster has enough
    for every auto worker; otherwise the ranks of a process group (a role with several workers) still
    get a whole GPU each, and single-worker roles an equal fraction of what is left. Without GPUs every
    auto role gets none. Refused (ResourceError, naming the role) when a group's ranks or a single
    role would get less than that."""
    auto = [role for role, r in requests.items() if r["num_gpus"] is None]
    fixed = sum(float(r["num_gpus"]) * r["workers"] for r in requests.values() if r["num_gpus"] is not None)
    left = max(0.0, cluster_gpus - fixed)
    groups = [role for role in auto if requests[role]["workers"] > 1]
    singles = [role for role in auto if requests[role]["workers"] == 1]
    if cluster_gpus == 0:
        shares = dict.fromkeys(auto, 0.0)
    elif left >= sum(requests[role]["workers"] for role in auto):
        shares = dict.fromkeys(auto, 1.0)
    else:
        in_groups = sum(requests[role]["workers"] for role in groups)
        rest = left - in_groups
        if rest < 0 or (singles and math.floor(100 * rest / len(singles)) == 0):
            short = groups if rest < 0 else singles
            raise ResourceError(
                f"runtime.roles.{{{','.join(short)}}}.num_gpus=null (auto): the cluster has {cluster_gpus:g} GPUs, "
                f"{left:g} left after the fixed requests, for "
                + ", ".join(f"{role} ({requests[role]['workers']} ranks)" for role in auto)
                + ". The ranks of a process group need a whole GPU each (NCCL puts one rank on one device) and "
                "every other role a share of one: add GPUs, lower generator.num_workers / guardrail.num_workers, or "
                "set runtime.roles.<role>.num_gpus (0 runs a role on CPU)"
            )
        shares = {role: 1.0 for role in groups}
        shares.update({role: math.floor(100 * rest / len(singles)) / 100 for role in singles})
    for role, share in shares.items():
        requests[role]["num_gpus"] = share
        log.info("runtime.roles.%s.num_gpus=auto: %g GPU per worker (the cluster has %g)", role, share, cluster_gpus)
    for r in requests.values():
        r["num_gpus"] = float(r["num_gpus"])
