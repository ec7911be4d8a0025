"""Preference pairs: from the game's prompts (Egida's recipe by default) or public preference files.

Egida's recipe (arXiv 2502.13603): the target answers each prompt several times, a safe responder
answers it once, and the judge (`safedpo.pairs.judge`: the game's guardrail by default) labels every
answer (response classification); prompts the target answered unsafely give pairs (its unsafe answer
rejected, the safe answer chosen). Every such pair has a safe chosen and an unsafe rejected answer, so
T(D) only keeps and Δ is one constant offset. The helpfulness recipe orders sampled answers by a
helpfulness scorer and labels them by the judge, as PKU-SafeRLHF is built: T(D) keeps, swaps and
drops, and Δ separates pairs by their rejected answer's label. PKU-SafeRLHF-style files are read as
they are.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from duoguard.config import PairRecipe, PairsConfig, Responder
from duoguard.data.readers import DataError, iter_rows
from duoguard.data.record import PromptRecord
from duoguard.data.schema import SampleError, parse_bool
from duoguard.errors import UserError

log = logging.getLogger(__name__)

PAIR_FIELDS = ("prompt", "chosen", "rejected", "chosen_unsafe", "rejected_unsafe")
PROVENANCE_FIELDS = ("prompt_id", "language", "category", "attack_style", "source", "round")


def check_pair(row: Mapping[str, Any]) -> dict[str, Any]:
    """A pair record with every field present, answers non-empty and labels boolean."""
    missing = [f for f in PAIR_FIELDS if f not in row or row[f] is None]
    if missing:
        raise SampleError(f"missing field(s) {missing}")
    for f in ("prompt", "chosen", "rejected"):
        if not isinstance(row[f], str) or not row[f].strip():
            raise SampleError(f"'{f}' is empty")
    for f in ("chosen_unsafe", "rejected_unsafe"):
        if not isinstance(row[f], bool):
            raise SampleError(f"'{f}' must be a boolean, got {row[f]!r}")
    return dict(row)


def read_pku_saferlhf(
    path: str | os.PathLike, *, source: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """PKU-SafeRLHF-style rows: prompt, response_0, response_1, better_response_id,
    is_response_0_safe, is_response_1_safe (jsonl, json, csv or parquet)."""
    need = ("prompt", "response_0", "response_1", "better_response_id", "is_response_0_safe", "is_response_1_safe")
    out: list[dict[str, Any]] = []
    for line, row in iter_rows(path):
        try:
            missing = [k for k in need if k not in row or row[k] is None]
            if missing:
                raise SampleError(f"missing field(s) {missing}")
            better = int(row["better_response_id"])
            if better not in (0, 1):
                raise SampleError(f"better_response_id must be 0 or 1, got {row['better_response_id']!r}")
            safe = [parse_bool(row[f"is_response_{i}_safe"], f"is_response_{i}_safe", true_word="safe") for i in (0, 1)]
            pair = check_pair(
                {
                    "prompt": row["prompt"],
                    "chosen": row[f"response_{better}"],
                    "rejected": row[f"response_{1 - better}"],
                    "chosen_unsafe": not safe[better],
                    "rejected_unsafe": not safe[1 - better],
                }
            )
        except (SampleError, ValueError, TypeError) as e:
            raise DataError(path, line, str(e)) from None
        out.append(
            {
                **pair,
                "prompt_id": f"{Path(path).name}:{line}",
                "language": row.get("language") or "en",
                "category": None,
                "attack_style": None,
                "source": source or Path(path).name,
                "round": None,
            }
        )
        if limit is not None and len(out) >= limit:
            break
    return out


# ---------------------------------------------------------------- pairs from the game's prompts
def responder_answers(
    prompts: Sequence[PromptRecord],
    pairs_cfg: PairsConfig,
    refusals: Mapping[str, str],
    target,
    responder,
    *,
    n: int = 1,
    progress: bool = False,
) -> list[list[str]]:
    """The safe responder's answers to each prompt: a canned refusal in the prompt's language
    (`refusals`, from data.response_templates.refusal; always one), or `n` samples of the target
    itself or of another model, with the safety system prompt."""
    kind = pairs_cfg.responder
    if kind == Responder.refusal:
        return [[refusals.get(p.language or "en", refusals["en"])] for p in prompts]
    model = target if kind == Responder.target else responder
    return model.answer(
        [p.text for p in prompts], n=n, system=pairs_cfg.safety_system_prompt, seed=1, progress=progress
    )


def safe_answers(
    prompts: Sequence[PromptRecord], pairs_cfg: PairsConfig, refusals: Mapping[str, str], target, responder
) -> list[str]:
    """The safe responder's one answer to each prompt (`responder_answers`)."""
    return [a[0] for a in responder_answers(prompts, pairs_cfg, refusals, target, responder)]


