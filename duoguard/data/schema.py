"""The sample schema: one labelled prompt (optionally with a response), checked on the way in.

Every row that enters training, the game's pool or SafeDPO passes `make_sample`, so a bad
label is caught where it is read, with its file and line, not deep inside a trainer.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from duoguard.errors import UserError
from duoguard.taxonomy import Taxonomy, TaxonomyError


class SampleError(UserError):
    """A row that does not fit the schema; the reader adds file and line."""


@dataclass
class Sample:
    text: str
    language: str
    categories: list[str]  # canonical taxonomy names; empty = safe, or unsafe in no named category
    unsafe: bool
    response: str | None = None  # set for response classification
    attack_style: str | None = None
    source: str = ""
    id: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    # rows that are versions of one request (its translations, rewrites) share a family; splits keep a family
    # on one side. A row without one is its own family (its id)
    family: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SchemaContext:
    """What a row is checked against, plus per-file defaults."""

    taxonomy: Taxonomy
    languages: Sequence[str]
    attack_styles: Sequence[str]
    max_text_chars: int = 20_000
    default_language: str | None = None
    default_unsafe: bool | None = None
    default_categories: Sequence[str] = ()
    source: str = ""


_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def parse_bool(value: Any, key: str, *, true_word: str | None = "unsafe") -> bool:
    """The one boolean parser for data files: a bool, 0/1, or true/false, yes/no, y/n, t/f, 1/0
    (any case). `true_word` says which of the words safe/unsafe means True for this field:
    "unsafe" for an `unsafe` label (the default), "safe" for an `is_safe`-style field (so
    "unsafe" reads as False there), None to accept neither."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    words = {"safe": True, "unsafe": False} if true_word == "safe" else {"unsafe": True, "safe": False}
    if isinstance(value, str):
        word = value.strip().casefold()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        if true_word is not None and word in words:
            return words[word]
    accepted = "true/false, 1/0, yes/no" + (", safe/unsafe" if true_word is not None else "")
    raise SampleError(f"'{key}' must be a boolean ({accepted}), got {value!r}")


