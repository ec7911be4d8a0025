"""Loaders for public safety benchmarks in the formats their authors publish them.

Each loader turns a file (or folder) into `BenchmarkExample`s with a binary label; the label
rules follow the benchmarks' own definitions as DuoGuard applied them (REFERENCE §7):

| format              | file(s)                                   | unsafe when                         |
|---------------------|-------------------------------------------|-------------------------------------|
| `xstest`            | xstest_prompts.csv                        | `type` starts with `contrast_`      |
| `openai_moderation` | samples-1680.jsonl(.gz)                   | any of S,H,V,HR,SH,S3,H2,V2 is 1    |
| `toxicchat`         | toxic-chat_annotation_*.csv/jsonl/parquet | `toxicity` == 1                     |
| `beavertails`       | *.jsonl(.gz/.xz): prompt, response        | `is_safe` is false (response task)  |
| `xsafety`           | <lang>/<Category>.csv, headerless         | always (all prompts are unsafe)     |
| `rtp_lx`            | RTP_LX_<LOCALE>.json (JSON lines)         | mean human Toxicity > 1             |
| `multijail`         | MultiJail.csv, one column per language    | always                              |
| `jbb_artifacts`     | JailbreakBench attack artifact JSON       | `jailbroken` (response task)        |
| `samples`           | our sample schema (jsonl/csv/parquet)     | its `unsafe` field                  |
| `duoguard_seeds`    | the shipped seed set (`path: builtin`)    | its `unsafe` field                  |
"""

from __future__ import annotations

import ast
import csv
import inspect
import io
import json
import lzma
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from duoguard.data.readers import DataError, decode_utf8, iter_rows, read_bytes
from duoguard.data.schema import Sample, parse_bool


@dataclass
class BenchmarkExample:
    text: str
    unsafe: bool
    language: str
    response: str | None = None
    category: str | None = None  # the benchmark's own label, for breakdowns


@dataclass
class Benchmark:
    name: str
    examples: list[BenchmarkExample]
    task: str = "prompt"  # "prompt" or "response" classification
    source: str = ""


def _need(row: dict, keys: Sequence[str], path: Path, line: int) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise DataError(path, line, f"missing column(s) {missing}; found {sorted(row)}")


def _files(path: Path, pattern: str) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder")
    files = sorted(p for p in path.rglob(pattern) if p.is_file() and "test-artifact" not in p.parts)
    if not files:
        raise FileNotFoundError(f"{path}: no files matching {pattern}")
    return files


def _text_of(path: Path) -> str:
    raw = read_bytes(path)
    if path.suffix == ".xz":
        raw = lzma.decompress(raw)
    return decode_utf8(path, raw)


def load_xstest(path: Path, language: str | None) -> list[BenchmarkExample]:
    out = []
    for line, row in iter_rows(path, "csv"):
        _need(row, ("prompt", "type"), path, line)
        out.append(
            BenchmarkExample(row["prompt"], row["type"].startswith("contrast_"), language or "en", category=row["type"])
        )
    return out


MODERATION_FLAGS = ("S", "H", "V", "HR", "SH", "S3", "H2", "V2")


def load_openai_moderation(path: Path, language: str | None) -> list[BenchmarkExample]:
    out = []
    for line, row in iter_rows(path, "jsonl"):
        _need(row, ("prompt",), path, line)
        flags = [f for f in MODERATION_FLAGS if row.get(f) == 1]
        out.append(BenchmarkExample(row["prompt"], bool(flags), language or "en", category=",".join(flags) or None))
    return out


def load_toxicchat(path: Path, language: str | None, human_annotated_only: bool = False) -> list[BenchmarkExample]:
    out = []
    for line, row in iter_rows(path):
        _need(row, ("user_input", "toxicity"), path, line)
        if human_annotated_only and not parse_bool(row.get("human_annotation", False), "human_annotation"):
            continue
        jailbreak = row.get("jailbreaking", row.get("jailbreak"))
        out.append(
            BenchmarkExample(
                row["user_input"],
                int(row["toxicity"]) == 1,
                language or "en",
                category="jailbreaking" if str(jailbreak) == "1" else None,
            )
        )
    return out


