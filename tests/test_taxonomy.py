from __future__ import annotations

import numpy as np
import pytest

from duoguard.config import CategoryConfig, TaxonomyConfig
from duoguard.taxonomy import Taxonomy, TaxonomyError
from tests.conftest import compose


def test_resolves_names_codes_and_case(taxonomy):
    assert taxonomy.resolve("C9") == "Hate"
    assert taxonomy.resolve("hate") == "Hate"
    assert taxonomy.resolve(" Suicide & Self-Harm ") == "Suicide & Self-Harm"
    assert len(taxonomy) == 12 and taxonomy.names[0] == "Violent Crimes" and taxonomy.names[-1] == "Jailbreak Prompts"


def test_unknown_label_lists_known(taxonomy):
    with pytest.raises(TaxonomyError, match="unknown category 'Elections'.*Violent Crimes"):
        taxonomy.resolve("Elections")


def test_encode_decode_round_trip(taxonomy):
    vec = taxonomy.encode(["Hate", "C1"])
    assert vec.dtype == np.float32 and vec.sum() == 2 and vec[0] == 1 and vec[8] == 1
    assert taxonomy.decode(vec) == ["Violent Crimes", "Hate"]
    assert taxonomy.encode([]).sum() == 0


def test_llamaguard_aliases_map_duoguard_labels():
    lg = Taxonomy.from_config(compose(["taxonomy=llamaguard3"]).taxonomy)
    assert lg.resolve("C5") == "Specialized Advice"  # DuoGuard's C5 is Llama Guard's S6
    assert lg.index("C5") == 5
    assert lg.resolve("Jailbreak Prompts") is None  # no place in this taxonomy: dropped
    assert lg.resolve_all(["Jailbreak Prompts", "Non-Violent Crimes"]) == ["Non-Violent Crimes"]


def test_bad_taxonomy_definitions_fail():
    with pytest.raises(TaxonomyError, match="duplicate"):
        Taxonomy.from_config(TaxonomyConfig("t", [CategoryConfig("A", "x"), CategoryConfig("B", "X")]))
    with pytest.raises(TaxonomyError, match="alias 'foo'"):
        Taxonomy.from_config(TaxonomyConfig("t", [CategoryConfig("A", "x")], aliases={"foo": "nope"}))
    with pytest.raises(TaxonomyError, match="no categories"):
        Taxonomy.from_config(TaxonomyConfig("t", []))
