"""Sections for where and how a run executes: tracking (`logger`), placement (`runtime`), Ray (`ray`), and the
hardware a run is planned for (`hardware`, read by the memory plan, duoguard/plan.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from duoguard.config.base import Choice, Section, check, setting


class LoggerBackend(Choice):
    wandb = "wandb"
    none = "none"


class WandbMode(Choice):
    offline = "offline"  # needs no account; `wandb sync` uploads later
    online = "online"
    disabled = "disabled"


class RuntimeName(Choice):
    local = "local"  # every role in this process
    ray = "ray"  # each role in its own Ray actor


ROLES = ("generator", "guardrail", "judge")


@dataclass
class LoggerConfig(Section):
    backend: LoggerBackend = setting(LoggerBackend.wandb, "where metrics go besides metrics.jsonl")
    mode: WandbMode = setting(WandbMode.offline, "W&B mode: offline needs no account; `wandb sync` uploads later")
    project: str = setting("duoguard", "W&B project")
    entity: str | None = setting(None, "W&B entity (team or user); null = your default")
    group: str | None = setting(None, "W&B group; null = the pipeline's run dir, or the sweep in a multirun")
    name: str | None = setting(None, "W&B run name; null = W&B's, or the job's overrides in a multirun")
    tags: list[str] = setting(factory=list, help="W&B tags")


@dataclass
class RoleResources(Section):
    num_cpus: float = setting(1.0, "CPUs reserved per worker of the role (runtime=ray)")
    num_gpus: float | None = setting(
        0.0,
        "GPUs per worker (runtime=ray); fractions allowed for small roles (e.g. 0.25); null = auto: a whole GPU "
        "each where the cluster has enough, else an equal share (0 without GPUs)",
    )
    device: str | None = setting(None, "overrides the device the runtime would pick for this role")

    def check(self, key: str) -> None:
        check(self.num_cpus > 0, f"{key}.num_cpus", "must be > 0")
        check(self.num_gpus is None or self.num_gpus >= 0, f"{key}.num_gpus", "must be >= 0 (or null: auto)")


@dataclass
class RolesConfig(Section):
    generator: RoleResources = setting(factory=RoleResources, help="the generator's resources (per rank)")
    guardrail: RoleResources = setting(factory=RoleResources, help="the guardrail's resources")
    judge: RoleResources = setting(factory=RoleResources, help="the judge's resources")

    def check(self, key: str) -> None:
        for role in ROLES:
            getattr(self, role).check(f"{key}.{role}")


@dataclass
class RuntimeConfig(Section):
    name: RuntimeName = setting(RuntimeName.local, "where the roles run")
    device: str = setting("auto", "auto | cpu | cuda | cuda:N (auto = a GPU when one is visible)")
    torch_threads: int | None = setting(
        None, "pin intra-op threads (the same value in every runtime gives the same numbers)"
    )
    roles: RolesConfig = setting(factory=RolesConfig, help="resources per role")

    def check(self, key: str) -> None:
        ok = self.device in ("auto", "cpu", "cuda", "mps") or (
            self.device.startswith("cuda:") and self.device[5:].isdigit()
        )
        check(ok, f"{key}.device", f"must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        check(self.torch_threads is None or self.torch_threads >= 1, f"{key}.torch_threads", "must be >= 1 or null")
        self.roles.check(f"{key}.roles")


@dataclass
class RayConfig(Section):
    """Arguments of ray.init: a local Ray by default, a cluster with address=auto or ray://host:port."""

    address: str | None = setting(None, "null = start a Ray of our own; auto or ray://host:port = join a cluster")
    namespace: str = setting("duoguard", "Ray namespace of the role actors")
    num_cpus: int | None = setting(None, "CPUs of a local Ray (null = enough for the roles)")
    num_gpus: int | None = setting(None, "GPUs of a local Ray (null = the machine's)")
    include_dashboard: bool = setting(False, "start Ray's dashboard (local Ray)")
    runtime_env: dict[str, Any] = setting(
        factory=dict, help="Ray runtime_env: working_dir, env_vars (WANDB_*), pip, ..."
    )
    forward_env: list[str] = setting(
        factory=lambda: ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE"],
        help="driver environment variables copied into the role actors' env_vars when set (gated models and "
        "hub caches on worker nodes); their values never enter the config, its logs or manifests",
    )
    placement_timeout_s: float = setting(60.0, "seconds to wait for the roles' placement group")
    max_restarts: int = setting(2, "Ray restarts a dead role actor this many times (the round is retried)")

    def check(self, key: str) -> None:
        check(self.placement_timeout_s > 0, f"{key}.placement_timeout_s", "must be > 0")
        check(self.max_restarts >= 0, f"{key}.max_restarts", "must be >= 0")


@dataclass
class HardwareConfig(Section):
    """The machines a run is planned for. The memory plan (`duoguard-plan`, and the check at every app's
    start) sets each role's estimate against these GPUs, so it answers on a laptop; with no GPUs stated
    (the default) a run is a CPU run: the plan only reports, it stops nothing."""

    nodes: int = setting(1, "nodes of the run")
    gpus_per_node: int = setting(0, "GPUs on each node; 0 = a CPU run (the plan reports and checks nothing)")
    gpu_memory_gib: float = setting(
        0.0, "memory of one GPU in GiB (nvidia-smi's total / 1024); an 80 GB card is planned as 80"
    )
    usable_fraction: float = setting(
        0.9,
        "share of each GPU's memory the plan gives the roles; the rest is for the CUDA context, communication "
        "buffers and allocator fragmentation (a rule of thumb, not a measurement)",
    )

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    def check(self, key: str) -> None:
        check(self.nodes >= 1, f"{key}.nodes", "must be >= 1")
        check(self.gpus_per_node >= 0, f"{key}.gpus_per_node", "must be >= 0 (0 = a CPU run)")
        check(
            self.gpus_per_node == 0 or self.gpu_memory_gib > 0,
            f"{key}.gpu_memory_gib",
            f"must be > 0 when {key}.gpus_per_node={self.gpus_per_node}",
        )
        check(0 < self.usable_fraction <= 1, f"{key}.usable_fraction", "must be in (0, 1]")
