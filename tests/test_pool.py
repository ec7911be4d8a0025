"""The pool: shards load with `datasets`, and a crash mid-write leaves earlier rounds intact."""

from __future__ import annotations

import pytest

import duoguard.data.pool as pool_module
from duoguard.data.pool import COLUMNS, Pool


def rows(round_index: int, n: int) -> list[dict]:
    return [
        {
            "id": f"r{round_index}-{i}", "text": f"prompt {round_index}.{i}", "language": "en",
            "categories": ["Hate"] if i % 2 else [], "unsafe": bool(i % 2), "attack_style": "direct",
            "round": round_index, "seed_id": "s1", "source": "duoguard-game", "guardrail_score": 0.25,
            "fooled": bool(i % 2), "judge_keep": True, "judge_reasons": "", "judge_rating": None, "reward": 1.5,
        }
        for i in range(n)
    ]  # fmt: skip


def load_with_datasets(root):
    from datasets import load_dataset

    return load_dataset("parquet", data_files=str(root / "round_*.parquet"), split="train")


def test_shards_round_trip_and_load_with_datasets(tmp_path):
    pool = Pool(tmp_path / "pool")
    pool.write_round(1, rows(1, 3))
    pool.write_round(2, rows(2, 2))
    assert pool.rounds() == [1, 2]
    ds = load_with_datasets(pool.root)
    assert ds.num_rows == 5 and set(COLUMNS) <= set(ds.column_names)
    samples = pool.samples()
    assert [s.unsafe for s in samples[:3]] == [False, True, False] and samples[1].categories == ["Hate"]
    assert samples[0].provenance == {"round": 1, "seed_id": "s1", "guardrail_score": 0.25}
    assert "prompt 2.1" in pool.texts()


def test_crash_while_writing_a_shard_keeps_earlier_shards(tmp_path, monkeypatch):
    pool = Pool(tmp_path / "pool")
    pool.write_round(1, rows(1, 3))
    import pyarrow.parquet as pq

    real_write = pq.write_table

    def half_write(table, where, **kw):
        real_write(table.slice(0, 1), where, **kw)
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", half_write)
    with pytest.raises(OSError, match="disk full"):
        pool.write_round(2, rows(2, 4))
    monkeypatch.undo()
    assert pool.rounds() == [1]
    assert sorted(p.name for p in pool.root.iterdir()) == ["manifest.json", "round_0001.parquet"]
    assert load_with_datasets(pool.root).num_rows == 3


def test_crash_between_shard_and_manifest_is_cleaned_on_resume(tmp_path, monkeypatch):
    pool = Pool(tmp_path / "pool")
    pool.write_round(1, rows(1, 3))

    def boom(*a, **kw):
        raise KeyboardInterrupt  # killed right after the shard's rename

    monkeypatch.setattr(pool_module, "write_json_atomic", boom)
    with pytest.raises(KeyboardInterrupt):
        pool.write_round(2, rows(2, 4))
    monkeypatch.undo()
    assert pool.rounds() == [1] and len(pool.rows()) == 3  # the manifest is the truth
    pool.truncate(1)  # what a resumed game does first
    assert sorted(p.name for p in pool.root.iterdir()) == ["manifest.json", "round_0001.parquet"]


def test_truncate_forgets_later_rounds_and_rewrite_replaces(tmp_path):
    pool = Pool(tmp_path / "pool")
    for r in (1, 2, 3):
        pool.write_round(r, rows(r, 2))
    pool.truncate(1)
    assert pool.rounds() == [1] and not (pool.root / "round_0002.parquet").exists()
    pool.write_round(1, rows(1, 1))
    assert len(pool.rows()) == 1
    with pytest.raises(ValueError, match="lack columns"):
        pool.write_round(4, [{"text": "x"}])
