"""The pool: every round's accepted synthetic prompts, one parquet shard per round.

A shard is written to a temp file and renamed into place, then `manifest.json` (also written
atomically) records it. The manifest is the truth: a crash between the two leaves an orphan
shard that the next run's `truncate` removes, and a crash during either write leaves the
earlier shards and manifest untouched. Shards load with
`datasets.load_dataset("parquet", data_files="pool/round_*.parquet")`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from duoguard.atomic import write_json_atomic
from duoguard.data.schema import Sample

MANIFEST = "manifest.json"
COLUMNS = {
    "id": "string",
    "text": "string",
    "language": "string",
    "categories": "list<string>",
    "unsafe": "bool",
    "attack_style": "string",
    "round": "int32",
    "seed_id": "string",
    "source": "string",
    "guardrail_score": "float",  # P(unsafe) from the frozen guardrail when the candidate was made
    "fooled": "bool",  # the guardrail's decision differed from the intended label
    "judge_keep": "bool",
    "judge_reasons": "string",
    "judge_rating": "float",
    "reward": "float",
}


def _schema():
    import pyarrow as pa

    types = {
        "string": pa.string(), "bool": pa.bool_(), "int32": pa.int32(), "float": pa.float32(),
        "list<string>": pa.list_(pa.string()),
    }  # fmt: skip
    return pa.schema([(name, types[t]) for name, t in COLUMNS.items()])


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
            return {"version": 1, "shards": []}
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def rounds(self) -> list[int]:
        return [s["round"] for s in self.manifest()["shards"]]

    def write_round(self, round_index: int, rows: Sequence[Mapping[str, Any]]) -> Path:
        """Write (or rewrite) round `round_index`'s shard, then record it in the manifest."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.root.mkdir(parents=True, exist_ok=True)
        name = f"round_{round_index:04d}.parquet"
        missing = [c for c in COLUMNS if rows and c not in rows[0]]
        if missing:
            raise ValueError(f"pool rows lack columns {missing}")
        table = pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in rows], schema=_schema())
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
        manifest = self.manifest()
        shards = [s for s in manifest["shards"] if s["round"] != round_index]
        shards.append({"round": round_index, "file": name, "rows": len(rows), "sha256": digest})
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

    def rows(self) -> list[dict[str, Any]]:
        import pyarrow.parquet as pq

        out: list[dict[str, Any]] = []
        for shard in self.manifest()["shards"]:
            out.extend(pq.read_table(self.root / shard["file"]).to_pylist())
        return out

    def samples(self) -> list[Sample]:
        """Accepted rows as training samples for the guardrail."""
        return [
            Sample(
                text=r["text"],
                language=r["language"],
                categories=list(r["categories"] or []),
                unsafe=bool(r["unsafe"]),
                attack_style=r["attack_style"],
                source=r["source"],
                id=r["id"],
                provenance={"round": r["round"], "seed_id": r["seed_id"], "guardrail_score": r["guardrail_score"]},
            )
            for r in self.rows()
        ]

    def texts(self) -> set[str]:
        return {normalise(r["text"]) for r in self.rows()}
