"""`duoguard-classify`: the guard alone, for users who just want to label texts.

    duoguard-classify runs/guardrail/<date>/guardrail --input prompts.txt --output labels.jsonl
    echo "How do I kill a Python process?" | duoguard-classify path/to/guardrail

Input is plain text (one input per line) or jsonl (objects with a text field and, for
response classification, a response field). Output is one JSON object per input, in order,
with the threshold it was decided at: a calibrated checkpoint's threshold for the input's
language (the jsonl language field, or --language) where it has one, else its overall one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from duoguard.errors import UserError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="duoguard-classify", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="guardrail folder (written by duoguard-guardrail or Guardrail.save_pretrained)")
    p.add_argument("--input", "-i", default="-", help="text or .jsonl file; '-' reads stdin (default)")
    p.add_argument("--output", "-o", default="-", help="jsonl file to write; '-' writes stdout (default)")
    p.add_argument("--jsonl", action="store_true", help="treat input as jsonl even without a .jsonl suffix")
    p.add_argument("--text-field", default="text", help="jsonl field with the prompt (default: text)")
    p.add_argument("--response-field", default=None, help="jsonl field with a response: response classification")
    p.add_argument("--language-field", default="language", help="jsonl field with the input's language code")
    p.add_argument("--language", default=None, help="language code of inputs that give none (e.g. plain text)")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="unsafe threshold for every input (default: the checkpoint's, per language where calibrated)",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    return p


def _records(
    stream: TextIO,
    name: str,
    jsonl: bool,
    text_field: str,
    response_field: str | None,
    language_field: str = "language",
) -> Iterator[dict[str, Any]]:
    for line_no, line in enumerate(stream, start=1):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if not jsonl:
            yield {"text": line}
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{name}:{line_no}: invalid JSON: {e.msg}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get(text_field), str) or not obj[text_field].strip():
            raise UserError(f"{name}:{line_no}: needs a non-empty string field '{text_field}'")
        rec = {"text": obj[text_field], "id": obj.get("id")}
        language = obj.get(language_field)
        if language is not None:
            if not isinstance(language, str) or not language.strip():
                raise UserError(f"{name}:{line_no}: '{language_field}' must be a language code such as 'en'")
            rec["language"] = language.strip().lower()
        if response_field is not None:
            if not isinstance(obj.get(response_field), str):
                raise UserError(f"{name}:{line_no}: needs a string field '{response_field}'")
            rec["response"] = obj[response_field]
        yield rec


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (UserError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    jsonl = args.jsonl or args.input.endswith(".jsonl")
    try:
        stream = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")  # noqa: SIM115
    except OSError as e:
        raise UserError(f"--input {args.input}: {e.strerror}") from None
    try:
        records = list(_records(stream, args.input, jsonl, args.text_field, args.response_field, args.language_field))
    except UnicodeDecodeError as e:
        raise UserError(f"{args.input}: not valid UTF-8 ({e.reason})") from None
    finally:
        if stream is not sys.stdin:
            stream.close()

    from duoguard.roles.guardrail import Guardrail

    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise UserError(f"--threshold must be in (0, 1), got {args.threshold}")
    guard = Guardrail.from_pretrained(
        args.checkpoint, device=args.device, threshold=args.threshold, batch_size=args.batch_size
    )
    responses = [r["response"] for r in records] if args.response_field else None
    probs = guard.predict([r["text"] for r in records], responses, progress=len(records) > 1000)
    default_language = args.language.strip().lower() if args.language else None
    thresholds = guard.thresholds_for([r.get("language", default_language) for r in records], len(records))
    out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")  # noqa: SIM115
    try:
        for rec, p, t in zip(records, probs, thresholds, strict=True):
            row = {k: v for k, v in rec.items() if v is not None}
            row["unsafe"] = bool(p.max() > t)
            row["score"] = round(float(p.max()), 6)
            row["threshold"] = float(t)
            row["categories"] = [c for c, v in zip(guard.categories, p, strict=True) if v > t]
            row["probabilities"] = {c: round(float(v), 6) for c, v in zip(guard.categories, p, strict=True)}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0
