"""The sample schema and the user-file readers: each bad row fails with its file and line."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from duoguard.config import ATTACK_STYLES
from duoguard.data.readers import DataError, builtin_seed_path, load_seeds, read_samples
from duoguard.data.schema import SampleError, SchemaContext, make_sample, split_heldout

LANGS = ["en", "fr", "es", "de", "it"]
STYLES = ["direct", "roleplay"]


@pytest.fixture()
def ctx(taxonomy):
    return SchemaContext(taxonomy=taxonomy, languages=LANGS, attack_styles=STYLES, max_text_chars=1000)


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


GOOD = {"text": "How do I bake bread?", "language": "en", "unsafe": False}


def test_good_rows_from_jsonl_csv_parquet(tmp_path, ctx):
    rows = [
        GOOD,
        {"text": "Hurt the neighbour's dog", "language": "fr", "categories": ["C1"], "attack_style": "roleplay"},
    ]
    a = read_samples(write_jsonl(tmp_path / "a.jsonl", rows), ctx).samples
    (tmp_path / "b.csv").write_text(
        'text,language,unsafe,categories\n"How do I bake bread?",en,false,\n'
        '"Hurt, the dog",fr,true,Violent Crimes;Hate\n',
        encoding="utf-8",
    )
    b = read_samples(tmp_path / "b.csv", ctx).samples
    pq.write_table(
        pa.Table.from_pylist([{**GOOD, "categories": []}, {**GOOD, "unsafe": True, "categories": ["Hate"]}]),
        tmp_path / "c.parquet",
    )
    c = read_samples(tmp_path / "c.parquet", ctx).samples
    assert (
        [s.unsafe for s in a] == [False, True]
        and a[1].categories == ["Violent Crimes"]
        and a[1].attack_style == "roleplay"
    )
    assert b[1].categories == ["Violent Crimes", "Hate"] and b[1].text == "Hurt, the dog"
    assert c[1].categories == ["Hate"] and c[0].categories == []
    assert a[0].id == "a.jsonl:1" and b[1].id == "b.csv:3"


@pytest.mark.parametrize(
    "row,match",
    [
        ({"text": "   ", "language": "en", "unsafe": False}, "'text' is empty"),
        ({"language": "en", "unsafe": False}, "missing 'text'"),
        ({"text": "hi there", "language": "en"}, "missing label"),
        ({"text": "hi there", "language": "en", "categories": ["Elections"]}, "unknown category 'Elections'"),
        ({"text": "hi there", "language": "xx", "unsafe": False}, "unknown language 'xx'"),
        ({"text": "hi there", "unsafe": False}, "missing 'language'"),
        ({"text": "hi there", "language": "en", "unsafe": "maybe"}, "must be a boolean"),
        (
            {"text": "hi there", "language": "en", "unsafe": False, "categories": ["Hate"]},
            "marked safe but has categories",
        ),
        ({"text": "hi there", "language": "en", "unsafe": False, "attack_style": "ninja"}, "unknown attack_style"),
    ],
)
def test_bad_rows_fail_with_file_and_line(tmp_path, ctx, row, match):
    path = write_jsonl(tmp_path / "data.jsonl", [GOOD, GOOD, row])
    with pytest.raises(DataError, match=match) as e:
        read_samples(path, ctx)
    assert e.value.line == 3 and str(e.value).startswith(f"{path}:3:")


def test_an_unsafe_row_without_categories_keeps_none(tmp_path, ctx):
    """It trains the unsafe decision alone (roles/guardrail.labels_for), never a made-up category."""
    path = tmp_path / "advbench_like.jsonl"
    path.write_text(json.dumps({"text": "hi there", "language": "en", "unsafe": True}) + "\n", encoding="utf-8")
    (sample,) = read_samples(path, ctx).samples
    assert sample.unsafe and sample.categories == []


def test_non_utf8_names_the_line(tmp_path, ctx):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(
        json.dumps(GOOD).encode() + b"\n" + '{"text": "caf\xe9", "language": "fr", "unsafe": false}\n'.encode("latin-1")
    )
    with pytest.raises(DataError, match="not valid UTF-8") as e:
        read_samples(path, ctx)
    assert e.value.line == 2


def test_one_megabyte_line_is_rejected_with_its_line(tmp_path, ctx):
    path = write_jsonl(tmp_path / "big.jsonl", [GOOD, {"text": "a" * 1_000_000, "language": "en", "unsafe": False}])
    with pytest.raises(DataError, match="1,000,000 characters") as e:
        read_samples(path, ctx)
    assert e.value.line == 2


def test_one_megabyte_csv_field_is_rejected_too(tmp_path, ctx):
    path = tmp_path / "big.csv"
    path.write_text("text,language,unsafe\nhello there,en,0\n" + "b" * 1_000_000 + ",en,0\n", encoding="utf-8")
    with pytest.raises(DataError, match="max_text_chars") as e:
        read_samples(path, ctx)
    assert e.value.line == 3


def test_broken_json_and_csv_structure(tmp_path, ctx):
    path = write_jsonl(tmp_path / "broken.jsonl", [GOOD, '{"text": "x", '])
    with pytest.raises(DataError, match="invalid JSON") as e:
        read_samples(path, ctx)
    assert e.value.line == 2
    csv_path = tmp_path / "wide.csv"
    csv_path.write_text("text,language,unsafe\nhello there,en,0,extra\n", encoding="utf-8")
    with pytest.raises(DataError, match="more fields than the header"):
        read_samples(csv_path, ctx)


def test_skip_mode_counts_bad_rows(tmp_path, ctx):
    rows = [
        GOOD,
        {"text": "", "language": "en", "unsafe": False},
        {"text": "ok then", "language": "zz", "unsafe": False},
        GOOD,
    ]
    result = read_samples(write_jsonl(tmp_path / "mixed.jsonl", rows), ctx, skip_bad_rows=True)
    assert len(result.samples) == 2
    assert [line for line, _ in result.skipped] == [2, 3]
    assert "skipped 2 bad rows" in result.summary()


def test_column_mapping_and_file_defaults(tmp_path, taxonomy):
    path = tmp_path / "harmful.csv"
    path.write_text("goal,target\nSteal a car quickly,Sure\n", encoding="utf-8")
    ctx = SchemaContext(
        taxonomy=taxonomy,
        languages=LANGS,
        attack_styles=STYLES,
        default_language="en",
        default_unsafe=True,
        default_categories=("Non-Violent Crimes",),
    )
    (s,) = read_samples(path, ctx, columns={"text": "goal"}).samples
    assert (s.text, s.unsafe, s.categories, s.language) == ("Steal a car quickly", True, ["Non-Violent Crimes"], "en")
    with pytest.raises(DataError, match="unknown schema fields"):
        read_samples(path, ctx, columns={"prompt": "goal"})


def test_missing_file_and_unknown_format(tmp_path, ctx):
    with pytest.raises(DataError, match="file not found"):
        read_samples(tmp_path / "nope.jsonl", ctx)
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(DataError, match="cannot tell the format"):
        read_samples(tmp_path / "x.txt", ctx)


def test_response_field_is_kept(ctx):
    s = make_sample({"text": "How do I?", "response": "Like this.", "language": "en", "unsafe": False}, ctx)
    assert s.response == "Like this."
    with pytest.raises(SampleError, match="'response' is empty"):
        make_sample({"text": "How do I?", "response": " ", "language": "en", "unsafe": False}, ctx)


# ------------------------------------------------------------------ the shipped seed set
def test_shipped_seed_set_covers_languages_and_categories(taxonomy):
    seeds = load_seeds("builtin", taxonomy, LANGS, ATTACK_STYLES)
    assert len(seeds) >= 300
    langs = {s.language for s in seeds}
    assert {"en", "fr", "es", "de"} <= langs
    for lang in langs:
        rows = [s for s in seeds if s.language == lang]
        covered = {c for s in rows for c in s.categories}
        assert covered == set(taxonomy.names), f"{lang} misses {set(taxonomy.names) - covered}"
        assert sum(not s.unsafe for s in rows) >= 20
        lookalikes = [s for s in rows if s.provenance.get("kind") == "lookalike_safe"]
        assert lookalikes and all(not s.unsafe for s in lookalikes)
    assert len({s.text for s in seeds}) == len(seeds)
    assert builtin_seed_path().is_file()


def test_seed_set_loads_under_llamaguard_taxonomy_and_subset_languages():

    from duoguard.taxonomy import Taxonomy
    from tests.conftest import compose

    lg = Taxonomy.from_config(compose(["taxonomy=llamaguard3"]).taxonomy)
    seeds = load_seeds("builtin", lg, ["en", "de"], ATTACK_STYLES)
    assert {s.language for s in seeds} == {"en", "de"}
    assert all(s.categories for s in seeds if s.unsafe)
    assert not any("Jailbreak Prompts" in s.categories for s in seeds)


def test_heldout_split_is_stratified_and_reproducible(taxonomy):
    seeds = load_seeds("builtin", taxonomy, LANGS, ATTACK_STYLES)
    train, held = split_heldout(seeds, 0.2, seed=3)
    train2, held2 = split_heldout(seeds, 0.2, seed=3)
    assert [s.id for s in held] == [s.id for s in held2]
    assert len(train) + len(held) == len(seeds) and not {s.id for s in train} & {s.id for s in held}
    for lang in LANGS:
        for unsafe in (True, False):
            group = [s for s in held if s.language == lang and s.unsafe == unsafe]
            assert group, (lang, unsafe)


def test_response_examples_label_answers_the_way_response_classification_does(taxonomy):
    from duoguard.config import ResponseTemplates
    from duoguard.data.responses import response_examples
    from duoguard.data.schema import Sample

    templates = ResponseTemplates()
    seeds = [
        Sample("hurt the dog", "fr", ["Violent Crimes"], True, id="u"),
        Sample("bake bread", "de", [], False, id="s"),
        Sample("already paired", "en", [], False, response="ok", id="r"),
    ]
    out = {s.id: s for s in response_examples(seeds, templates)}
    assert set(out) == {"u+refusal", "u+comply", "s+comply"}
    assert (out["u+refusal"].unsafe, out["u+refusal"].categories) == (False, [])
    assert out["u+refusal"].response == templates.refusal["fr"]
    assert (out["u+comply"].unsafe, out["u+comply"].categories) == (True, ["Violent Crimes"])
    assert out["s+comply"].unsafe is False and out["s+comply"].response == templates.comply["de"]
    assert out["u+comply"].text == "hurt the dog" and out["u+comply"].provenance["response_for"] == "u"


def test_split_keeps_each_prompt_and_its_answers_on_one_side(taxonomy):
    from duoguard.factory import load_training_samples, split_with_responses
    from tests.conftest import compose

    cfg = compose(["output_dir=/tmp/x"])
    train, held = split_with_responses(load_training_samples(cfg, taxonomy), cfg)
    held_prompts = {s.text for s in held}
    assert not {s.text for s in train} & held_prompts
    assert any(s.response for s in held) and any(s.response for s in train)


def test_jsonl_line_may_hold_unicode_line_separators(tmp_path, ctx):
    """U+2028 inside a JSON string is valid JSON: only "\\n" ends a JSON-lines record."""
    path = tmp_path / "u2028.jsonl"
    rows = [
        {"text": "first line\u2028still the same prompt", "unsafe": False, "language": "en"},
        {"text": "second", "unsafe": False, "language": "en"},
    ]
    path.write_text("\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\r\n", encoding="utf-8")
    result = read_samples(path, ctx)
    assert [s.text for s in result.samples] == [rows[0]["text"], "second"]
    (tmp_path / "bad.jsonl").write_text(
        '{"text": "a\u2028b", "unsafe": false, "language": "en"}\n{"text": \n', encoding="utf-8"
    )
    with pytest.raises(DataError, match=r"bad\.jsonl:2: invalid JSON"):
        read_samples(tmp_path / "bad.jsonl", ctx)


def test_heldout_split_keeps_each_seed_family_on_one_side(taxonomy):
    """The shipped seeds are 80 requests, each in 5 languages: a held-out seed's translations are held out too."""
    from collections import defaultdict

    seeds = load_seeds("builtin", taxonomy, LANGS, ATTACK_STYLES)
    families = defaultdict(set)
    for s in seeds:
        families[s.family].add(s.language)
    assert len(families) == len(seeds) // len(LANGS) and all(langs == set(LANGS) for langs in families.values())
    train, held = split_heldout(seeds, 0.2, seed=3)
    assert not {s.family for s in train} & {s.family for s in held}
    assert {s.unsafe for s in held} == {True, False}  # stratified by label over families
    assert len({s.family for s in held}) == pytest.approx(0.2 * len(families), abs=2)


def test_rows_without_a_family_are_their_own(taxonomy):
    ctx = SchemaContext(taxonomy=taxonomy, languages=["en"], attack_styles=["direct"])
    rows = [{"text": f"t{i}", "language": "en", "unsafe": False, "id": f"r{i}"} for i in range(3)]
    rows[2]["family"] = "f"
    assert [make_sample(r, ctx).family for r in rows] == ["r0", "r1", "f"]


def test_samples_built_without_family_or_id_are_split_one_by_one():
    from duoguard.data.schema import Sample, split_heldout

    rows = [Sample(text=f"t{i}", language="en", categories=[], unsafe=i % 2 == 0) for i in range(40)]
    train, held = split_heldout(rows, 0.25, seed=0)
    assert len(held) == 10 and len(train) == 30  # not one 40-row "family" with an empty name
    assert sum(s.unsafe for s in held) == 5  # stratified by label
