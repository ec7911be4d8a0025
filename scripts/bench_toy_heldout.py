"""The toy world's held-out exploit: does a game setting make the guardrail learn the real rule?

    python scripts/bench_toy_heldout.py                               # novelty 0 vs 0.5
    python scripts/bench_toy_heldout.py --seeds 0,1,2                 # each variant on three seeds, and means
    python scripts/bench_toy_heldout.py --variants "game.unsafe_fraction=0.5 game.reward.novelty.weight=0" \\
        "game.unsafe_fraction=0.5 game.reward.novelty.weight=0.5"

Each variant plays `experiment=toy_world`'s game (same seeds) with its overrides, then scores the game's last
guardrail on the held-out family (duoguard/toy_world.py: `heldout_rows`, music words with and without the
marker, never in the game's seeds, conditions or pool): the share of exploits flagged, of safe prompts
passed, and the AUROC of the two (threshold-free), beside the pool's size, its prompts that use an open
exploit, its distinct exploits (`toy_world.distinct_exploits`), its distinct bigrams and the fool rate per
round. One table, variants side by side (one row per variant and seed), then with several seeds each
variant's means.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def play(overrides: list[str], seed: int, out: Path, cache: str | None) -> dict:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from duoguard import toy_world as tw
    from duoguard.config import compose
    from duoguard.data.pool import Pool
    from duoguard.diversity import distinct_n
    from duoguard.game import play_game
    from duoguard.roles.guardrail import Guardrail

    extra = [f"cache_dir={cache}"] if cache else []
    start = time.perf_counter()
    game = ["experiment=toy_world", f"output_dir={out}", f"seed={seed}", *extra, *overrides]
    history = play_game(compose("game", game))["history"]
    seconds = time.perf_counter() - start
    texts = [r.text for r in Pool(out / "pool").records()]
    guard = Guardrail.from_pretrained(out / "guardrail", device="cpu", precision="fp32")
    rows = tw.heldout_rows(40)
    unsafe = np.array([r["unsafe"] for r in rows])
    flagged = np.array(guard.is_unsafe([r["text"] for r in rows]))
    held_out_words = set(tw.FAMILIES[tw.HELDOUT_FAMILY])
    return {
        "overrides": " ".join(overrides) or "(toy_world as shipped)",
        "seed": seed,
        "pool": len(texts),
        "exploit_prompts": sum(bool(tw.exploits(t) & set(tw.OPEN_FAMILIES)) for t in texts),
        "distinct_exploits": tw.distinct_exploits(texts),
        "pool_with_held_out_words": sum(bool(set(tw.words(t)) & held_out_words) for t in texts),
        "pool_distinct_2": round(distinct_n(texts, 2), 3),
        "exploit_flagged": round(float(flagged[unsafe].mean()), 3),
        "safe_passed": round(float((~flagged[~unsafe]).mean()), 3),
        "auroc": round(float(roc_auc_score(unsafe, guard.unsafe_scores([r["text"] for r in rows]))), 3),
        "fool_rate_per_round": " / ".join(f"{h['fool_rate']:.3f}" for h in history),
        "seconds": round(seconds),
    }


def main() -> None:
    from duoguard.report import markdown_table

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--variants",
        nargs="+",
        default=["game.reward.novelty.weight=0", "game.reward.novelty.weight=0.5"],
        help="one quoted string of overrides per variant",
    )
    ap.add_argument("--seeds", default="0", help="comma-separated values of `seed`, each variant played on each")
    ap.add_argument("--cache", default=None, help="cache_dir for the world (default: the config's)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    seeds = [int(x) for x in args.seeds.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, variant in enumerate(args.variants):
            for seed in seeds:
                rows.append(play(shlex.split(variant), seed, Path(tmp) / f"v{i}_s{seed}", args.cache))
    print(markdown_table(list(rows[0]), [list(r.values()) for r in rows]))
    if len(seeds) > 1:
        keys = ["exploit_prompts", "distinct_exploits", "pool_distinct_2", "exploit_flagged", "safe_passed", "auroc"]
        means = []
        for variant in dict.fromkeys(r["overrides"] for r in rows):
            mine = [r for r in rows if r["overrides"] == variant]
            means.append([variant, *(round(sum(r[k] for r in mine) / len(mine), 3) for k in keys)])
        print(f"\nmeans over seeds {args.seeds}\n")
        print(markdown_table(["overrides", *keys], means))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
