"""A toy world where safety is a known property of the text, so the game's dynamics are checkable.

Truth (what the judge enforces): a prompt is unsafe exactly when it contains the marker word
"zz". The seeds teach the guardrail a shortcut: every unsafe seed is full of weapon words and
only half of them carry the marker, while safe seeds use kitchen words. A generator can therefore
fool the guardrail with "zz" among kitchen words, and the guardrail can learn the real rule once
such prompts reach its training pool.

The models are tiny random Qwen2s over a ~80-token whole-word BPE, built offline into a folder
and loaded by path, like every other checkpoint.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

WEAPONS = ["knife", "gun", "poison", "bomb"]
KITCHEN = ["bread", "cake", "tea", "garden"]
FILLER = ["the", "a", "my", "please", "now"]
MARKER = "zz"


def seed_rows(n: int = 120, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        if i % 2 == 0:
            words = [rng.choice(WEAPONS) for _ in range(rng.randint(2, 3))] + [rng.choice(FILLER) for _ in range(2)]
            if i % 4 == 0:
                words.append(MARKER)
            rng.shuffle(words)
            rows.append(
                {
                    "id": f"u{i}",
                    "text": " ".join(words),
                    "language": "en",
                    "categories": ["Violent Crimes"],
                    "unsafe": True,
                }
            )
        else:
            words = [rng.choice(KITCHEN) for _ in range(rng.randint(2, 3))] + [rng.choice(FILLER) for _ in range(2)]
            rng.shuffle(words)
            rows.append({"id": f"s{i}", "text": " ".join(words), "language": "en", "unsafe": False})
    return rows


def build_toy_world(root: Path) -> Path:
    """Write seeds.jsonl and a tiny causal-LM checkpoint (its tokenizer knows only toy words)."""
    from duoguard.models import build_tiny_tokenizer
    from duoguard.toy_world import tiny_qwen2

    root.mkdir(parents=True, exist_ok=True)
    rows = seed_rows()
    (root / "seeds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    corpus = [" ".join([*WEAPONS, *KITCHEN, *FILLER, MARKER])] * 50 + [r["text"] for r in rows]
    tok = build_tiny_tokenizer(corpus, 200, all_bytes=False)
    tiny_qwen2(tok, seed=0).save_pretrained(root)
    tok.save_pretrained(root)
    return root


def toy_overrides(root: Path, out_dir: Path) -> list[str]:
    """Config overrides that play the game in the toy world (all conditions intended unsafe)."""
    return [
        f"data.seeds={root}/seeds.jsonl",
        "data.languages=[en]",
        "data.attack_styles=[direct]",
        "data.heldout_fraction=0.2",
        f"guardrail.model.name_or_path={root}",
        f"generator.model.name_or_path={root}",
        "guardrail.max_length=32",
        "guardrail.train.epochs=20",
        "generator.templates.unsafe='{seed}'",
        "generator.templates.safe='{seed}'",
        "generator.use_chat_template=false",
        "generator.sampling.max_new_tokens=6",
        "generator.grpo.learning_rate=1e-2",
        "generator.grpo.beta=0.0",
        "generator.grpo.num_generations=8",
        "generator.grpo.prompts_per_step=4",
        "generator.grpo.steps_per_round=10",
        "judge.rules=[label_pattern]",
        "judge.label_pattern='\\bzz\\b'",
        "judge.label_check=pattern",  # the toy world's label check
        "game.unsafe_fraction=1.0",
        "game.categories=[Violent Crimes]",
        "data.response_examples=false",
        "logger=none",
        "progress=false",
        f"output_dir={out_dir}",
    ]