def provenance(prompt: PromptRecord) -> dict[str, Any]:
    """Where a pair's prompt came from (PROVENANCE_FIELDS)."""
    return {
        "prompt_id": prompt.id,
        "language": prompt.language,
        "category": prompt.category,
        "attack_style": prompt.attack_style,
        "source": prompt.source,
        "round": prompt.round,
    }


def build_pairs(
    prompts: Sequence[PromptRecord],
    target,
    judge,
    pairs_cfg: PairsConfig,
    *,
    refusals: Mapping[str, str],
    responder=None,
    scorer=None,
    progress: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Pairs from prompt records (their provenance goes with each pair). `judge` labels answers
    (`is_unsafe(prompts, answers)`: the game's guardrail, another one, or an LLM guard); `scorer`
    orders them by helpfulness (`scores(prompts, answers)`, recipe=helpfulness only)."""
    if pairs_cfg.recipe == PairRecipe.helpfulness:
        if scorer is None:
            raise UserError("safedpo.pairs.recipe=helpfulness needs a helpfulness scorer (safedpo.pairs.helpfulness)")
        return helpfulness_pairs(
            prompts, target, judge, scorer, pairs_cfg, refusals=refusals, responder=responder, progress=progress
        )
    k = pairs_cfg.samples_per_prompt
    answers = target.answer([p.text for p in prompts], n=k, seed=0, progress=progress)
    safe = safe_answers(prompts, pairs_cfg, refusals, target, responder)
    flat_prompts = [p.text for p in prompts for _ in range(k)] + [p.text for p in prompts]
    flat_answers = [a for group in answers for a in group] + safe
    unsafe = judge.is_unsafe(flat_prompts, flat_answers, progress=progress)
    target_unsafe = unsafe[: len(prompts) * k].reshape(len(prompts), k)
    safe_unsafe = unsafe[len(prompts) * k :]
    if pairs_cfg.responder == Responder.refusal:
        safe_unsafe[:] = False  # a canned refusal is safe by construction, whatever a weak judge says
    recipe = pairs_cfg.recipe
    stats = Counter(
        prompts=len(prompts), target_answers=len(prompts) * k, target_unsafe_answers=int(target_unsafe.sum())
    )
    pairs: list[dict[str, Any]] = []
    for i, p in enumerate(prompts):
        if recipe == PairRecipe.egida:
            bad = [j for j in range(k) if target_unsafe[i, j] and answers[i][j].strip()]
            if not bad:
                stats["skipped_target_safe"] += 1
                continue
            if safe_unsafe[i] or not safe[i].strip():
                stats["skipped_responder_unsafe"] += 1
                continue
            rejected, h_l, h_w = answers[i][bad[0]], True, False
        else:  # "all": the responder's answer against the target's first, labels as judged
            rejected, h_l, h_w = answers[i][0], bool(target_unsafe[i, 0]), bool(safe_unsafe[i])
            if not rejected.strip() or not safe[i].strip():
                stats["skipped_empty_answer"] += 1
                continue
        pairs.append(
            {
                "prompt": p.text,
                "chosen": safe[i],
                "rejected": rejected,
                "chosen_unsafe": h_w,
                "rejected_unsafe": h_l,
                **provenance(p),
            }
        )
        if len(pairs) >= pairs_cfg.max_pairs:
            break
    stats["pairs"] = len(pairs)
    return pairs, dict(stats)


def helpfulness_pairs(
    prompts: Sequence[PromptRecord],
    target,
    judge,
    scorer,
    pairs_cfg: PairsConfig,
    *,
    refusals: Mapping[str, str],
    responder=None,
    progress: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """PKU-SafeRLHF-style pairs: the target samples `samples_per_prompt` answers to each prompt and the
    responder adds its own (a canned refusal, or as many samples of a model under the safety system
    prompt); `scorer` orders them by helpfulness and `judge` labels each one. Per prompt, the most
    helpful distinct answer is chosen against the least helpful (then second against second-last, up
    to `helpfulness.pairs_per_prompt`); equal scores give no pair. Labels are the judge's, so SafeDPO's
    T(D) keeps (chosen safe), swaps (chosen unsafe, rejected safe) and drops (both unsafe)."""
    k = pairs_cfg.samples_per_prompt
    texts = [p.text for p in prompts]
    own = target.answer(texts, n=k, seed=0, progress=progress)
    other = responder_answers(prompts, pairs_cfg, refusals, target, responder, n=k, progress=progress)
    canned = pairs_cfg.responder == Responder.refusal  # a canned refusal is safe by construction
    candidates = [list(dict.fromkeys(a for a in own[i] + other[i] if a.strip())) for i in range(len(prompts))]
    flat = [(i, a) for i, answers in enumerate(candidates) for a in answers]
    flat_prompts, flat_answers = [texts[i] for i, _ in flat], [a for _, a in flat]
    unsafe = judge.is_unsafe(flat_prompts, flat_answers, progress=progress) if flat else np.zeros(0, bool)
    helpful = scorer.scores(flat_prompts, flat_answers) if flat else np.zeros(0)
    if canned:
        unsafe = unsafe & ~np.array([a in other[i] for i, a in flat], dtype=bool)
    stats = Counter(
        prompts=len(prompts),
        target_answers=len(prompts) * k,
        candidate_answers=len(flat),
        unsafe_answers=int(unsafe.sum()),
    )
    pairs: list[dict[str, Any]] = []
    start = 0
    for i, p in enumerate(prompts):
        idx = list(range(start, start + len(candidates[i])))
        start += len(candidates[i])
        if len(idx) < 2:
            stats["skipped_one_answer"] += 1
            continue
        order = sorted(idx, key=lambda j: -helpful[j])
        for r in range(min(pairs_cfg.helpfulness.pairs_per_prompt, len(order) // 2)):
            hi, lo = order[r], order[-1 - r]
            if helpful[hi] == helpful[lo]:
                stats["skipped_tie"] += 1
                continue
            pairs.append(
                {
                    "prompt": p.text,
                    "chosen": flat_answers[hi],
                    "rejected": flat_answers[lo],
                    "chosen_unsafe": bool(unsafe[hi]),
                    "rejected_unsafe": bool(unsafe[lo]),
                    **provenance(p),
                }
            )
        if len(pairs) >= pairs_cfg.max_pairs:
            pairs = pairs[: pairs_cfg.max_pairs]
            break
    stats["pairs"] = len(pairs)
    return pairs, dict(stats)


def save_pairs(pairs: Sequence[Mapping[str, Any]], path: str | os.PathLike):
    """The pairs as a `datasets` dataset on disk (written whole, then renamed into place)."""
    from datasets import Dataset

    from duoguard.atomic import atomic_dir

    for i, p in enumerate(pairs):
        try:
            check_pair(p)
        except SampleError as e:
            raise DataError(path, i + 1, str(e)) from None
    columns = {f: [p.get(f) for p in pairs] for f in (*PAIR_FIELDS, *PROVENANCE_FIELDS)}
    dataset = Dataset.from_dict(columns)
    atomic_dir(path, lambda tmp: dataset.save_to_disk(str(tmp)), replace=True)
    return dataset
