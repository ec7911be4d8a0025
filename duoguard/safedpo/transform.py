"""SafeDPO's dataset transform T(D) (Kim et al., arXiv 2505.20065, REFERENCE §3).

After T(D) every pair's chosen answer is safe (h̃_w = 0), so the loss's margin is Δ·1[rejected
is unsafe]: Δ matters only where pairs differ in the rejected answer's label.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any


def safedpo_transform(records: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """SafeDPO's T(D): keep a pair whose chosen answer is safe, swap one whose chosen answer is
    unsafe and rejected safe, drop one where both are unsafe. Returns the pairs and the counts."""
    out, counts = [], Counter(kept=0, swapped=0, dropped=0)
    for r in records:
        h_w, h_l = bool(r["chosen_unsafe"]), bool(r["rejected_unsafe"])
        if not h_w:
            out.append(dict(r))
            counts["kept"] += 1
        elif not h_l:
            out.append(
                {**r, "chosen": r["rejected"], "rejected": r["chosen"], "chosen_unsafe": False, "rejected_unsafe": True}
            )
            counts["swapped"] += 1
        else:
            counts["dropped"] += 1
    return out, dict(counts)