def load_beavertails(path: Path, language: str | None) -> list[BenchmarkExample]:
    out = []
    for file in _files(path, "*.jsonl*"):
        for line, raw in enumerate(_text_of(file).split("\n"), start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as e:
                raise DataError(file, line, f"invalid JSON: {e.msg}") from None
            _need(row, ("prompt", "response", "is_safe"), file, line)
            cats = [k for k, v in (row.get("category") or {}).items() if v]
            out.append(
                BenchmarkExample(
                    row["prompt"],
                    not parse_bool(row["is_safe"], "is_safe"),
                    language or "en",
                    response=row["response"],
                    category=";".join(cats) or None,
                )
            )
    return out


XSAFETY_LANGUAGES = {"sp": "es"}  # the release names Spanish "sp"


def load_xsafety(path: Path, language: str | None) -> list[BenchmarkExample]:
    out = []
    for file in _files(path, "*.csv"):
        lang = language or XSAFETY_LANGUAGES.get(file.parent.name, file.parent.name)
        category = file.stem.removesuffix("_n").removesuffix("_en")
        for row in csv.reader(io.StringIO(_text_of(file), newline="")):
            text = next((cell for cell in row if cell.strip()), None)
            if text:
                out.append(BenchmarkExample(text, True, lang, category=category))
    return out


def _toxicity(row: dict[str, Any]) -> float | None:
    for key in ("PromptAnnotations", "Annotations"):
        ann = row.get(key)
        if isinstance(ann, dict) and ann.get("Toxicity") is not None:
            value = ann["Toxicity"]
            return sum(value) / len(value) if isinstance(value, list) else float(value)
    for key in ("PromptAnnotationsRaw", "AnnotationsRaw"):
        raw = row.get(key)
        if isinstance(raw, dict) and raw.get("Toxicity"):
            return sum(raw["Toxicity"]) / len(raw["Toxicity"])
    return None


def load_rtp_lx(path: Path, language: str | None, toxicity_threshold: float = 1.0) -> list[BenchmarkExample]:
    out = []
    for file in _files(path, "RTP_LX_*.json*"):
        lang = language or file.name.split(".")[0].removeprefix("RTP_LX_").lower()
        # split on "\n" only: prompts may hold U+2028, which str.splitlines() would cut at
        for line, raw in enumerate(_text_of(file).split("\n"), start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as e:
                raise DataError(file, line, f"invalid JSON: {e.msg}") from None
            _need(row, ("Prompt",), file, line)
            tox = _toxicity(row)
            if tox is None:
                raise DataError(file, line, "no Toxicity annotation (PromptAnnotations or Annotations)")
            out.append(BenchmarkExample(row["Prompt"], tox > toxicity_threshold, lang, category=f"toxicity={tox:.2f}"))
    return out


def load_multijail(path: Path, language: str | None, languages: Sequence[str] | None = None) -> list[BenchmarkExample]:
    out = []
    meta = {"id", "source", "tags"}
    for line, row in iter_rows(path, "csv"):
        cols = [c for c in row if c not in meta and (languages is None or c in languages)]
        if not cols:
            raise DataError(path, line, "no language columns")
        try:
            tags = ast.literal_eval(row.get("tags") or "[]")
        except (ValueError, SyntaxError):
            tags = [row.get("tags")]
        for lang in cols:
            if (row[lang] or "").strip():
                out.append(BenchmarkExample(row[lang], True, lang, category=";".join(map(str, tags)) or None))
    return out


def load_jbb_artifacts(path: Path, language: str | None) -> list[BenchmarkExample]:
    out = []
    for file in _files(path, "*.json"):
        try:
            data = json.loads(_text_of(file))
        except json.JSONDecodeError as e:
            raise DataError(file, e.lineno, f"invalid JSON: {e.msg}") from None
        if not isinstance(data, dict) or "jailbreaks" not in data:
            if path.is_dir():
                continue  # attack-info.json and friends sit beside the artifacts
            raise DataError(file, None, "not a JailbreakBench artifact (no 'jailbreaks' list)")
        for rec in data["jailbreaks"]:
            if rec.get("prompt") is None or rec.get("response") is None:
                continue  # attacks that produced nothing
            out.append(
                BenchmarkExample(
                    rec["prompt"],
                    bool(rec.get("jailbroken")),
                    language or "en",
                    response=rec["response"],
                    category=rec.get("category"),
                )
            )
    return out


def load_samples_file(path: Path, language: str | None) -> list[BenchmarkExample]:
    out = []
    for line, row in iter_rows(path):
        _need(row, ("text", "unsafe"), path, line)
        out.append(
            BenchmarkExample(
                row["text"],
                parse_bool(row["unsafe"], "unsafe"),
                row.get("language") or language or "und",
                response=row.get("response") or None,
            )
        )
    return out


def load_duoguard_seeds(path: Path, language: str | None) -> list[BenchmarkExample]:
    """duoguard's own seed set (path `builtin` or a seed file); its safe rows include XSTest-style
    look-alikes, which makes it the offline over-refusal set."""
    out = []
    for line, row in iter_rows(path, "jsonl"):
        _need(row, ("text", "unsafe", "language"), path, line)
        if language is None or row["language"] == language:
            kind = (row.get("provenance") or {}).get("kind")
            out.append(
                BenchmarkExample(row["text"], parse_bool(row["unsafe"], "unsafe"), row["language"], category=kind)
            )
    return out


LOADERS: dict[str, Callable[..., list[BenchmarkExample]]] = {
    "xstest": load_xstest,
    "openai_moderation": load_openai_moderation,
    "toxicchat": load_toxicchat,
    "beavertails": load_beavertails,
    "xsafety": load_xsafety,
    "rtp_lx": load_rtp_lx,
    "multijail": load_multijail,
    "jbb_artifacts": load_jbb_artifacts,
    "samples": load_samples_file,
    "duoguard_seeds": load_duoguard_seeds,
}
RESPONSE_FORMATS = {"beavertails", "jbb_artifacts"}


def load_benchmark(
    name: str,
    fmt: str,
    path: str | Path,
    *,
    language: str | None = None,
    limit: int | None = None,
    **options: Any,
) -> Benchmark:
    if fmt not in LOADERS:
        raise ValueError(f"unknown benchmark format '{fmt}' (known: {', '.join(LOADERS)})")
    allowed = [p for p in inspect.signature(LOADERS[fmt]).parameters if p not in ("path", "language")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for benchmark format '{fmt}' (known: {allowed or 'none'})")
    if fmt == "duoguard_seeds" and str(path) == "builtin":
        from duoguard.data.readers import builtin_seed_path

        path = builtin_seed_path()
    path = Path(str(path)).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: benchmark file not found")
    examples = LOADERS[fmt](path, language, **options)
    if not examples:
        raise DataError(path, None, f"no examples read for benchmark '{name}' ({fmt})")
    if limit is not None:
        examples = examples[:limit]
    task = "response" if fmt in RESPONSE_FORMATS or any(e.response for e in examples) else "prompt"
    return Benchmark(name=name, examples=examples, task=task, source=str(path))


def samples_benchmark(name: str, samples: Sequence[Sample]) -> Benchmark:
    """Our own samples (e.g. the held-out split) as a benchmark."""
    examples = [BenchmarkExample(s.text, s.unsafe, s.language, response=s.response) for s in samples]
    task = "response" if any(e.response for e in examples) else "prompt"
    return Benchmark(name=name, examples=examples, task=task, source="samples")
