"""Replacing a folder (a checkpoint, an exported model) never leaves neither copy on disk."""

from __future__ import annotations

import os

import pytest

from duoguard import atomic
from duoguard.atomic import atomic_dir


def fill(text: str):
    def build(tmp):
        (tmp / "weights.txt").write_text(text)

    return build


def test_a_failed_build_keeps_the_old_copy(tmp_path):
    atomic_dir(tmp_path / "ckpt", fill("old"))

    def broken(tmp):
        (tmp / "weights.txt").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_dir(tmp_path / "ckpt", broken, replace=True)
    assert (tmp_path / "ckpt" / "weights.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


@pytest.mark.parametrize("failing", [1, 2])
def test_a_failed_rename_keeps_one_whole_copy(tmp_path, monkeypatch, failing):
    """The replace is two renames (old aside, new in place); whichever fails, one copy stays at the path."""
    atomic_dir(tmp_path / "ckpt", fill("old"))
    calls = []
    real_rename = os.rename

    def rename(src, dst):
        calls.append((src, dst))
        if len(calls) == failing:
            raise OSError("rename failed")
        return real_rename(src, dst)

    monkeypatch.setattr(atomic.os, "rename", rename)
    with pytest.raises(OSError, match="rename failed"):
        atomic_dir(tmp_path / "ckpt", fill("new"), replace=True)
    assert (tmp_path / "ckpt" / "weights.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_a_crash_between_the_renames_is_repaired_by_the_next_write(tmp_path):
    atomic_dir(tmp_path / "ckpt", fill("old"))
    os.rename(tmp_path / "ckpt", tmp_path / ".ckpt.old")  # killed after moving the old copy aside
    atomic.restore_dir(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "weights.txt").read_text() == "old"
    os.rename(tmp_path / "ckpt", tmp_path / ".ckpt.old")
    atomic_dir(tmp_path / "ckpt", fill("new"), replace=True)
    assert (tmp_path / "ckpt" / "weights.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
