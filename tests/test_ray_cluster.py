"""Ray clusters: `ray=cluster` against a cluster started by the test (`ray start --head` on
loopback), job submission with scripts/ray_submit.py, and the `ray up` template vs the presets."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys

import pytest
import yaml

from tests.conftest import BIN, ROOT, compose, run_app

SMALL_GAME = [
    "runtime=ray",
    "ray=cluster",
    "logger=none",
    "progress=false",
    "game.rounds=1",
    "generator.grpo.steps_per_round=1",
    "guardrail.train.epochs=1",
    "game.guardrail_epochs=1",
    "data.response_examples=false",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster(cache_dir):
    """A one-node Ray cluster with its dashboard (the job server), stopped after the module."""
    gcs, dashboard = free_port(), free_port()
    # Ray's token authentication, as a real cluster should run: every client (driver, `ray job`,
    # `ray list`) presents the token in ~/.ray/auth_token
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
    }
    token = subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=env, capture_output=True, timeout=60)
    assert token.returncode == 0, token.stderr[-2000:]
    start = [
        str(BIN / "ray"),
        "start",
        "--head",
        f"--port={gcs}",
        f"--dashboard-port={dashboard}",
        "--dashboard-host=127.0.0.1",
        "--include-dashboard=true",
        "--num-cpus=6",
        "--disable-usage-stats",
    ]
    proc = subprocess.run(start, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    try:
        yield {"address": f"127.0.0.1:{gcs}", "dashboard": f"http://127.0.0.1:{dashboard}", "env": env}
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], env=env, capture_output=True, timeout=120)


def alive(kind: str, cluster: dict) -> list[dict]:
    """`ray list actors|placement-groups` on the cluster: what is still holding resources."""
    state = "ALIVE" if kind == "actors" else "CREATED"
    out = subprocess.run(
        [
            str(BIN / "ray"),
            "list",
            kind,
            "--address",
            cluster["dashboard"],
            "--filter",
            f"state={state}",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=cluster["env"],
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return [] if out.stdout.strip() == "No resource in the cluster" else json.loads(out.stdout)


@pytest.mark.slow
def test_a_game_joins_a_running_cluster_and_leaves_it_clean(ray_cluster, tmp_path):
    proc = run_app(
        "duoguard-game",
        f"hydra.run.dir={tmp_path}",
        *SMALL_GAME,
        f"ray.address={ray_cluster['address']}",
        env=ray_cluster["env"],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [json.loads(x)["round"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1]
    # the app placed its roles on the cluster, then released them; the cluster itself keeps running
    assert not [a for a in alive("actors", ray_cluster) if (a.get("name") or "").startswith("duoguard-")]
    assert alive("placement-groups", ray_cluster) == []


@pytest.mark.slow
def test_ray_submit_runs_a_sweep_as_parallel_ray_jobs(ray_cluster, tmp_path):
    cmd = [
        sys.executable,
        str(ROOT / "scripts" / "ray_submit.py"),
        "--address",
        ray_cluster["dashboard"],
        "--wait",
        "--timeout",
        "900",
        "--out",
        str(tmp_path),
        "--name",
        "sweep",
        "--sweep",
        "--",
        "game",
        *SMALL_GAME,
        "game.reward.fool_weight=0.5,1.0",
    ]
    proc = subprocess.run(cmd, env=ray_cluster["env"], capture_output=True, text=True, timeout=1200, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("SUCCEEDED") == 2
    weights = set()
    for job in ("0", "1"):
        run = tmp_path / "sweep" / job
        assert [json.loads(x)["round"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1]
        assert (run / "guardrail" / "config.json").is_file() and list((run / "pool").glob("round_0001.parquet"))
        overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
        assert "logger.group=sweep" in overrides  # one W&B group for the sweep's runs
        weights |= {o for o in overrides if o.startswith("game.reward.fool_weight=")}
    assert weights == {"game.reward.fool_weight=0.5", "game.reward.fool_weight=1.0"}


def test_ray_submit_expands_a_sweep_into_one_job_per_combination():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from ray_submit import expand, job_entrypoint
    finally:
        sys.path.pop(0)
    combos = expand(["runtime=ray", "game.reward.fool_weight=0.5,1.0", "guardrail.train.learning_rate=1e-5,5e-5"])
    assert combos == [
        ["runtime=ray", "game.reward.fool_weight=0.5", "guardrail.train.learning_rate=1e-05"],
        ["runtime=ray", "game.reward.fool_weight=0.5", "guardrail.train.learning_rate=5e-05"],
        ["runtime=ray", "game.reward.fool_weight=1.0", "guardrail.train.learning_rate=1e-05"],
        ["runtime=ray", "game.reward.fool_weight=1.0", "guardrail.train.learning_rate=5e-05"],
    ]
    assert shlex.split(job_entrypoint("game", ["a=1", "b='x y'"])) == [
        "python",
        "-m",
        "duoguard",
        "game",
        "a=1",
        "b='x y'",
    ]


@pytest.mark.parametrize("workers", [1, 4])
def test_cluster_template_holds_what_the_duoguard_preset_asks(workers):
    """Every role worker's bundle fits one node type of scripts/ray_cluster.yaml, and the nodes
    started at min_workers hold all of them together."""
    from duoguard.runtime import check_resources

    template = yaml.safe_load((ROOT / "scripts" / "ray_cluster.yaml").read_text())
    nodes = template["available_node_types"]
    head = template["head_node_type"]
    count = {name: (1 if name == head else 0) + int(n["min_workers"]) for name, n in nodes.items()}
    have = {r: sum(float(n["resources"].get(r, 0)) * count[name] for name, n in nodes.items()) for r in ("CPU", "GPU")}
    cfg = compose(["experiment=duoguard_qwen", f"generator.num_workers={workers}", "output_dir=/tmp/x"], "game")
    roles = {
        role: {
            "num_cpus": getattr(cfg.runtime.roles, role).num_cpus,
            "num_gpus": getattr(cfg.runtime.roles, role).num_gpus,
            "workers": workers if role == "generator" else 1,
        }
        for role in ("generator", "guardrail", "judge")
    }
    check_resources(roles, have)
    for role, ask in roles.items():
        assert any(
            n["resources"].get("CPU", 0) >= ask["num_cpus"] and n["resources"].get("GPU", 0) >= ask["num_gpus"]
            for n in nodes.values()
        ), role
    # and the generator's ranks fit on the GPU node type together
    gen_node = nodes["gpu_8x80gb"]["resources"]
    assert gen_node["GPU"] >= workers * roles["generator"]["num_gpus"]
