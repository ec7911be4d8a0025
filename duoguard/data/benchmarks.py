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
| `jbb_artifacts`     | JailbreakBench attack artifact JSON       | `jailbroken` (response task); with  |
|                     |                                           | `attack_prompts: true` every prompt |
| `jbb_behaviors`     | jbb_behaviors_harmful.csv (`Goal`), or    | always (CSV; `unsafe: false` for    |
|                     | the `[{text, label}]` JSON list           | benign-behaviors.csv); JSON `label` |
| `advbench`          | harmful_behaviors.csv: `goal,target`      | always                              |
| `harmbench`         | harmbench_behaviors_text_*.csv            | always (category = SemanticCategory)|
| `samples`           | our sample schema (jsonl/csv/parquet)     | its `unsafe` field                  |
| `duoguard_seeds`    | the shipped seed set (`path: builtin`)    | its `unsafe` field                  |
| `duoguard_eval_data`| DuoGuard's evaluation release: a folder of| `class` / `moderation_flag` is 1;   |
|                     | language folders (`eval_data_En/`, `fr/`) | XSTest and BeaverTails as above     |
|                     | with one file per benchmark; option       | (BeaverTails scored as prompt + " " |
|                     | `benchmark` picks the file                | + response, as DuoGuard did)        |
| `table`             | any csv/json/jsonl/parquet, its columns   | `columns.label` is true/1/unsafe, or|
|                     | named by `columns`                        | one of `unsafe_values`              |
"""

from __future__ import annotations

import ast
import csv
import inspect
import io
import itertools
import json
import lzma
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from duoguard.config.evaluation import TABLE_COLUMNS
from duoguard.data.readers import DataError, decode_utf8, iter_rows, json_lines, read_bytes
from duoguard.data.schema import Sample, SampleError, parse_bool
from duoguard.errors import UserError


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
    if not isinstance(row, dict):
        raise DataError(path, line, f"expected a row with named fields (a JSON object), got {type(row).__name__}")
    missing = [k for k in keys if k not in row]
    if missing:
        raise DataError(path, line, f"missing column(s) {missing}; found {sorted(row)}")


def _bool(value: Any, key: str, path: Path, line: int | None, **kw: Any) -> bool:
    try:
        return parse_bool(value, key, **kw)
    except SampleError as e:
        raise DataError(path, line, str(e)) from None


def _text(row: dict, key: str, path: Path, line: int | None) -> str:
    value = row[key]
    if not isinstance(value, str) or not value.strip():
        raise DataError(path, line, f"'{key}' must be non-empty text, got {value!r}")
    return value


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
    try:
        raw = read_bytes(path)
        if path.suffix == ".xz":
            raw = lzma.decompress(raw)
    except (OSError, EOFError, lzma.LZMAError) as e:  # a damaged .gz / .xz, or an unreadable file
        raise DataError(path, None, f"cannot read: {e}") from None
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
        if human_annotated_only and not _bool(row.get("human_annotation", False), "human_annotation", path, line):
            continue
        jailbreak = row.get("jailbreaking", row.get("jailbreak"))
        try:
            toxicity = float(row["toxicity"])  # "1" in CSV, 1 in JSON, 1.0 in parquet
        except (TypeError, ValueError):
            toxicity = None
        if toxicity not in (0.0, 1.0):
            raise DataError(path, line, f"'toxicity' must be 0 or 1, got {row['toxicity']!r}")
        out.append(
            BenchmarkExample(
                row["user_input"],
                toxicity == 1.0,
                language or "en",
                category="jailbreaking" if str(jailbreak) == "1" else None,
            )
        )
    return out


def load_beavertails(path: Path, language: str | None) -> list[BenchmarkExample]:
    out = []
    for file in _files(path, "*.jsonl*"):
        for line, row in json_lines(file, _text_of(file)):
            _need(row, ("prompt", "response", "is_safe"), file, line)
            cats = [k for k, v in (row.get("category") or {}).items() if v]
            out.append(
                BenchmarkExample(
                    row["prompt"],
                    not _bool(row["is_safe"], "is_safe", file, line, true_word="safe"),
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
        reader = csv.reader(io.StringIO(_text_of(file), newline=""))
        try:
            for row in reader:
                text = next((cell for cell in row if cell.strip()), None)
                if text:
                    out.append(BenchmarkExample(text, True, lang, category=category))
        except csv.Error as e:
            raise DataError(file, reader.line_num, f"bad CSV: {e}") from None
    return out


def _mean_score(value: Any) -> float:
    """A Toxicity aggregate (a number) or raw annotator scores (a non-empty list of numbers)."""
    scores = value if isinstance(value, list) else [value]
    try:
        if not scores or any(isinstance(v, bool) for v in scores):
            raise ValueError
        return sum(float(v) for v in scores) / len(scores)
    except (TypeError, ValueError):
        raise ValueError(f"Toxicity must be a number or a non-empty list of numbers, got {value!r}") from None


def _toxicity(row: dict[str, Any], path: Path, line: int) -> float | None:
    for key in ("PromptAnnotations", "Annotations", "PromptAnnotationsRaw", "AnnotationsRaw"):
        ann = row.get(key)
        if isinstance(ann, dict) and ann.get("Toxicity") not in (None, []):
            try:
                return _mean_score(ann["Toxicity"])
            except ValueError as e:
                raise DataError(path, line, f"{key}: {e}") from None
    return None


def load_rtp_lx(path: Path, language: str | None, toxicity_threshold: float = 1.0) -> list[BenchmarkExample]:
    out = []
    for file in _files(path, "RTP_LX_*.json*"):
        lang = language or file.name.split(".")[0].removeprefix("RTP_LX_").lower()
        for line, row in json_lines(file, _text_of(file)):
            _need(row, ("Prompt",), file, line)
            tox = _toxicity(row, file, line)
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


def load_jbb_artifacts(path: Path, language: str | None, attack_prompts: bool = False) -> list[BenchmarkExample]:
    """Attack artifacts: (prompt, response) labelled by the JailbreakBench judge's `jailbroken`.
    `attack_prompts: true` reads the attack prompts alone, all unsafe (an attack set for target ASR)."""
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
        if not isinstance(data["jailbreaks"], list):
            raise DataError(file, None, f"'jailbreaks' must be a list, got {type(data['jailbreaks']).__name__}")
        for i, rec in enumerate(data["jailbreaks"]):
            where = f"jailbreaks[{i}]"
            if not isinstance(rec, dict):
                raise DataError(file, None, f"{where}: expected an object, got {type(rec).__name__}")
            if rec.get("prompt") is None or rec.get("response") is None:
                continue  # attacks that produced nothing
            for key in ("prompt", "response"):
                if not isinstance(rec[key], str):
                    raise DataError(file, None, f"{where}: '{key}' must be text, got {type(rec[key]).__name__}")
            if not isinstance(rec.get("jailbroken", False), bool):
                raise DataError(file, None, f"{where}: 'jailbroken' must be true or false, got {rec['jailbroken']!r}")
            out.append(
                BenchmarkExample(
                    rec["prompt"],
                    attack_prompts or rec.get("jailbroken", False),
                    language or "en",
                    response=None if attack_prompts else rec["response"],
                    category=rec.get("category"),
                )
            )
    return out


def load_jbb_behaviors(path: Path, language: str | None, unsafe: bool = True) -> list[BenchmarkExample]:
    """JailbreakBench behaviours: the CSV (`Goal`, `Category`; every row `unsafe`, so set
    `unsafe: false` for benign-behaviors.csv) or the JSON list of `{text, label}` (label harmful, or
    safe as in the shared copy; benign is read as safe too)."""
    out = []
    for line, row in iter_rows(path, "jsonl" if path.suffix == ".json" else "csv"):
        if path.suffix == ".json":
            _need(row, ("text", "label"), path, line)
            if row["label"] not in ("harmful", "safe", "benign"):
                raise DataError(path, line, f"'label' must be harmful or safe (or benign), got {row['label']!r}")
            out.append(BenchmarkExample(_text(row, "text", path, line), row["label"] == "harmful", language or "en"))
        else:
            _need(row, ("Goal",), path, line)
            category = row.get("Category") or None
            out.append(BenchmarkExample(_text(row, "Goal", path, line), unsafe, language or "en", category=category))
    return out


def load_advbench(path: Path, language: str | None) -> list[BenchmarkExample]:
    """AdvBench harmful behaviours (`goal,target`): every goal is an unsafe prompt."""
    out = []
    for line, row in iter_rows(path, "csv"):
        _need(row, ("goal",), path, line)
        out.append(BenchmarkExample(_text(row, "goal", path, line), True, language or "en"))
    return out


def load_harmbench(
    path: Path, language: str | None, functional_categories: Sequence[str] | None = None
) -> list[BenchmarkExample]:
    """HarmBench behaviours (`Behavior,FunctionalCategory,SemanticCategory,Tags,ContextString,
    BehaviorID`), all unsafe; the category is the SemanticCategory (HarmBench's own label). A
    contextual behaviour is shown as HarmBench does: its context, `---`, then the request.
    `functional_categories` keeps only those (standard, contextual, copyright)."""
    out = []
    for line, row in iter_rows(path, "csv"):
        _need(row, ("Behavior",), path, line)
        behavior = _text(row, "Behavior", path, line)
        if functional_categories is not None and row.get("FunctionalCategory") not in functional_categories:
            continue
        context = (row.get("ContextString") or "").strip()
        text = f"{context}\n\n---\n\n{behavior}" if context else behavior
        category = row.get("SemanticCategory") or row.get("Category") or None
        out.append(BenchmarkExample(text, True, language or "en", category=category))
    return out


def load_samples_file(path: Path, language: str | None) -> list[BenchmarkExample]:
    out = []
    for line, row in iter_rows(path):
        _need(row, ("text", "unsafe"), path, line)
        out.append(
            BenchmarkExample(
                row["text"],
                _bool(row["unsafe"], "unsafe", path, line),
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
                BenchmarkExample(
                    row["text"], _bool(row["unsafe"], "unsafe", path, line), row["language"], category=kind
                )
            )
    return out


_JSON_SPACE = re.compile(r"[ \t\n\r]*")


def json_records(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    """(line, record) for a JSON list, each record numbered by the line it starts on (DuoGuard's
    files are indented lists, so a record's index would not find it in an editor); JSON lines
    otherwise."""
    if not text.lstrip().startswith("["):
        yield from json_lines(path, text)
        return
    try:
        json.loads(text)  # the whole file first: a syntax error is reported with its line by json itself
    except json.JSONDecodeError as e:
        raise DataError(path, e.lineno, f"invalid JSON: {e.msg} (column {e.colno})") from None
    decoder = json.JSONDecoder()
    pos = _JSON_SPACE.match(text, text.index("[") + 1).end()
    line, counted = 1, 0
    while text[pos] != "]":
        record, end = decoder.raw_decode(text, pos)
        line, counted = line + text.count("\n", counted, pos), pos
        yield line, record
        pos = _JSON_SPACE.match(text, end).end()
        if text[pos] == ",":
            pos = _JSON_SPACE.match(text, pos + 1).end()


# ---------------------------------------------------------------- DuoGuard's evaluation release
# yihedeng9/DuoGuard evaluation/eval_data_<Lang>/: one file per benchmark and language folder.
DUOGUARD_EVAL_FILES = {
    "xstest": "xstest_v2_completions_gpt4_gpteval.csv",  # XSTest v2 prompts with GPT-4 completions
    "openai_moderation": "openai.json",
    "toxicchat": "toxic_chat.json",
    "beavertails": "beavertail_test.jsonl",
    "rtp_lx": "rtp_lx_prompt.json",
    "xsafety": "XSafety.json",
}
DUOGUARD_LABEL_KEYS = ("class", "moderation_flag")  # 1 = unsafe; the moderation sets use the second


def _release_language(folder: Path) -> str:
    return folder.name.removeprefix("eval_data_").lower()  # eval_data_En -> en, Fr -> fr


def duoguard_language_folders(root: Path, language: str | None) -> list[tuple[str, Path]]:
    """(language, folder) of a release: `root` itself when it holds the files, else its subfolders."""
    holds = lambda folder: any((folder / f).is_file() for f in DUOGUARD_EVAL_FILES.values())  # noqa: E731
    if not root.is_dir():
        raise DataError(root, None, "expected the folder of DuoGuard's evaluation data (eval_data_<Lang>/ inside)")
    if holds(root):
        return [(language or _release_language(root), root)]
    folders = [(_release_language(p), p) for p in sorted(root.iterdir()) if p.is_dir() and holds(p)]
    if not folders:
        raise DataError(
            root,
            None,
            f"no language folder (eval_data_<Lang>/ or <lang>/) holds any of {list(DUOGUARD_EVAL_FILES.values())}",
        )
    return folders


def _release_records(file: Path, language: str) -> list[BenchmarkExample]:
    """A JSON list of {"prompt", "class"} (or {"prompt", "moderation_flag"}) records; 1 = unsafe."""
    out = []
    for line, row in json_records(file, _text_of(file)):
        _need(row, ("prompt",), file, line)
        key = next((k for k in DUOGUARD_LABEL_KEYS if k in row), None)
        if key is None:
            raise DataError(file, line, f"missing label: one of {list(DUOGUARD_LABEL_KEYS)}; found {sorted(row)}")
        unsafe = _bool(row[key], key, file, line)
        out.append(BenchmarkExample(_text(row, "prompt", file, line), unsafe, language))
    return out


def load_duoguard_eval_data(
    path: Path,
    language: str | None,
    benchmark: str = "",
    languages: Sequence[str] | None = None,
    join_response: bool = True,
) -> list[BenchmarkExample]:
    """One benchmark of DuoGuard's evaluation release, from every language folder, each row tagged
    with its folder's language, the languages' rows interleaved (a `limit` keeps every language).
    `languages` keeps only those (e.g. [en, fr]). BeaverTails is scored
    as DuoGuard did, prompt + " " + response as one text (`join_response: false` keeps the pair)."""
    if benchmark not in DUOGUARD_EVAL_FILES:
        raise UserError(
            f"option 'benchmark' for format 'duoguard_eval_data' must be one of {list(DUOGUARD_EVAL_FILES)}, "
            f"got {benchmark!r}"
        )
    folders = duoguard_language_folders(path, language)
    if languages is not None:
        wanted = {lang.lower() for lang in languages}
        absent = sorted(wanted - {lang for lang, _ in folders})
        if absent:
            raise DataError(path, None, f"no folder for language(s) {absent} (found {[lang for lang, _ in folders]})")
        folders = [(lang, folder) for lang, folder in folders if lang in wanted]
    per_language: list[list[BenchmarkExample]] = []
    for lang, folder in folders:
        file = folder / DUOGUARD_EVAL_FILES[benchmark]
        if not file.is_file():
            raise DataError(file, None, f"missing: language folder '{folder.name}' has no {benchmark} file")
        if benchmark == "xstest":
            rows = load_xstest(file, lang)
        elif benchmark == "beavertails":
            pairs = load_beavertails(file, lang)
            rows = [_joined(e) for e in pairs] if join_response else pairs
        else:
            rows = _release_records(file, lang)
        per_language.append(rows)
    # row by row across languages, so that a `limit` keeps every language
    return [e for group in itertools.zip_longest(*per_language) for e in group if e is not None]


def _joined(e: BenchmarkExample) -> BenchmarkExample:
    return BenchmarkExample(f"{e.text} {e.response}", e.unsafe, e.language, category=e.category)


# ---------------------------------------------------------------- any table, its columns named in config
def _label_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _table_label(value: Any, column: str, unsafe_values: Sequence[str], safe_values: Sequence[str], path, line):
    if not unsafe_values:  # a boolean column: true/false, 1/0, yes/no, unsafe/safe
        return _bool(value, column, path, line)
    word = _label_text(value)
    if word in unsafe_values:
        return True
    if safe_values and word not in safe_values:
        raise DataError(
            path,
            line,
            f"'{column}' is {value!r}: in neither unsafe_values {list(unsafe_values)} "
            f"nor safe_values {list(safe_values)}",
        )
    return False


def _optional(row: dict, columns: Mapping[str, str], field: str) -> str | None:
    value = row[columns[field]] if field in columns else None
    return None if value in (None, "") else str(value)


def _table_rows(path: Path) -> Iterator[tuple[int, Any]]:
    name = path.name.lower().removesuffix(".gz").removesuffix(".xz")
    if name.endswith((".json", ".jsonl")):
        return json_records(path, _text_of(path))
    return iter_rows(path)  # csv or parquet (anything else: an error naming the file)


def load_table(
    path: Path,
    language: str | None,
    columns: Mapping[str, str],
    unsafe_values: Sequence[str] = (),
    safe_values: Sequence[str] = (),
) -> list[BenchmarkExample]:
    """Rows of a csv/json/jsonl/parquet file whose columns `columns` names (our field -> its column;
    text and label required). The label is a boolean column unless `unsafe_values` lists the values
    that mean unsafe; then every other value is safe, or, with `safe_values` too, an error."""
    if not path.is_file():
        raise DataError(path, None, "format 'table' reads one file, not a folder")
    out = []
    for line, row in _table_rows(path):
        _need(row, (), path, line)
        absent = [f"{column} (columns.{field})" for field, column in columns.items() if column not in row]
        if absent:
            raise DataError(path, line, f"missing column(s) {absent}; found {sorted(row)}")
        out.append(
            BenchmarkExample(
                _text(row, columns["text"], path, line),
                _table_label(row[columns["label"]], columns["label"], unsafe_values, safe_values, path, line),
                _optional(row, columns, "language") or language or "und",
                response=_optional(row, columns, "response"),
                category=_optional(row, columns, "category"),
            )
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
    "jbb_behaviors": load_jbb_behaviors,
    "advbench": load_advbench,
    "harmbench": load_harmbench,
    "samples": load_samples_file,
    "duoguard_seeds": load_duoguard_seeds,
    "duoguard_eval_data": load_duoguard_eval_data,
    "table": load_table,
}
RESPONSE_FORMATS = {"beavertails", "jbb_artifacts"}  # read (prompt, response) pairs (jbb: unless attack_prompts)


def _check_option(fmt: str, key: str, value: Any, default: Any) -> None:
    """Loader options come from config: their type must match the loader's default."""
    if isinstance(default, bool):
        ok, want = isinstance(value, bool), "true or false"
    elif isinstance(default, (int, float)):
        ok, want = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    elif isinstance(default, str):
        ok, want = isinstance(value, str), "a name"
    else:  # the list options (languages, functional_categories) default to None = all
        ok, want = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value), "a list of names"
        ok = ok or value is None
    if not ok:
        raise UserError(f"option '{key}' for benchmark format '{fmt}' must be {want}, got {value!r}")


def _check_columns(columns: Mapping[str, str], unsafe_values: Sequence[str], safe_values: Sequence[str]) -> None:
    unknown = sorted(set(columns) - set(TABLE_COLUMNS))
    if unknown:
        raise UserError(f"columns: unknown field(s) {unknown} (known: {', '.join(TABLE_COLUMNS)})")
    for field in ("text", "label"):
        if field not in columns:
            raise UserError(f"format 'table' needs columns.{field} (the file's column holding the {field})")
    both = sorted(set(unsafe_values) & set(safe_values))
    if both:
        raise UserError(f"value(s) {both} are in both unsafe_values and safe_values")


def load_benchmark(
    name: str,
    fmt: str,
    path: str | Path,
    *,
    language: str | None = None,
    limit: int | None = None,
    columns: Mapping[str, str] | None = None,
    unsafe_values: Sequence[str] = (),
    safe_values: Sequence[str] = (),
    **options: Any,
) -> Benchmark:
    """Read a benchmark; bad input (format, option, path, file content) raises a UserError
    (DataError with the file and line for file content; FileNotFoundError for a missing path).
    `columns`, `unsafe_values` and `safe_values` describe a `table` file (see `load_table`)."""
    table: dict[str, Any] = {}  # the table format's description, from config sections of its own
    if fmt == "table":
        _check_columns(columns or {}, unsafe_values, safe_values)
        table = {"columns": dict(columns or {}), "unsafe_values": list(unsafe_values), "safe_values": list(safe_values)}
    elif columns or unsafe_values or safe_values:
        raise UserError(f"columns, unsafe_values and safe_values are for format 'table', not '{fmt}'")
    if fmt not in LOADERS:
        raise UserError(f"unknown benchmark format '{fmt}' (known: {', '.join(LOADERS)})")
    fixed = ("path", "language", *table)
    params = {k: p for k, p in inspect.signature(LOADERS[fmt]).parameters.items() if k not in fixed}
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise UserError(f"unknown option(s) {unknown} for benchmark format '{fmt}' (known: {list(params) or 'none'})")
    for key, value in options.items():
        _check_option(fmt, key, value, params[key].default)
    if fmt == "duoguard_seeds" and str(path) == "builtin":
        from duoguard.data.readers import builtin_seed_path

        path = builtin_seed_path()
    path = Path(str(path)).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: benchmark file not found")
    examples = LOADERS[fmt](path, language, **options, **table)
    if not examples:
        raise DataError(path, None, f"no examples read for benchmark '{name}' ({fmt})")
    if limit is not None:
        examples = examples[:limit]
    task = "response" if any(e.response is not None for e in examples) else "prompt"
    return Benchmark(name=name, examples=examples, task=task, source=str(path))


def samples_benchmark(name: str, samples: Sequence[Sample]) -> Benchmark:
    """Our own samples (e.g. the held-out split) as a benchmark."""
    examples = [BenchmarkExample(s.text, s.unsafe, s.language, response=s.response) for s in samples]
    task = "response" if any(e.response for e in examples) else "prompt"
    return Benchmark(name=name, examples=examples, task=task, source="samples")
