"""What the generator is asked: random (seed, language, category, attack style) combinations.

Instruct-SkillMix's lesson (REFERENCE §5): random combinations of "skills" drive diversity and
difficulty. A condition fixes the intended label (unsafe or safe), a category (the harm for an
unsafe prompt, the topic a safe prompt brushes against, XSTest-style), a target language and an
attack style, and picks a seed with that label and category to rewrite.

Combinations are walked through a seeded permutation of the whole product, pass after pass, so
every configured combination comes up once per pass and no round repeats the previous one.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from duoguard.config import GeneratorTemplates
from duoguard.data.schema import Sample

log = logging.getLogger(__name__)

LANGUAGE_NAMES = {
    "en": "English",
    "fr": "French",
    "es": "Spanish",
    "de": "German",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
    "pl": "Polish",
    "ru": "Russian",
    "zh": "Chinese",
    "ja": "Japanese",
    "ko": "Korean",
    "ar": "Arabic",
    "hi": "Hindi",
    "bn": "Bengali",
    "th": "Thai",
    "vi": "Vietnamese",
    "sw": "Swahili",
    "jv": "Javanese",
    "tr": "Turkish",
}


@dataclass(frozen=True)
class Condition:
    seed_id: str
    seed_text: str
    intended_unsafe: bool
    category: str
    language: str
    attack_style: str
    family: str = ""  # the seed's family: what it writes belongs to it (held-out splits keep it on one side)

    def as_columns(self) -> dict:
        return asdict(self)


class ConditionSampler:
    """Draws conditions; `draw(n, round)` is reproducible for a seed, whatever ran before."""

    def __init__(
        self,
        seeds: Sequence[Sample],
        categories: Sequence[str],
        languages: Sequence[str],
        attack_styles: Sequence[str],
        *,
        unsafe_fraction: float = 0.5,
        seed: int = 0,
    ):
        self.seed = seed
        unsafe_by_cat: dict[str, list[Sample]] = defaultdict(list)
        safe_by_topic: dict[str, list[Sample]] = defaultdict(list)
        safe_any: list[Sample] = []
        for s in seeds:
            if s.unsafe:
                for c in s.categories:
                    unsafe_by_cat[c].append(s)
            else:
                safe_any.append(s)
                topic = s.provenance.get("topic")
                if topic:
                    safe_by_topic[topic].append(s)
        self._unsafe_by_cat, self._safe_by_topic, self._safe_any = unsafe_by_cat, safe_by_topic, safe_any
        missing = [c for c in categories if not unsafe_by_cat.get(c)]
        if missing:
            log.warning("no unsafe seed for categories %s: they are left out of unsafe conditions", missing)
        unsafe_cats = [c for c in categories if unsafe_by_cat.get(c)]
        labels: list[bool] = []
        if unsafe_fraction > 0 and unsafe_cats:
            labels.append(True)
        if unsafe_fraction < 1 and safe_any:
            labels.append(False)
        if not labels:
            raise ValueError("no seeds to rewrite: the seed set has no usable safe or unsafe rows")
        # the product of everything the config asks for; the label is weighted by unsafe_fraction below
        self.combinations = [
            (unsafe, cat, lang, style)
            for unsafe in labels
            for cat in (unsafe_cats if unsafe else categories)
            for lang, style in itertools.product(languages, attack_styles)
        ]
        self.unsafe_fraction = unsafe_fraction
        self._orders: dict[int, list[int]] = {}

    def _order(self, pass_index: int) -> list[int]:
        """A fresh permutation per pass over the product, weighted towards `unsafe_fraction`."""
        if pass_index in self._orders:
            return self._orders[pass_index]
        rng = random.Random(f"{self.seed}:{pass_index}")
        unsafe = [i for i, c in enumerate(self.combinations) if c[0]]
        safe = [i for i, c in enumerate(self.combinations) if not c[0]]
        rng.shuffle(unsafe)
        rng.shuffle(safe)
        order = []
        while unsafe or safe:
            take_unsafe = bool(unsafe) and (not safe or rng.random() < self.unsafe_fraction)
            order.append((unsafe if take_unsafe else safe).pop())
        self._orders[pass_index] = order
        return order

    @property
    def cells(self) -> list[tuple[str, str, str]]:
        """The (language, category, attack style) cells of the combinations (duoguard/archive.py), in order."""
        return list(dict.fromkeys((lang, cat, style) for _, cat, lang, style in self.combinations))

    def draw(
        self,
        n: int,
        round_index: int,
        weights: Mapping[tuple[str, str, str], float] | None = None,
        *,
        mix: float = 0.5,
    ) -> list[Condition]:
        """The n conditions of a round: positions [round*n, (round+1)*n) of the endless walk.

        With `weights` (a weight per cell, `archive.curriculum_weights`), each position is, with
        probability `mix`, replaced by a draw of its label (by `unsafe_fraction`) and then of a
        combination of that label in proportion to its cell's weight; the other positions keep the
        walk's combination. Without `weights` the draws are the walk's, exactly.
        """
        if weights is not None:
            self._check_weights(weights, mix)
        start = round_index * n
        size = len(self.combinations)
        out = []
        for pos in range(start, start + n):
            order = self._order(pos // size)
            combination = self.combinations[order[pos % size]]
            if weights is not None:
                combination = self._weighted(pos, weights, mix) or combination
            unsafe, category, language, style = combination
            rng = random.Random(f"{self.seed}:seed:{pos}")
            if unsafe:
                pool = self._unsafe_by_cat[category]
            else:
                pool = self._safe_by_topic.get(category) or self._safe_any
            seed = pool[rng.randrange(len(pool))]
            out.append(Condition(seed.id, seed.text, unsafe, category, language, style, seed.family or seed.id))
        return out

    def _check_weights(self, weights: Mapping[tuple[str, str, str], float], mix: float) -> None:
        if not 0.0 <= mix <= 1.0:
            raise ValueError(f"mix must be in [0, 1], got {mix}")
        bad = {cell: w for cell, w in weights.items() if not (math.isfinite(w) and w >= 0)}
        if bad:
            raise ValueError(f"cell weights must be finite and >= 0, got {bad}")

    def _weighted(self, pos: int, weights: Mapping, mix: float) -> tuple | None:
        """The curriculum's combination for a position, or None to keep the walk's."""
        rng = random.Random(f"{self.seed}:curriculum:{pos}")
        if rng.random() >= mix:
            return None
        labels = {c[0] for c in self.combinations}
        unsafe = (rng.random() < self.unsafe_fraction) if len(labels) == 2 else labels.pop()
        combos = [c for c in self.combinations if c[0] == unsafe]
        cell_weights = [weights.get((lang, cat, style), 0.0) for _, cat, lang, style in combos]
        if not math.fsum(cell_weights) > 0:
            return None  # every cell of this label weighs nothing: the walk decides
        return rng.choices(combos, weights=cell_weights)[0]


def render(condition: Condition, templates: GeneratorTemplates) -> str:
    """The instruction for one condition, from `generator.templates`."""
    template = templates.unsafe if condition.intended_unsafe else templates.safe
    return template.format(
        seed=condition.seed_text,
        language=LANGUAGE_NAMES.get(condition.language, condition.language),
        category=condition.category,
        attack_style=condition.attack_style.replace("_", " "),
    )
