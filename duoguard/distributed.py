"""Process groups: one stage or role as N ranks joined by torch.distributed, one device per rank.

TRL and transformers train on several GPUs only as one process per GPU (they refuse
`nn.DataParallel`), and DeepSpeed shards nothing in a single process. So a trained stage that
asks for N ranks (`guardrail.num_workers`, `safedpo.num_workers`) is launched here as N processes
on this node by torch's elastic launcher (the code behind `torchrun`); a role under `runtime=ray`
gets one actor per rank instead (runtime/ray_actors.py), and both join the group the same way,
through `join_group` (NCCL on GPUs, gloo on CPUs; through DeepSpeed when it is configured, whose CPU
accelerator falls back to gloo when oneCCL is absent).

Inside a group every rank runs the same code; `is_main()` alone writes artifacts. A rank that
fails takes the group down (the launcher stops the others) and its exception comes back to the
caller as it was raised, named by rank.
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

ERROR_FILE = "rank_{rank}.error.pkl"


class RankFailed(RuntimeError):
    """A rank of a process group died without an exception to report (killed, out of host memory)."""


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Rank 0 (or a process outside any group): the one that writes artifacts."""
    return rank() == 0


def launched() -> bool:
    """Inside a process group already (this launcher, torchrun, accelerate launch or a Ray rank)."""
    return world_size() > 1 or "LOCAL_RANK" in os.environ


def barrier() -> None:
    """Wait for every rank of the group (nothing outside one)."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()


def gather_strided(mine: list[Any], total: int) -> list[Any]:
    """Every rank's share of a list split as `items[rank::world]`, back in the original order, on every rank
    (a collective); outside a group, the list itself."""
    import torch.distributed as dist

    if not dist.is_initialized():
        return mine
    shares: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(shares, mine)
    out: list[Any] = [None] * total
    for r, share in enumerate(shares):
        out[r :: len(shares)] = share
    return out


def rank_device(device: str) -> str:
    """The device a rank builds on: in a group a configured `cuda:N` is the rank's own GPU (bound from
    LOCAL_RANK by join_group), never the same one for every rank."""
    return "cuda" if launched() and device.startswith("cuda") else device


def join_group(device: str, deepspeed: bool = False) -> None:
    """In a rank: bind this rank's device from LOCAL_RANK and join the process group from the
    environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), once. Outside a group: nothing."""
    import torch
    import torch.distributed as dist

    if not launched():
        return
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    backend = "nccl" if cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    if deepspeed:  # DeepSpeed keeps its own handle on the group (without it, the Trainer and
        import deepspeed as ds  # DeepSpeed disagree on the world size: REFERENCE §9)

        ds.init_distributed(dist_backend=backend, auto_mpi_discovery=False, verbose=False)


def run_ranks(fn: Callable[..., T], *args: Any, ranks: int, deepspeed: bool = False, name: str = "stage") -> T:
    """`fn(*args)` on `ranks` ranks of this node; returns rank 0's result.

    One rank without DeepSpeed, or a caller already inside a group, runs `fn` here. Otherwise the
    ranks are new processes (spawned: `fn` and `args` must pickle); each joins the group before
    `fn` runs, so `fn` trains as a rank of it."""
    if launched() or (ranks == 1 and not deepspeed):
        return fn(*args)
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=ranks,
        run_id=f"duoguard-{name}-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # a free port
        max_restarts=0,  # a stage's rank that fails fails the stage: nothing to restart into
        monitor_interval=0.5,
        start_method="spawn",
    )
    log.info("%s: launching %d ranks%s", name, ranks, " with DeepSpeed" if deepspeed else "")
    with tempfile.TemporaryDirectory(prefix=f"duoguard-{name}-") as errors:
        try:
            results = elastic_launch(config, _rank_main)(fn, args, deepspeed, errors)
        except ChildFailedError as e:
            raise _rank_error(e, Path(errors), name, ranks) from None
    return results[0]


def _rank_main(fn: Callable[..., Any], args: tuple, deepspeed: bool, errors: str) -> Any:
    """The body of each launched rank: join the group, run, and leave the group cleanly; an exception
    is kept for the launcher, which raises it in the caller."""
    import torch.distributed as dist

    if not is_main():  # one copy of each log line: rank 0's
        logging.getLogger("duoguard").setLevel(logging.WARNING)
    try:
        join_group(_device_kind(), deepspeed)
        return fn(*args)
    except BaseException as e:
        _keep_error(e, Path(errors) / ERROR_FILE.format(rank=rank()))
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _device_kind() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _keep_error(error: BaseException, path: Path) -> None:
    try:
        data = pickle.dumps(error)
        pickle.loads(data)  # some exceptions pickle but do not unpickle
    except Exception:
        data = pickle.dumps(RuntimeError(f"{type(error).__name__}: {error}"))
    path.write_bytes(pickle.dumps((time.time(), data)))


def _rank_error(failed: Any, errors: Path, name: str, ranks: int) -> BaseException:
    """The root cause of a group's failure. A rank that died without an exception comes first (the
    others then fail in their collectives): a RankFailed naming it and its exit code. Otherwise the
    exception raised first, as it was raised, with a note of where."""
    kept = {r: errors / ERROR_FILE.format(rank=r) for r in range(ranks)}
    kept = {r: path for r, path in kept.items() if path.is_file()}
    silent = sorted(r for r in failed.failures if r not in kept)
    if silent:
        first = silent[0]
        return RankFailed(
            f"{name}: rank {first} of {ranks} died with exit code {failed.failures[first].exitcode} and no error "
            "(killed? out of host memory?)"
        )
    raised = {r: pickle.loads(path.read_bytes()) for r, path in kept.items()}
    first = min(raised, key=lambda r: raised[r][0])
    error = pickle.loads(raised[first][1])
    error.add_note(f"raised in {name}, rank {first} of {ranks}")
    return error
