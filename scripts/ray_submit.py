"""Submit duoguard apps to a running Ray cluster as Ray jobs, one job or a parallel sweep.

    # one game on the cluster (the job's driver connects with ray=cluster, address=auto)
    python scripts/ray_submit.py --address http://<head>:8265 -- \\
        game experiment=duoguard_qwen runtime=ray ray=cluster game.rounds=4

    # a grid, one Ray job per combination, all submitted at once (they run side by side as far
    # as the cluster's GPUs allow; each waits for its placement group otherwise)
    python scripts/ray_submit.py --address http://<head>:8265 --sweep --wait -- \\
        game runtime=ray ray=cluster guardrail.train.learning_rate=1e-5,5e-5 game.reward.fool_weight=0.5,1.0

The first argument after `--` is the app (guardrail, game, safedpo, eval, pipeline); the rest are
Hydra overrides. Each job runs `python -m duoguard <app> <overrides>` with this checkout as its
`working_dir` (unless --no-working-dir, for clusters whose image has duoguard installed), its own
`hydra.run.dir` and, in a sweep, one W&B group for all jobs (`logger.group`) and the job's
overrides as its W&B run name. --wait follows the jobs and exits non-zero if any failed.

Why our own launcher and not hydra-ray-launcher: that plugin (1.2.2) pins cloudpickle < 3 and
runs each Hydra job as a Ray task, and a duoguard job places its own role actors in a placement
group from its driver; a Ray job per Hydra job keeps one driver per game, which is what
`runtime=ray` expects, and works with the pinned Ray.
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APPS = ("guardrail", "game", "safedpo", "eval", "pipeline")
EXCLUDES = [".venv", ".git", "runs", "multirun", "outputs", "wandb", "bench_results", "**/__pycache__"]


def expand(overrides: list[str]) -> list[list[str]]:
    """Hydra's grammar: `key=a,b` and `key=range(...)`/`choice(...)` sweep; the grid is their product."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    axes = []
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.get_key_element()
        if override.is_sweep_override():
            axes.append([f"{key}={v}" for v in override.sweep_string_iterator()])
        else:
            axes.append([f"{key}={override.get_value_element_as_str()}"])
    return [list(combo) for combo in itertools.product(*axes)]


def job_entrypoint(app: str, overrides: list[str]) -> str:
    return shlex.join(["python", "-m", "duoguard", app, *overrides])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        raise SystemExit("usage: ray_submit.py [options] -- <app> [overrides...]  (see --help)")
    cut = argv.index("--")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--address", default=None, help="the cluster's dashboard, e.g. http://head:8265 (default: RAY_ADDRESS)"
    )
    ap.add_argument("--sweep", action="store_true", help="expand comma/range overrides into one job per combination")
    ap.add_argument("--out", default="runs/ray_jobs", help="parent of each job's hydra.run.dir (a path on the cluster)")
    ap.add_argument("--name", default=None, help="sweep/W&B group name (default: <app>-<time>)")
    ap.add_argument(
        "--no-working-dir",
        action="store_true",
        help="do not upload this checkout (duoguard is installed on the cluster)",
    )
    ap.add_argument("--wait", action="store_true", help="follow the jobs until they end; exit 1 if any failed")
    ap.add_argument("--timeout", type=float, default=24 * 3600, help="seconds --wait waits in all")
    args = ap.parse_args(argv[:cut])
    app, overrides = (argv[cut + 1 :] or [""])[0], argv[cut + 2 :]
    if app not in APPS:
        raise SystemExit(f"unknown app {app!r}: one of {', '.join(APPS)}")

    from ray.job_submission import JobStatus, JobSubmissionClient

    name = args.name or f"{app}-{time.strftime('%Y%m%d-%H%M%S')}"
    combos = expand(overrides) if args.sweep else [overrides]
    runtime_env = {} if args.no_working_dir else {"working_dir": str(ROOT), "excludes": EXCLUDES}
    client = JobSubmissionClient(args.address)
    jobs = []
    for i, combo in enumerate(combos):
        job_overrides = [
            *combo,
            f"hydra.run.dir={args.out}/{name}/{i}" if args.sweep else f"hydra.run.dir={args.out}/{name}",
        ]
        if args.sweep:
            job_overrides += [f"logger.group={name}", f"logger.name={name}-{i}"]
        job_id = client.submit_job(
            entrypoint=job_entrypoint(app, job_overrides),
            runtime_env=runtime_env or None,
            submission_id=f"duoguard-{name}-{i}",
            metadata={"duoguard_app": app, "sweep": name},
        )
        jobs.append(job_id)
        print(f"submitted {job_id}: {' '.join(combo) or '(defaults)'}")
    if not args.wait:
        print(f"follow with: ray job logs --follow --address {args.address or '$RAY_ADDRESS'} <job id>")
        return 0
    deadline = time.monotonic() + args.timeout
    final = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
    status = {}
    while time.monotonic() < deadline:
        status = {job: client.get_job_status(job) for job in jobs}
        if all(s in final for s in status.values()):
            break
        time.sleep(2)
    failed = [job for job, s in status.items() if s != JobStatus.SUCCEEDED]
    for job in jobs:
        print(f"{job}: {status.get(job)}")
        if job in failed:
            print(client.get_job_logs(job)[-3000:], file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
