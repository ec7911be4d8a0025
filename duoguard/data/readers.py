"""Readers for users' sample files (jsonl, csv, parquet) and the shipped seed set.

Each row is checked by `make_sample`. A bad row stops the read with `path:line: reason`
(`data.on_bad_row: fail`, the default) or is skipped and counted (`skip`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from duoguard.config import DataFileConfig
from duoguard.data.schema import Sample, SampleError, SchemaContext, make_sample
from duoguard.errors import UserError
from duoguard.taxonomy import Taxonomy

log = logging.getLogger(__name__)

FORMATS = ("jsonl", "csv", "parquet")
SCHEMA_FIELDS = (
    "id",
    "family",
    "text",
    "response",
    "language",
    "categories",
    "unsafe",
    "attack_style",
    "source",
    "provenance",
)


class DataError(UserError):
    """A data file that cannot be used; the message starts with `path:line:`."""

    def __init__(self, path: str | Path, line: int | None, reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")


@dataclass
class ReadResult:
    samples: list[Sample]
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line, reason) of skipped rows
    path: str = ""

    def summary(self) -> str:
        msg = f"{self.path}: {len(self.samples)} rows"
        if self.skipped:
            line, reason = self.skipped[0]
            msg += f", skipped {len(self.skipped)} bad rows (first: line {line}: {reason})"
        return msg


def infer_format(path: str | Path, fmt: str | None = None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise DataError(path, None, f"unknown format '{fmt}' (known: {', '.join(FORMATS)})")
        return fmt
    name = str(path).lower().removesuffix(".gz")
    for suffix, found in ((".jsonl", "jsonl"), (".json", "jsonl"), (".csv", "csv"), (".parquet", "parquet")):
        if name.endswith(suffix):
            return found
    raise DataError(path, None, "cannot tell the format from the file name: set `format` (jsonl, csv or parquet)")


def decode_utf8(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(path, line, f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {col})") from None


def read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise DataError(path, None, "file not found")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        import gzip

        raw = gzip.decompress(raw)
    return raw


def json_lines(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    """(line number, object) for each non-empty line of JSON-lines `text` read from `path`.
    Split on "\n" only: a JSON string may hold U+2028, where str.splitlines() would cut."""
    for i, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield i, json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, i, f"invalid JSON: {e.msg} (column {e.colno})") from None


def iter_rows(path: str | Path, fmt: str | None = None) -> Iterator[tuple[int, Any]]:
    """Yield (line or row number, raw row) from a jsonl, csv or parquet file.

    Errors in the file's structure (bad UTF-8, broken JSON, a bad CSV quote) raise DataError
    with the line; what a row *means* is checked by the caller.
    """
    path = Path(path)
    fmt = infer_format(path, fmt)
    if fmt == "parquet":
        if not path.is_file():
            raise DataError(path, None, "file not found")
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:  # pyarrow raises several types for a damaged file
            raise DataError(path, None, f"cannot read parquet: {e}") from None
        for i, row in enumerate(table.to_pylist(), start=1):
            yield i, row
        return
    text = decode_utf8(path, read_bytes(path))
    if fmt == "jsonl":
        if path.name.lower().removesuffix(".gz").endswith(".json") and text.lstrip().startswith("["):
            try:
                rows = json.loads(text)
            except json.JSONDecodeError as e:
                raise DataError(path, e.lineno, f"invalid JSON: {e.msg}") from None
            for i, row in enumerate(rows, start=1):
                yield i, row
            return
        yield from json_lines(path, text)
        return
    # csv: the decoded text is parsed in memory, so a line number comes from the reader
    csv.field_size_limit(sys.maxsize)  # length is checked by the schema, with a clearer message
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        for row in reader:
            if None in row:
                raise DataError(
                    path, reader.line_num, f"row has more fields than the header ({len(reader.fieldnames or [])})"
                )
            yield reader.line_num, row
    except csv.Error as e:
        raise DataError(path, reader.line_num, f"bad CSV: {e}") from None


def _rename(row: Mapping[str, Any], columns: Mapping[str, str]) -> dict[str, Any]:
    """Map file columns onto schema fields (`columns` is schema field -> file column)."""
    out = {k: v for k, v in row.items() if k in SCHEMA_FIELDS}
    for schema_field, column in columns.items():
        out[schema_field] = row.get(column)
    return out


def read_samples(
    path: str | Path,
    ctx: SchemaContext,
    *,
    fmt: str | None = None,
    columns: Mapping[str, str] | None = None,
    skip_bad_rows: bool = False,
    limit: int | None = None,
) -> ReadResult:
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(SCHEMA_FIELDS))
    if unknown:
        raise DataError(
            path, None, f"`columns` maps unknown schema fields {unknown} (known: {', '.join(SCHEMA_FIELDS)})"
        )
    result = ReadResult(samples=[], path=str(path))
    stem = Path(path).name
    for line, raw in iter_rows(path, fmt):
        try:
            if not isinstance(raw, Mapping):
                raise SampleError(f"row must be an object with named fields, got {type(raw).__name__}")
            sample = make_sample(_rename(raw, columns), ctx, row_id=f"{stem}:{line}")
        except SampleError as e:
            if not skip_bad_rows:
                raise DataError(path, line, str(e)) from None
            result.skipped.append((line, str(e)))
            continue
        result.samples.append(sample)
        if limit is not None and len(result.samples) >= limit:
            break
    if result.skipped:
        log.warning(result.summary())
    return result


BUILTIN_SEEDS = "builtin"


def builtin_seed_path() -> Path:
    return Path(str(resources.files("duoguard.data").joinpath("seeds/seed_prompts.jsonl")))


def builtin_seed_texts() -> list[str]:
    """Texts of the shipped seed set: the fixed corpus the tiny offline tokenizer is trained on."""
    lines = builtin_seed_path().read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines if line.strip()]


def load_seeds(
    seeds: str | None,
    taxonomy: Taxonomy,
    languages: Sequence[str],
    attack_styles: Sequence[str],
    max_text_chars: int = 20_000,
) -> list[Sample]:
    """The seed set: the shipped one ("builtin"), a user file, or none.

    The shipped set covers more languages than a run may configure; its rows in other
    languages are left out (and counted) rather than treated as errors.
    """
    if not seeds:
        return []
    path = builtin_seed_path() if seeds == BUILTIN_SEEDS else Path(seeds).expanduser()
    known_languages = list(languages)
    if seeds == BUILTIN_SEEDS:
        known_languages = sorted({*languages, "en", "fr", "es", "de", "it"})
    ctx = SchemaContext(
        taxonomy=taxonomy,
        languages=known_languages,
        attack_styles=attack_styles,
        max_text_chars=max_text_chars,
        source="duoguard-seed" if seeds == BUILTIN_SEEDS else path.name,
    )
    samples = read_samples(path, ctx).samples
    kept = [s for s in samples if s.language in languages]
    if len(kept) < len(samples):
        log.info("seed set: using %d of %d rows (languages %s)", len(kept), len(samples), ", ".join(languages))
    return kept


def load_train_files(
    file_cfgs: Sequence[DataFileConfig], ctx: SchemaContext, skip_bad_rows: bool, key: str = "data.train_files"
) -> list[Sample]:
    """Read every file of a `data.train_files`-style list (`key` names it in errors)."""
    samples: list[Sample] = []
    for i, f in enumerate(file_cfgs):
        path = Path(f.path).expanduser()
        file_ctx = SchemaContext(
            taxonomy=ctx.taxonomy,
            languages=ctx.languages,
            attack_styles=ctx.attack_styles,
            max_text_chars=ctx.max_text_chars,
            default_language=f.language,
            default_unsafe=f.unsafe,
            default_categories=tuple(f.categories),
            source=f.source or path.name,
        )
        try:
            result = read_samples(
                path,
                file_ctx,
                fmt=f.format.value if f.format else None,
                columns=f.columns,
                skip_bad_rows=skip_bad_rows,
                limit=f.limit,
            )
        except DataError as e:
            raise DataError(e.path, e.line, f"{e.reason} ({key}[{i}])") from None
        log.info(result.summary())
        samples.extend(result.samples)
    return samples
