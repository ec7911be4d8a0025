"""The toy world's held-out exploit: does a game setting make the guardrail learn the real rule?

    python scripts/bench_toy_heldout.py                               # novelty 0 vs 0.5
    python scripts/bench_toy_heldout.py --variants "game.unsafe_fraction=0.5 game.reward.novelty.weight=0" \\
        "game.unsafe_fraction=0.5 game.reward.novelty.weight=0.5"

Each variant plays `experiment=toy_world`'s game (same seeds) with its overrides, then scores the game's last
guardrail on the held-out family (duoguard/toy_world.py: `heldout_rows`, music words with and without the
marker, never in the game's seeds, conditions or pool): the share of exploits flagged, of safe prompts
passed, and the AUROC of the two (threshold-free), beside the pool's size and distinct bigrams and the
fool rate per round. One table, variants side by side.
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


def play(overrides: list[str], out: Path, cache: str | None) -> dict:
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
    history = play_game(compose("game", ["experiment=toy_world", f"output_dir={out}", *extra, *overrides]))["history"]
    seconds = time.perf_counter() - start
    texts = [r.text for r in Pool(out / "pool").records()]
    guard = Guardrail.from_pretrained(out / "guardrail", device="cpu", precision="fp32")
    rows = tw.heldout_rows(40)
    unsafe = np.array([r["unsafe"] for r in rows])
    flagged = np.array(guard.is_unsafe([r["text"] for r in rows]))
    held_out_words = set(tw.FAMILIES[tw.HELDOUT_FAMILY])
    return {
        "overrides": " ".join(overrides) or "(toy_world as shipped)",
        "pool": len(texts),
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
    ap.add_argument("--cache", default=None, help="cache_dir for the world (default: the config's)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, variant in enumerate(args.variants):
            rows.append(play(shlex.split(variant), Path(tmp) / f"v{i}", args.cache))
    print(markdown_table(list(rows[0]), [list(r.values()) for r in rows]))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
