"""One generated prompt, from the referee through the generator's rollout and the game to the pool.

The referee builds a `GeneratedPrompt` for every candidate, the game accepts some (giving them
ids), the pool stores them one parquet row each (`to_row`, `from_row`, `arrow_schema`) and hands
them to training as samples (`to_sample`).
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

from duoguard.data.schema import Sample


@dataclass
class Verdict:
    """The judge's decision on one candidate."""

    keep: bool  # the candidate keeps its intended label and is usable
    reasons: list[str] = field(default_factory=list)  # the judge rules that failed (roles/judge.py), in rule order
    rating: float | None = None  # the LLM judge's 1-5 rating (expected digit); None when no LLM judge ran


@dataclass(kw_only=True)
class GeneratedPrompt:
    """A candidate prompt the generator wrote for one condition, as scored in its round.

    The pool's columns are these fields, in this order, one column each: `judge` is a struct
    <keep: bool, reasons: list<string>, rating: float>, `provenance` a JSON object in a string,
    floats are float32 and ints int32 (`arrow_schema`). Pools of this shape have manifest version 2.
    """

    id: str = ""  # "r<round>-<index>", given when the game accepts the prompt into the pool; "" before
    text: str  # the prompt the generator wrote
    language: str  # ISO 639-1 code the condition asked for
    category: str  # the condition's taxonomy category: the harm if unsafe, the topic it brushes against if safe
    attack_style: str  # the condition's attack style (data.attack_styles)
    unsafe: bool  # the intended label: the condition asked for an unsafe prompt
    seed_id: str  # id of the seed sample that was rewritten
    round: int  # the game round (1-based) that generated it
    step: int | None = None  # the GRPO step within the round (TRL's global step); orders data-parallel ranks
    guardrail_score: float  # P(unsafe) from the round's frozen guardrail, in [0, 1]
    fooled: bool  # the guardrail's decision (score > guardrail.threshold) differed from the intended label
    judge: Verdict  # the judge's verdict
    reward: float  # the GRPO reward the referee gave it (game.reward), unitless
    source: str = "duoguard-game"  # where the prompt came from
    provenance: dict[str, Any] = field(default_factory=dict)  # anything else worth keeping, JSON-serialisable

    def to_row(self) -> dict[str, Any]:
        """One parquet row (`arrow_schema`)."""
        return {**asdict(self), "provenance": json.dumps(self.provenance, ensure_ascii=False, sort_keys=True)}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> GeneratedPrompt:
        """The record a row written by `to_row` holds."""
        judge = row["judge"]
        return cls(
            **{
                **row,
                "judge": Verdict(judge["keep"], list(judge["reasons"] or []), judge["rating"]),
                "provenance": json.loads(row["provenance"] or "{}"),
            }
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
        )


def arrow_schema():
    """The pool's parquet schema, built from `GeneratedPrompt`'s fields and their types."""
    import pyarrow as pa

    return pa.schema(list(_arrow_type(GeneratedPrompt)))


def _arrow_type(hint: Any):
    import pyarrow as pa

    if is_dataclass(hint):  # a struct of its fields
        hints = typing.get_type_hints(hint)
        return pa.struct([pa.field(f.name, _arrow_type(hints[f.name])) for f in fields(hint)])
    if isinstance(hint, types.UnionType):  # `X | None`: parquet columns are nullable anyway
        (hint,) = [h for h in typing.get_args(hint) if h is not type(None)]
    if typing.get_origin(hint) is list:
        return pa.list_(_arrow_type(typing.get_args(hint)[0]))
    if typing.get_origin(hint) is dict:
        return pa.string()  # JSON
    return {str: pa.string(), bool: pa.bool_(), int: pa.int32(), float: pa.float32()}[hint]
