"""The archive over language x category x attack style counts a round's records, survives a save and a
load, and the curriculum moves the condition sampler's draws towards its target cells."""

from __future__ import annotations

from collections import Counter

import pytest

from duoguard.archive import Archive, cell_of, curriculum_weights
from duoguard.config import ConfigError, CurriculumConfig, CurriculumRule, GameConfig
from duoguard.data.record import PromptRecord, Verdict
from duoguard.prompts import ConditionSampler
from tests.test_prompts import CATS, LANGS, STYLES, seeds

N = 3000  # draws per distribution test (about 0.1 s)


def record(lang, cat, style, *, keep=True, fooled=False, unsafe=True) -> PromptRecord:
    return PromptRecord(
        text="t", language=lang, category=cat, attack_style=style, unsafe=unsafe, judge=Verdict(keep), fooled=fooled
    )


def crafted() -> tuple[list[PromptRecord], list[PromptRecord]]:
    records = [
        record("en", "Hate", "direct", fooled=True),
        record("en", "Hate", "direct", fooled=False),
        record("en", "Hate", "direct", keep=False, fooled=True),  # rejected: its fooled does not count
        record("fr", None, "roleplay", unsafe=False, fooled=True),  # a safe prompt without topic
        record("fr", None, "roleplay", unsafe=False, keep=False),
    ]
    return records, [records[0], records[3]]


def test_update_counts_each_cell():
    archive = Archive()
    records, accepted = crafted()
    archive.update(records, accepted)
    hate, untopical = ("en", "Hate", "direct"), ("fr", None, "roleplay")
    assert set(archive.cells) == {hate, untopical}
    c = archive.counts(hate)
    assert (c.generated, c.kept, c.accepted, c.fooled) == (3, 2, 1, 1)
    c = archive.counts(untopical)
    assert (c.generated, c.kept, c.accepted, c.fooled) == (2, 1, 1, 1)
    assert archive.fool_rate(hate) == 0.5
    assert archive.fool_rate(untopical) == 1.0
    assert archive.fool_rate(("de", "Hate", "direct")) is None  # never tried
    archive.update(records, [])  # a second round adds up
    assert archive.counts(hate).generated == 6 and archive.counts(hate).accepted == 1
    assert archive.coverage() == 1.0
    assert archive.coverage([hate, ("de", "Hate", "direct")]) == 0.5
    assert archive.coverage([hate], min_accepted=2) == 0.0
    rows = archive.rows()
    assert [(r["language"], r["category"]) for r in rows] == [("en", "Hate"), ("fr", None)]
    assert rows[0]["fool_rate"] == 0.5 and rows[0]["kept"] == 4


def test_save_and_load_round_trip(tmp_path):
    archive = Archive()
    archive.update(*crafted())
    path = archive.save(tmp_path / "archive.json")
    loaded = Archive.load(path)
    assert loaded == archive
    assert loaded.counts(("fr", None, "roleplay")).accepted == 1
    assert not list(tmp_path.glob(".archive.json.*"))  # written atomically: no temp file left behind
    # a resumed game continues the archive
    loaded.update(*crafted())
    assert loaded.counts(("en", "Hate", "direct")).generated == 6


def test_load_names_the_file_and_the_bad_cell(tmp_path):
    path = tmp_path / "archive.json"
    path.write_text('{"version": 1, "cells": [{"language": "en", "category": "Hate"}]}')
    with pytest.raises(ValueError, match=r"archive\.json: cell 0 is malformed"):
        Archive.load(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="archive.json: not an archive"):
        Archive.load(path)


def sampler(**kw) -> ConditionSampler:
    return ConditionSampler(seeds(), CATS, LANGS, STYLES, unsafe_fraction=0.5, seed=0, **kw)


def share(conditions, cell) -> float:
    counts = Counter((c.language, c.category, c.attack_style) for c in conditions)
    return counts[cell] / len(conditions)


