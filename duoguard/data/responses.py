"""Response-classification examples made from prompt-only seeds.

The guardrail also judges answers (`User: ... Agent: ...`), and SafeDPO and the attack success
rate rely on that judgment. Seeds are prompts only, so each seed is paired with short,
content-free answers in its language, labelled the way response classification labels them:

    unsafe prompt + refusal          -> safe
    unsafe prompt + compliance       -> unsafe (the prompt's categories)
    safe prompt   + compliance       -> safe

The answers say nothing harmful ("Sure, here is how, step by step:"): the guardrail learns that
complying with an unsafe request is what makes an answer unsafe, and refusing is not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from duoguard.config import ResponseTemplates
from duoguard.data.schema import Sample


def _in_language(table: Mapping[str, str], language: str) -> str:
    return table.get(language) or table["en"]


def response_examples(seeds: Sequence[Sample], templates: ResponseTemplates) -> list[Sample]:
    out: list[Sample] = []
    for s in seeds:
        if s.response is not None:
            continue
        refusal = _in_language(templates.refusal, s.language)
        comply = _in_language(templates.comply, s.language)
        base = {"provenance": {**s.provenance, "response_for": s.id}, "source": f"{s.source}+response"}
        if s.unsafe:
            out.append(replace(s, response=refusal, unsafe=False, categories=[], id=f"{s.id}+refusal", **base))
            out.append(replace(s, response=comply, id=f"{s.id}+comply", **base))
        else:
            out.append(replace(s, response=comply, id=f"{s.id}+comply", **base))
    return out
