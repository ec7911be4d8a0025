"""The pool: shards load with `datasets`, and a crash mid-write leaves earlier rounds intact."""

from __future__ import annotations

import json
import re
from dataclasses import fields, replace

import pytest

import duoguard.data.pool as pool_module
from duoguard.data.pool import Pool, PoolError
from duoguard.data.record import PromptRecord, Verdict, arrow_schema
from duoguard.data.schema import Sample


def records(round_index: int, n: int) -> list[PromptRecord]:
    """Accepted prompts of one round; odd ones unsafe, all about hate (the safe ones as their topic)."""
    return [
        PromptRecord(
            id=f"r{round_index}-{i}",
            text=f"prompt {round_index}.{i}",
            language="en",
            category="Hate",
            attack_style="direct",
            unsafe=bool(i % 2),
            seed_id="s1",
            round=round_index,
            guardrail_score=0.25,
            fooled=bool(i % 2),
            judge=Verdict(keep=True),
            reward=1.5,
        )
        for i in range(n)
    ]


def load_with_datasets(root):
    from datasets import load_dataset

    return load_dataset("parquet", data_files=str(root / "round_*.parquet"), split="train")


def test_shards_round_trip_and_load_with_datasets(tmp_path):
    pool = Pool(tmp_path / "pool")
    pool.write_round(1, records(1, 3))
    pool.write_round(2, records(2, 2))
    assert pool.rounds() == [1, 2]
    ds = load_with_datasets(pool.root)
    assert ds.num_rows == 5 and ds.column_names == arrow_schema().names  # the documented columns, in order
    assert ds[1]["judge"] == {"keep": True, "reasons": [], "rating": None} and ds[1]["category"] == "Hate"
    samples = pool.samples()
    assert [s.unsafe for s in samples[:3]] == [False, True, False] and samples[1].categories == ["Hate"]
    assert samples[0].categories == []
    assert samples[0].provenance == {"round": 1, "seed_id": "s1", "guardrail_score": 0.25, "topic": "Hate"}
    assert samples[1].provenance == {"round": 1, "seed_id": "s1", "guardrail_score": 0.25}
    assert "prompt 2.1" in pool.texts()


def test_crash_while_writing_a_shard_keeps_earlier_shards(tmp_path, monkeypatch):
    pool = Pool(tmp_path / "pool")
    pool.write_round(1, records(1, 3))
    import pyarrow.parquet as pq

    real_write = pq.write_table

    def half_write(table, where, **kw):
        real_write(table.slice(0, 1), where, **kw)
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", half_write)
    with pytest.raises(OSError, match="disk full"):
        pool.write_round(2, records(2, 4))
    monkeypatch.undo()
    assert pool.rounds() == [1]
    assert sorted(p.name for p in pool.root.iterdir()) == ["manifest.json", "round_0001.parquet"]
    assert load_with_datasets(pool.root).num_rows == 3


def test_crash_between_shard_and_manifest_is_cleaned_on_resume(tmp_path, monkeypatch):
    pool = Pool(tmp_path / "pool")
    pool.write_round(1, records(1, 3))

    def boom(*a, **kw):
        raise KeyboardInterrupt  # killed right after the shard's rename

    monkeypatch.setattr(pool_module, "write_json_atomic", boom)
    with pytest.raises(KeyboardInterrupt):
        pool.write_round(2, records(2, 4))
    monkeypatch.undo()
    assert pool.rounds() == [1] and len(pool.records()) == 3  # the manifest is the truth
    pool.truncate(1)  # what a resumed game does first
    assert sorted(p.name for p in pool.root.iterdir()) == ["manifest.json", "round_0001.parquet"]


def test_truncate_forgets_later_rounds_and_rewrite_replaces(tmp_path):
    pool = Pool(tmp_path / "pool")
    for r in (1, 2, 3):
        pool.write_round(r, records(r, 2))
    pool.truncate(1)
    assert pool.rounds() == [1] and not (pool.root / "round_0002.parquet").exists()
    pool.write_round(1, records(1, 1))
    assert len(pool.records()) == 1
    with pytest.raises(TypeError, match="must be PromptRecord records, got \\['dict'\\]"):
        pool.write_round(4, [{"text": "x"}])
    with pytest.raises(ValueError, match="lack ids"):
        pool.write_round(4, [replace(records(4, 1)[0], id="")])
    assert pool.rounds() == [1]


def test_an_intended_safe_candidates_category_survives_the_pool_round_trip(tmp_path):
    pool = Pool(tmp_path / "pool")
    (safe,) = records(1, 1)
    pool.write_round(1, [replace(safe, unsafe=False, category="Violent Crimes")])
    (back,) = pool.records()
    assert back.unsafe is False and back.category == "Violent Crimes"
    sample = back.to_sample()
    assert sample.categories == [] and not sample.unsafe
    assert sample.provenance["topic"] == "Violent Crimes"  # what the condition sampler pairs safe seeds by
    assert pool.samples() == [sample]


def test_every_field_survives_the_pool_round_trip(tmp_path):
    record = PromptRecord(
        id="r0003-00007",
        text="Écris une histoire où « quelqu'un » …",
        language="fr",
        category="Violent Crimes",
        attack_style="story",
        unsafe=True,
        seed_id="aegis-42",
        family="seed-0042",
        round=3,
        step=5,
        guardrail_score=0.125,
        fooled=True,
        judge=Verdict(keep=False, reasons=["length", "language"], rating=2.5),
        reward=-0.75,
        source="somewhere",
        provenance={"generator": "tiny", "nested": {"a": [1, 2]}},
    )
    assert [f.name for f in fields(PromptRecord)] == arrow_schema().names
    pool = Pool(tmp_path / "pool")
    pool.write_round(3, [record])
    assert pool.records() == [record]
    assert PromptRecord.from_row(record.to_row()) == record
    assert pool.samples() == [
        Sample(
            text=record.text,
            language="fr",
            categories=["Violent Crimes"],
            unsafe=True,
            attack_style="story",
            source="somewhere",
            id="r0003-00007",
            provenance={
                "generator": "tiny",
                "nested": {"a": [1, 2]},
                "round": 3,
                "seed_id": "aegis-42",
                "guardrail_score": 0.125,
            },
            family="seed-0042",  # a rewrite belongs to its seed's family
        )
    ]


def test_a_version_1_pool_fails_naming_its_manifest(tmp_path):
    pool = Pool(tmp_path / "pool")
    pool.write_round(1, records(1, 2))
    manifest = json.loads(pool.manifest_path.read_text())
    pool.manifest_path.write_text(json.dumps({**manifest, "version": 1}))
    for read in (pool.records, pool.samples, pool.texts, lambda: pool.write_round(2, records(2, 1))):
        with pytest.raises(
            PoolError, match=rf"{re.escape(str(pool.manifest_path))}: a version-1 pool.*reads version 2"
        ):
            read()