def parse_list(value: Any, key: str) -> list[str]:
    """A list column: a JSON list, or a string separated by ';' or '|' (CSV friendly)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if str(v).strip()]
    if hasattr(value, "tolist"):  # numpy arrays from parquet
        return parse_list(value.tolist(), key)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        if text.startswith("["):
            try:
                return parse_list(json.loads(text), key)
            except json.JSONDecodeError as e:
                raise SampleError(f"'{key}' is not a valid JSON list: {e.msg}") from None
        sep = ";" if ";" in text else "|"
        return [part.strip() for part in text.split(sep) if part.strip()]
    raise SampleError(f"'{key}' must be a list of category names, got {type(value).__name__}")


def _text(value: Any, key: str, limit: int, required: bool) -> str | None:
    if value is None or (isinstance(value, float) and value != value):  # NaN from pandas/CSV
        if required:
            raise SampleError(f"missing '{key}'")
        return None
    if not isinstance(value, str):
        raise SampleError(f"'{key}' must be a string, got {type(value).__name__}")
    if not value.strip():
        raise SampleError(f"'{key}' is empty")
    if len(value) > limit:
        raise SampleError(f"'{key}' has {len(value):,} characters, more than data.max_text_chars={limit:,}")
    return value


def make_sample(row: Mapping[str, Any], ctx: SchemaContext, row_id: str = "") -> Sample:
    """Check one raw row (schema field names) and build a Sample, or raise SampleError."""
    text = _text(row.get("text"), "text", ctx.max_text_chars, required=True)
    response = _text(row.get("response"), "response", ctx.max_text_chars, required=False)

    language = row.get("language") or ctx.default_language
    if not language:
        raise SampleError("missing 'language' (add a language column or set the file's `language`)")
    language = str(language).strip().lower()
    if language not in ctx.languages:
        raise SampleError(f"unknown language '{language}' (data.languages: {', '.join(ctx.languages)})")

    raw_unsafe = row.get("unsafe")
    if raw_unsafe is None or raw_unsafe == "":
        raw_unsafe = ctx.default_unsafe
    raw_categories = parse_list(row.get("categories"), "categories")
    if raw_unsafe is None and row.get("categories") is None:
        raise SampleError("missing label: give 'unsafe' (true/false) or 'categories'")
    try:
        categories = ctx.taxonomy.resolve_all(raw_categories)
    except TaxonomyError as e:
        raise SampleError(str(e)) from None
    unsafe = parse_bool(raw_unsafe, "unsafe") if raw_unsafe is not None else bool(raw_categories)
    if unsafe and not categories:
        if raw_categories:
            raise SampleError(
                f"unsafe row whose categories {raw_categories} all map to nothing in taxonomy '{ctx.taxonomy.name}'"
            )
        # no category given: the file's `categories` if it sets them, else none (an AdvBench prompt); such a
        # row trains the guardrail's unsafe decision alone (duoguard.losses, UNKNOWN targets)
        categories = ctx.taxonomy.resolve_all(ctx.default_categories)
    if not unsafe and categories:
        raise SampleError(f"row marked safe but has categories {categories}")

    style = row.get("attack_style")
    style = str(style).strip() if style not in (None, "") else None
    if style is not None and style not in ctx.attack_styles:
        raise SampleError(f"unknown attack_style '{style}' (data.attack_styles: {', '.join(ctx.attack_styles)})")

    provenance = row.get("provenance") or {}
    if isinstance(provenance, str):
        try:
            provenance = json.loads(provenance)
        except json.JSONDecodeError as e:
            raise SampleError(f"'provenance' is not valid JSON: {e.msg}") from None
    if not isinstance(provenance, Mapping):
        raise SampleError("'provenance' must be a JSON object")

    return Sample(
        text=text,
        response=response,
        language=language,
        categories=categories,
        unsafe=unsafe,
        attack_style=style,
        source=str(row.get("source") or ctx.source),
        id=str(row.get("id") or row_id),
        provenance=dict(provenance),
        family=str(row.get("family") or row.get("id") or row_id),
    )


def family_keys(samples: Sequence[Sample]) -> list[str]:
    """Each row's family (a row built without family or id is its own)."""
    return [s.family or s.id or f"#{i}" for i, s in enumerate(samples)]


def split_heldout(samples: Sequence[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Train/held-out split by family (a request and its translations or rewrites stay on one side),
    stratified by the family's (languages, unsafe), reproducible for a seed. Rows without a family are their
    own, which makes this the plain (language, unsafe)-stratified split."""
    if fraction <= 0:
        return list(samples), []
    families: dict[str, list[Sample]] = defaultdict(list)
    for key, s in zip(family_keys(samples), samples, strict=True):
        families[key].append(s)
    strata: dict[tuple[tuple[str, ...], bool], list[list[Sample]]] = defaultdict(list)
    for members in families.values():
        strata[(tuple(sorted({m.language for m in members})), members[0].unsafe)].append(members)
    rng = random.Random(seed)
    train: list[Sample] = []
    heldout: list[Sample] = []
    for key in sorted(strata):
        group = strata[key][:]
        rng.shuffle(group)
        n_held = round(len(group) * fraction)
        if len(group) > 1:
            n_held = min(max(n_held, 1), len(group) - 1)
        heldout.extend(s for members in group[:n_held] for s in members)
        train.extend(s for members in group[n_held:] for s in members)
    return train, heldout


def split_heldout_both_sides(
    samples: Sequence[Sample], fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """`split_heldout`, and where its strata are too small to give both sides a family (each stratum one
    family), a plain split of the families that does (when there are two or more)."""
    rest, part = split_heldout(samples, fraction, seed)
    keys = family_keys(samples)
    families = list(dict.fromkeys(keys))
    if (rest and part) or len(families) < 2:
        return rest, part
    random.Random(seed).shuffle(families)
    chosen = set(families[: min(max(round(len(families) * fraction), 1), len(families) - 1)])
    return [s for s, k in zip(samples, keys) if k not in chosen], [s for s, k in zip(samples, keys) if k in chosen]
