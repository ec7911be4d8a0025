"""Atomic writes: every artifact appears whole or not at all (temp file or folder + rename).

A crash mid-write leaves the previous version in place, so a run loses at most the work in
flight and a resumed run never reads half a checkpoint, shard or report.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def jsonable(value: Any) -> Any:
    """Plain JSON types: numpy/torch scalars unwrapped, NaN and inf as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        return jsonable(value.item())
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(jsonable(data), indent=2, ensure_ascii=False))


def atomic_dir(final: str | os.PathLike, build: Callable[[Path], None], *, replace: bool = False) -> Path:
    """Fill a temp folder beside `final` with `build(tmp)`, then rename it into place.

    Without `replace`, an existing `final` is kept (two processes building the same cached
    folder both succeed, one copy wins). With `replace`, the old folder is moved aside only after
    the new one is complete, and deleted only once the new one is in place: whatever step fails,
    one whole copy stays at `final` (a crash between the two renames leaves the old copy aside,
    put back by the next call for the same folder, or by `restore_dir`).
    """
    final = Path(final)
    restore_dir(final)
    if final.exists() and not replace:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    old = _aside(final)
    try:
        build(tmp)
        if final.exists():
            if not replace:
                return final
            shutil.rmtree(old, ignore_errors=True)
            os.rename(final, old)
        try:
            os.rename(tmp, final)
        except OSError:
            if old.exists():  # replacing, and the new copy did not land: the old one goes back
                if not final.exists():
                    os.rename(old, final)
                raise
            if not final.exists():
                raise  # else another process put its copy in place first: keep it
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _aside(final: Path) -> Path:
    return final.with_name(f".{final.name}.old")


def restore_dir(final: str | os.PathLike) -> None:
    """Put back the copy `atomic_dir` moved aside when a crash left no folder at `final`."""
    final = Path(final)
    old = _aside(final)
    if old.is_dir() and not final.exists():
        os.rename(old, final)


def link_or_copy(src: str, dst: str) -> str:
    """A hard link (no second copy on disk) where the filesystem allows one, else a copy. For
    `shutil.copytree(copy_function=...)` of files that are replaced, never written over, afterwards."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst
