"""The pool: every round's accepted synthetic prompts, one parquet shard per round.

A shard is written to a temp file and renamed into place, then `manifest.json` (also written
atomically) records it. The manifest is the truth: a crash between the two leaves an orphan
shard that the next run's `truncate` removes, and a crash during either write leaves the
earlier shards and manifest untouched. A shard's rows are `PromptRecord` records (its
docstring and fields document the columns); shards load with
`datasets.load_dataset("parquet", data_files="pool/round_*.parquet")`.

Manifest version 2 (this shape) replaced version 1 (`categories` instead of `category`, so a
safe prompt's topic was lost, and the judge's reasons in one comma-separated string). A
version-1 pool is not read: every read or write stops with an error naming its manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from duoguard.atomic import write_json_atomic
from duoguard.data.record import PromptRecord, arrow_schema
from duoguard.data.schema import Sample
from duoguard.errors import UserError

MANIFEST = "manifest.json"
VERSION = 2


class PoolError(UserError):
    """A pool this version of duoguard cannot read."""


def normalise(text: str) -> str:
    return " ".join(text.casefold().split())


class Pool:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.is_file():
            return {"version": VERSION, "shards": []}
        manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        version = manifest.get("version", 1)
        if version != VERSION:
            raise PoolError(
                f"{self.manifest_path}: a version-{version} pool; this duoguard reads version {VERSION} only "
                "(columns: duoguard.data.record.PromptRecord). Play the game again into a new output_dir, "
                "or read this pool with the duoguard that wrote it"
            )
        return manifest

    def rounds(self) -> list[int]:
        return [s["round"] for s in self.manifest()["shards"]]

    def write_round(self, round_index: int, records: Sequence[PromptRecord]) -> Path:
        """Write (or rewrite) round `round_index`'s shard, then record it in the manifest."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        manifest = self.manifest()  # a pool of another version stops here, before anything is written
        bad = [type(r).__name__ for r in records if not isinstance(r, PromptRecord)]
        if bad:
            raise TypeError(f"pool rows must be PromptRecord records, got {sorted(set(bad))}")
        if any(not r.id for r in records):
            raise ValueError(f"pool records lack ids (round {round_index}): the game gives them on acceptance")
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"round_{round_index:04d}.parquet"
        table = pa.Table.from_pylist([r.to_row() for r in records], schema=arrow_schema())
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=self.root)
        os.close(fd)
        try:
            pq.write_table(table, tmp)
            with open(tmp, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
                os.fsync(f.fileno())
            os.replace(tmp, self.root / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        shards = [s for s in manifest["shards"] if s["round"] != round_index]
        shards.append({"round": round_index, "file": name, "rows": len(records), "sha256": digest})
        manifest["shards"] = sorted(shards, key=lambda s: s["round"])
        write_json_atomic(self.manifest_path, manifest)
        return self.root / name

    def truncate(self, last_round: int) -> None:
        """Forget rounds after `last_round` and delete shards the manifest does not list."""
        manifest = self.manifest()
        manifest["shards"] = [s for s in manifest["shards"] if s["round"] <= last_round]
        if self.root.is_dir():
            write_json_atomic(self.manifest_path, manifest)
            listed = {s["file"] for s in manifest["shards"]}
            for f in self.root.glob("*.parquet"):
                if f.name not in listed:
                    f.unlink()
            for f in self.root.glob(".round_*"):
                f.unlink()

    def records(self) -> list[PromptRecord]:
        """Every accepted prompt, round by round."""
        import pyarrow.parquet as pq

        out: list[PromptRecord] = []
        for shard in self.manifest()["shards"]:
            path = self.root / shard["file"]
            table = pq.read_table(path)
            if table.schema.names != arrow_schema().names:
                raise PoolError(f"{path}: columns {table.schema.names}, expected {arrow_schema().names}")
            out.extend(PromptRecord.from_row(row) for row in table.to_pylist())
        return out

    def samples(self) -> list[Sample]:
        """Accepted prompts as training samples (for the guardrail, and SafeDPO's prompts)."""
        return [r.to_sample() for r in self.records()]

    def texts(self) -> set[str]:
        return {normalise(r.text) for r in self.records()}