def test_uniform_draws_are_the_walk():
    s = sampler()
    # the first draws of round 1 as the sampler gave them before the curriculum existed (seed 0)
    before = [
        (False, "Violent Crimes", "en", "roleplay", "s-0"),
        (True, "Hate", "en", "roleplay", "u-Hate-0"),
        (False, "Privacy", "fr", "roleplay", "s-2"),
        (True, "Hate", "de", "roleplay", "u-Hate-1"),
        (False, "Privacy", "de", "direct", "s-1"),
        (False, "Hate", "fr", "direct", "look"),
    ]
    assert [(c.intended_unsafe, c.category, c.language, c.attack_style, c.seed_id) for c in s.draw(6, 1)] == before
    archive = Archive()
    archive.update(*crafted())
    assert curriculum_weights(archive, s.cells, CurriculumConfig()) is None  # the default rule is uniform
    for r in range(3):
        assert s.draw(40, r, None) == s.draw(40, r)
        # a rule with no share of the draws changes nothing either
        assert s.draw(40, r, {c: 1.0 for c in s.cells}, mix=0.0) == s.draw(40, r)


def test_under_covered_favours_an_empty_cell():
    s = sampler()
    empty = ("fr", "Privacy", "roleplay")
    archive = Archive()
    for cell in s.cells:
        if cell != empty:
            rows = [record(*cell) for _ in range(10)]
            archive.update(rows, rows)
    weights = curriculum_weights(archive, s.cells, CurriculumConfig(rule="under_covered"))
    assert weights[empty] == 1.0 and weights[("en", "Hate", "direct")] == pytest.approx(1 / 11)
    uniform_share = share(s.draw(N, 0), empty)
    assert uniform_share == pytest.approx(1 / len(s.cells), abs=0.01)
    favoured = s.draw(N, 0, weights, mix=0.5)
    assert share(favoured, empty) > 3 * uniform_share  # about 0.5 x 0.39 + 0.5 / 18 = 0.22 vs 0.056
    # the label still follows unsafe_fraction
    assert sum(c.intended_unsafe for c in favoured) / N == pytest.approx(0.5, abs=0.05)
    # a lower temperature sharpens the rule
    sharp = curriculum_weights(archive, s.cells, CurriculumConfig(rule="under_covered", temperature=0.5))
    assert share(s.draw(N, 0, sharp, mix=0.5), empty) > share(favoured, empty) + 0.05


def test_still_fooled_favours_the_fooled_cell():
    s = sampler()
    fooled = ("de", "Violent Crimes", "direct")
    archive = Archive()
    for cell in s.cells:
        rows = [record(*cell, fooled=cell == fooled and i < 18) for i in range(20)]
        archive.update(rows, rows)
    weights = curriculum_weights(archive, s.cells, CurriculumConfig(rule=CurriculumRule.still_fooled))
    assert weights[fooled] == pytest.approx(19 / 22) and weights[("en", "Hate", "direct")] == pytest.approx(1 / 22)
    uniform_share = share(s.draw(N, 0), fooled)
    favoured = s.draw(N, 0, weights, mix=0.5)
    assert share(favoured, fooled) > 3 * uniform_share
    assert s.draw(N, 0, weights, mix=0.5) == favoured  # reproducible for a seed
    # an untried cell keeps a smoothed rate of 1/2, so the rule still explores it
    assert curriculum_weights(Archive(), [fooled], CurriculumConfig(rule="still_fooled"))[fooled] == 0.5


def test_bad_weights_fail():
    s = sampler()
    with pytest.raises(ValueError, match="mix"):
        s.draw(4, 0, {c: 1.0 for c in s.cells}, mix=1.5)
    with pytest.raises(ValueError, match="finite and >= 0"):
        s.draw(4, 0, {s.cells[0]: -1.0})


@pytest.mark.parametrize(
    ("curriculum", "key"),
    [
        (CurriculumConfig(rule="hardest"), "game.curriculum.rule"),
        (CurriculumConfig(mix=1.5), "game.curriculum.mix"),
        (CurriculumConfig(temperature=0.0), "game.curriculum.temperature"),
    ],
)
def test_config_errors_name_the_key(curriculum, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        GameConfig(curriculum=curriculum).check("game")


def test_composed_config_takes_the_rule():
    from tests.conftest import compose

    cfg = compose(["output_dir=/tmp/x", "game.curriculum.rule=still_fooled", "game.curriculum.mix=0.25"], "game")
    assert cfg.game.curriculum.rule == CurriculumRule.still_fooled and cfg.game.curriculum.mix == 0.25
    assert compose(["output_dir=/tmp/x"], "game").game.curriculum.rule == CurriculumRule.uniform
    assert cell_of(record("en", "Hate", "direct")) == ("en", "Hate", "direct")
