"""Condition sampling covers the configured combinations; templates render them."""

from __future__ import annotations

import itertools

import pytest

from duoguard.config import GeneratorTemplates
from duoguard.data.schema import Sample
from duoguard.prompts import ConditionSampler, render

CATS = ["Violent Crimes", "Hate", "Privacy"]
LANGS = ["en", "fr", "de"]
STYLES = ["direct", "roleplay"]


def seeds():
    rows = [Sample(f"unsafe {c} {i}", "en", [c], True, id=f"u-{c}-{i}") for c in CATS for i in range(2)]
    rows += [Sample(f"safe {i}", "en", [], False, id=f"s-{i}") for i in range(3)]
    rows.append(Sample("look-alike about hate", "en", [], False, id="look", provenance={"topic": "Hate"}))
    return rows


def test_one_pass_covers_every_combination_once():
    sampler = ConditionSampler(seeds(), CATS, LANGS, STYLES, unsafe_fraction=0.5, seed=0)
    n = len(sampler.combinations)
    assert n == 2 * len(CATS) * len(LANGS) * len(STYLES)
    drawn = sampler.draw(n, 0)
    combos = {(c.intended_unsafe, c.category, c.language, c.attack_style) for c in drawn}
    assert combos == set(itertools.product([True, False], CATS, LANGS, STYLES))


def test_rounds_walk_on_and_are_reproducible():
    a = ConditionSampler(seeds(), CATS, LANGS, STYLES, seed=1)
    b = ConditionSampler(seeds(), CATS, LANGS, STYLES, seed=1)
    assert a.draw(5, 3) == b.draw(5, 3)  # round 3 does not depend on rounds 0-2 having run
    assert a.draw(5, 0) != a.draw(5, 1)
    assert ConditionSampler(seeds(), CATS, LANGS, STYLES, seed=2).draw(5, 0) != a.draw(5, 0)


def test_conditions_keep_the_seed_label():
    sampler = ConditionSampler(seeds(), CATS, LANGS, STYLES, seed=0)
    for c in sampler.draw(len(sampler.combinations) * 2, 0):
        seed = next(s for s in seeds() if s.id == c.seed_id)
        assert seed.unsafe == c.intended_unsafe
        if c.intended_unsafe:
            assert c.category in seed.categories
        elif c.category == "Hate":
            assert c.seed_id == "look"  # a safe look-alike on the topic is preferred


def test_unsafe_fraction_skews_the_labels():
    sampler = ConditionSampler(seeds(), CATS, LANGS, STYLES, unsafe_fraction=1.0, seed=0)
    assert all(c.intended_unsafe for c in sampler.draw(30, 0))
    sampler = ConditionSampler(seeds(), CATS, LANGS, STYLES, unsafe_fraction=0.0, seed=0)
    assert not any(c.intended_unsafe for c in sampler.draw(30, 0))


def test_categories_without_unsafe_seeds_are_left_out(caplog):
    sampler = ConditionSampler(seeds(), [*CATS, "Elections"], LANGS, STYLES, unsafe_fraction=1.0, seed=0)
    assert "Elections" in caplog.text
    assert all(c.category != "Elections" for c in sampler.draw(100, 0))


def test_no_usable_seed_fails():
    with pytest.raises(ValueError, match="no seeds"):
        ConditionSampler([], CATS, LANGS, STYLES)


def test_render_fills_every_field():
    c = ConditionSampler(seeds(), CATS, ["fr"], ["refusal_suppression"], unsafe_fraction=1.0).draw(1, 0)[0]
    text = render(c, GeneratorTemplates(unsafe="{language}|{attack_style}|{category}|{seed}", safe="x"))
    assert text == f"French|refusal suppression|{c.category}|{c.seed_text}"
