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
    folder both succeed, one copy wins). With `replace`, the old folder is swapped out only
    after the new one is complete.
    """
    final = Path(final)
    if final.exists() and not replace:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    old = final.with_name(f".{final.name}.old")
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
            if not final.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return final
