"""Scaling the generator: rollout throughput with 1 and 2 data-parallel generator ranks, and the
Ray runtime's overhead over the local one, on the same game config, side by side in one run.

    python scripts/bench_scale.py                          # tiny models on CPU
    python scripts/bench_scale.py --sizes 4,8,16 --rounds 3

For each size (prompts per GRPO step; G candidates each) the same game is played three ways:
`runtime=local`, `runtime=ray` with one generator actor, and `runtime=ray generator.num_workers=2`
(two ranks, each generating and scoring half of every step, gradients averaged with
torch.distributed). The last round is timed (the first one also builds the trainers).

- rollout candidates/s = candidates generated / the rollout phase's seconds (generation, scoring
  by the judge and guardrail actors, GRPO update);
- ray overhead = Ray round time / local round time - 1 (one generator actor);
- DP speed-up = rollout candidates/s with 2 ranks / with 1 rank (both Ray).

Threads: each generator rank gets cores / ranks torch threads (`runtime.torch_threads`), so both
variants use the same cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from duoguard.config import compose  # noqa: E402
from duoguard.report import markdown_table  # noqa: E402

VARIANTS = {  # name: (overrides, generator ranks)
    "local": (["runtime=local"], 1),
    "ray_1_rank": (["runtime=ray"], 1),
    "ray_2_ranks": (["runtime=ray", "generator.num_workers=2"], 2),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="4,8", help="prompts per GRPO step, one game per value and variant")
    ap.add_argument("--rounds", type=int, default=2, help="rounds per game; the last one is timed")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="cores shared by the generator ranks")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from duoguard.game import play_game

    rows = []
    for size in [int(x) for x in args.sizes.split(",")]:
        timed = {}
        for name, (overrides, ranks) in VARIANTS.items():
            out = Path(tempfile.mkdtemp(prefix="bench_scale_"))
            try:
                cfg = compose(
                    "game",
                    [
                        *overrides,
                        "logger=none",
                        "progress=false",
                        f"game.rounds={args.rounds}",
                        f"generator.grpo.prompts_per_step={size}",
                        "game.warmup_guardrail=false",
                        "game.guardrail_epochs=1",
                        f"runtime.torch_threads={max(1, args.cores // ranks)}",
                        f"output_dir={out}",
                    ],
                )
                timed[name] = play_game(cfg)["history"][-1]
            finally:
                shutil.rmtree(out, ignore_errors=True)
        row = {"prompts_per_step": size, "candidates_per_round": timed["local"]["generated"]}
        for name, last in timed.items():
            row[f"{name}_round_s"] = last["seconds_round"]
            row[f"{name}_rollout_s"] = last["seconds_rollout"]
            row[f"{name}_cand_per_s"] = last["generated"] / last["seconds_rollout"]
        row["ray_overhead"] = row["ray_1_rank_round_s"] / row["local_round_s"] - 1
        row["dp_speedup"] = row["ray_2_ranks_cand_per_s"] / row["ray_1_rank_cand_per_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    cols = [
        "candidates_per_round",
        "local_cand_per_s",
        "ray_1_rank_cand_per_s",
        "ray_2_ranks_cand_per_s",
        "dp_speedup",
        "local_round_s",
        "ray_1_rank_round_s",
        "ray_2_ranks_round_s",
        "ray_overhead",
    ]
    print(f"\n{args.cores} cores; the last of {args.rounds} rounds timed")
    print(markdown_table(cols, [[r[c] for c in cols] for r in rows], digits=2))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
