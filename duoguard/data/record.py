"""One record for a prompt, from the referee through the game and the pool to SafeDPO pairs, attack
sets and reports.

The referee builds a `PromptRecord` for every candidate, the game accepts some (giving them
ids), the pool stores them one parquet row each (`to_row`, `from_row`, `arrow_schema`) and hands
them to training as samples (`to_sample`). SafeDPO's prompts are the pool's records (plus prompt
files' rows, `from_sample`); its held-out prompts and the public attack sets reach the target
evaluation as records too. Fields the game fills (seed, round, scores, verdict, reward) are None
for a prompt that did not come from a game.
"""

from __future__ import annotations

import json
import os
import types
import typing
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from duoguard.data.schema import Sample


@dataclass
class Verdict:
    """The judge's decision on one candidate."""

    keep: bool  # the candidate keeps its intended label and is usable
    reasons: list[str] = field(default_factory=list)  # the judge rules that failed (roles/judge.py), in rule order
    rating: float | None = None  # the LLM judge's 1-5 rating (expected digit); None when no LLM judge ran


@dataclass(kw_only=True)
class PromptRecord:
    """A prompt the generator wrote for one condition, as scored in its round (or a prompt from a file
    or an attack set, with the game's fields None).

    The pool's columns are these fields, in this order, one column each: `judge` is a struct
    <keep: bool, reasons: list<string>, rating: float>, `provenance` a JSON object in a string,
    floats are float32 and ints int32 (`arrow_schema`). Pools of this shape have manifest version 2.
    """

    id: str = ""  # "r<round>-<index>", given when the game accepts the prompt into the pool; "" before
    text: str  # the prompt the generator wrote
    language: str  # ISO 639-1 code the condition asked for
    category: str | None  # taxonomy category: the harm if unsafe, the topic it brushes against if safe
    attack_style: str | None  # the condition's attack style (data.attack_styles); an attack set's name
    unsafe: bool  # the intended label: the condition asked for an unsafe prompt
    seed_id: str | None = None  # id of the seed sample that was rewritten
    family: str | None = None  # the seed's family (its translations and rewrites); None: the prompt is its own
    round: int | None = None  # the game round (1-based) that generated it
    step: int | None = None  # the GRPO step within the round (TRL's global step); orders data-parallel ranks
    guardrail_score: float | None = None  # P(unsafe) from the round's frozen guardrail, in [0, 1]
    fooled: bool | None = (
        None  # the guardrail's decision (score > guardrail.threshold) differed from the intended label
    )
    judge: Verdict | None = None  # the judge's verdict
    reward: float | None = None  # the GRPO reward the referee gave it (game.reward), unitless
    source: str = "duoguard-game"  # where the prompt came from
    provenance: dict[str, Any] = field(default_factory=dict)  # anything else worth keeping, JSON-serialisable

    def to_row(self) -> dict[str, Any]:
        """One parquet row (`arrow_schema`)."""
        return {**asdict(self), "provenance": json.dumps(self.provenance, ensure_ascii=False, sort_keys=True)}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> PromptRecord:
        """The record a row written by `to_row` holds."""
        judge = row["judge"]
        return cls(
            **{
                **row,
                "judge": Verdict(judge["keep"], list(judge["reasons"] or []), judge["rating"]) if judge else None,
                "provenance": json.loads(row["provenance"] or "{}"),
            }
        )

    @classmethod
    def from_sample(cls, sample: Sample) -> PromptRecord:
        """A prompt from a file in the sample schema (e.g. `safedpo.prompt_files`): no game fields."""
        topic = sample.provenance.get("topic")
        return cls(
            id=sample.id,
            text=sample.text,
            language=sample.language,
            category=sample.categories[0] if sample.categories else topic,
            attack_style=sample.attack_style,
            unsafe=sample.unsafe,
            family=sample.family or sample.id,
            source=sample.source,
            provenance=dict(sample.provenance),
        )

    def to_sample(self) -> Sample:
        """A training sample: an unsafe prompt's category is its label, a safe prompt's is its topic."""
        provenance = {
            **self.provenance,
            "round": self.round,
            "seed_id": self.seed_id,
            "guardrail_score": self.guardrail_score,
        }
        if not self.unsafe:
            provenance["topic"] = self.category  # what prompts.ConditionSampler pairs safe seeds by
        return Sample(
            text=self.text,
            language=self.language,
            categories=[self.category] if self.unsafe else [],
            unsafe=self.unsafe,
            attack_style=self.attack_style,
            source=self.source,
            id=self.id,
            provenance=provenance,
            family=self.family or self.id,
        )


def write_prompts(path: str | os.PathLike, prompts: Sequence[PromptRecord]) -> None:
    """Prompt records as JSON lines, one `to_row()` each (e.g. SafeDPO's held-out attacks)."""
    from duoguard.atomic import write_text_atomic

    write_text_atomic(path, "".join(json.dumps(p.to_row(), ensure_ascii=False) + "\n" for p in prompts))


def read_prompts(path: str | os.PathLike) -> list[PromptRecord]:
    """The records `write_prompts` wrote."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [PromptRecord.from_row(json.loads(line)) for line in lines if line.strip()]


def arrow_schema():
    """The pool's parquet schema, built from `PromptRecord`'s fields and their types."""
    import pyarrow as pa

    return pa.schema(list(_arrow_type(PromptRecord)))


def _arrow_type(hint: Any):
    import pyarrow as pa

    if isinstance(hint, types.UnionType):  # `X | None`: parquet columns are nullable anyway
        (hint,) = [h for h in typing.get_args(hint) if h is not type(None)]
    if is_dataclass(hint):  # a struct of its fields
        hints = typing.get_type_hints(hint)
        return pa.struct([pa.field(f.name, _arrow_type(hints[f.name])) for f in fields(hint)])
    if typing.get_origin(hint) is list:
        return pa.list_(_arrow_type(typing.get_args(hint)[0]))
    if typing.get_origin(hint) is dict:
        return pa.string()  # JSON
    return {str: pa.string(), bool: pa.bool_(), int: pa.int32(), float: pa.float32()}[hint]
