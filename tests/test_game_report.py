"""The game report: report.md and its PNGs from a synthetic 3-round history, pool and rejected records."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from duoguard import game_report
from duoguard.data.pool import Pool
from duoguard.data.record import PromptRecord, Verdict
from duoguard.game_report import archive_cells, read_history, write_game_report
from tests.conftest import ROOT

PNG = b"\x89PNG\r\n\x1a\n"


def history(diversity: bool = False) -> list[dict]:
    rows = []
    for r, (fool, keep) in enumerate([(0.125, 0.5), (0.25, 0.625), (0.4375, 0.75)], 1):
        row = {
            "round": r,
            "generated": 16,
            "kept": int(16 * keep),
            "accepted": int(16 * keep) - 1,
            "keep_rate": keep,
            "fool_rate": fool,
            "fool_rate_of_kept": fool / keep,
            "mean_reward": 0.1 * r,
            "guardrail_acc_before": 0.5,
            "guardrail_acc_after": 0.75,
            "heldout_f1": 0.6 + 0.05 * r,
            "heldout_auprc": 0.7 + 0.04 * r,
            "pool_size": 10 * r,
            "label_check": "none",
            "judge/rejected_too_short": 4 - r,
            "judge/rejected_off_language": 7 + r,
            "kl": 0.01,
            "gen/loss": 0.3,
            "seconds_rollout": 2.0 * r,
            "seconds_pool": 0.5,
            "seconds_guardrail_train": 3.0,
            "seconds_eval": 1.0,
            "seconds_round": 4.5 + 2.0 * r,
        }
        if diversity:
            row["diversity/distinct_2"] = 0.5 + 0.111 * r
            row["diversity/self_bleu"] = 0.9 - 0.1 * r
        rows.append(row)
    return rows


def record(r: int, i: int, **kw) -> PromptRecord:
    fields = dict(
        id=f"r{r}-{i}",
        text=f"prompt {r}.{i} | with a pipe\nand a newline " + "x" * (300 if i == 0 else 5),
        language=["en", "de", "fr"][i % 3],
        category=["violence", "fraud"][i % 2],
        attack_style=["roleplay", "direct"][(i // 2) % 2],
        unsafe=i % 2 == 0,
        round=r,
        guardrail_score=0.123 + 0.01 * i,
        fooled=i == 1,
        judge=Verdict(True),
        reward=0.5,
    )
    return PromptRecord(**{**fields, **kw})


def pool_records() -> list[PromptRecord]:
    return [record(r, i) for r in (1, 2, 3) for i in range(5)]


def rejected_records() -> list[PromptRecord]:
    return [
        record(3, 10, judge=Verdict(False, ["too_short"]), text="tiny"),
        record(3, 11, judge=Verdict(False, ["off_language", "label_flip"]), text="wrong language here"),
        record(3, 12),  # kept: not shown as rejected
    ]


ARCHIVE = {
    "cells": [
        {"language": "en", "category": "violence", "attack_style": "roleplay", "generated": 9, "kept": 5,
         "accepted": 4, "fooled": 2},
        {"language": "zh", "category": "fraud", "attack_style": "direct", "generated": 7, "kept": 3,
         "accepted": 31, "fooled": 1},
    ]
}  # fmt: skip


def pngs(tmp_path, md: str) -> list[str]:
    refs = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    for ref in refs:
        data = (tmp_path / ref).read_bytes()
        assert data.startswith(PNG) and len(data) > 1000, ref
    return refs


def test_report_sections_numbers_and_figures(tmp_path):
    start = time.perf_counter()
    path = write_game_report(tmp_path, history(), pool_records(), rejected_records())
    assert path == tmp_path / "report.md"
    md = path.read_text()
    for section in (
        "# Game report",
        "## Rounds",
        "## Judge rejections",
        "## Coverage",
        "## Time per phase",
        "## Accepted candidates",
        "## Rejected candidates",
        "## What the numbers mean",
    ):
        assert section in md, section
    assert "round 3: fool rate 0.438" in md  # the last round's fool rate, in the summary and the table
    assert md.count("0.438") >= 2 and "0.583" in md  # fool_rate_of_kept of round 3: 0.4375 / 0.75
    assert "| too_short" in md and "| off_language" in md
    assert "judge.label_check=none" in md
    # accepted: three per round, text flattened, pipes escaped, long text truncated
    assert "prompt 3.2 \\| with a pipe and a newline xxxxx" in md and "prompt 3.3" not in md
    assert "x" * 200 not in md and "…" in md
    # rejected: the judge's reasons; a kept record of the list is not shown
    assert "off_language, label_flip" in md and "too_short" in md and "tiny" in md
    assert "prompt 3.12" not in md
    # coverage from the pool when no archive is given: en/violence/roleplay holds 3 (one per round)
    assert "from the pool" in md and re.search(r"\| en +\| violence +\| roleplay +\| 3 ", md)
    # absent inputs leave their parts out
    assert "## Diversity" not in md and "diversity.png" not in md
    refs = pngs(tmp_path, md)
    assert {r.split("/")[-1] for r in refs} == {"rates.png", "heldout.png", "coverage.png", "seconds.png"}
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == sorted(r.split("/")[-1] for r in refs)
    for key in ("fool_rate", "keep_rate", "heldout_f1", "heldout_auprc", "pool_size"):
        assert re.search(rf"^- `{key}`: \S", md, re.M), key
    assert time.perf_counter() - start < 10  # the game rewrites it every round (< 2 s on a free CPU)


def test_diversity_and_archive_appear_when_present(tmp_path):
    md = write_game_report(tmp_path, history(diversity=True), pool_records(), archive=ARCHIVE).read_text()
    assert "## Diversity" in md and "distinct_2" in md and "self_bleu" in md and "0.833" in md  # 0.5 + 3 * 0.111
    assert "from the coverage archive" in md
    assert re.search(r"\| zh +\| fraud +\| direct +\| 7 +\| 3 +\| 31 +\| 1 ", md)
    assert "## Rejected candidates" not in md
    assert "diversity.png" in " ".join(pngs(tmp_path, md))


def test_archive_shapes(tmp_path):
    want = {("en", "violence", "roleplay"): {"generated": 9.0, "kept": 5.0, "accepted": 4.0, "fooled": 2.0}}
    cell = dict(ARCHIVE["cells"][0])
    assert archive_cells([cell]) == want
    keyed = {k: v for k, v in cell.items() if k not in ("language", "category", "attack_style")}
    assert archive_cells({"en|violence|roleplay": keyed}) == want
    (tmp_path / "archive.json").write_text(json.dumps({"cells": [cell]}))
    assert archive_cells(tmp_path / "archive.json") == want
    with pytest.raises(ValueError, match="language, category and attack style"):
        archive_cells({"en|violence": keyed})


def test_second_call_rewrites(tmp_path):
    write_game_report(tmp_path, history(diversity=True), pool_records(), rejected_records(), archive=ARCHIVE)
    md = write_game_report(tmp_path, history()[:1], [], None).read_text()
    assert md.count("# Game report") == 1
    assert "Rounds: 1; round 1" in md and "0.438" not in md and "No accepted candidates yet." in md
    assert "## Diversity" not in md and "## Coverage" not in md and "## Rejected" not in md
    refs = {r.split("/")[-1] for r in pngs(tmp_path, md)}
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == sorted(refs)  # old figures are gone
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_from_a_run_folder(tmp_path):
    """What a game run writes: metrics.jsonl and the pool's parquet shards."""
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in history()))
    pool = Pool(tmp_path / "pool")
    for r in (1, 2, 3):
        pool.write_round(r, [record(r, i) for i in range(2)])
    rows = read_history(tmp_path / "metrics.jsonl")
    md = write_game_report(tmp_path, rows, Pool(tmp_path / "pool").records()).read_text()
    assert "Rounds: 3; round 3: fool rate 0.438" in md and "prompt 2.1" in md
    assert read_history(tmp_path / "missing.jsonl") == []
    (tmp_path / "bad.jsonl").write_text('{"round": 1}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        read_history(tmp_path / "bad.jsonl")


def test_imports_no_torch():
    code = "import sys, duoguard.game_report; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_a_failed_write_keeps_the_previous_report(tmp_path, monkeypatch):
    write_game_report(tmp_path, history(), pool_records())
    before = {p.name: p.read_bytes() for p in (tmp_path / "report").iterdir()}
    md = (tmp_path / "report.md").read_text()

    def crash(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(game_report, "_seconds_plot", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        write_game_report(tmp_path, history()[:1], [])
    assert (tmp_path / "report.md").read_text() == md
    assert {p.name: p.read_bytes() for p in (tmp_path / "report").iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_reads_the_game_archive(tmp_path):
    from duoguard.archive import Archive

    archive = Archive()
    rounds = [record(1, i) for i in range(4)] + [record(1, 9, judge=Verdict(False, ["length"]))]
    archive.update(rounds, rounds[:3])
    cells = archive_cells(archive)
    assert len(cells) == 5 and cells[("de", "fraud", "roleplay")] == dict(generated=1, kept=1, accepted=1, fooled=1)
    assert cells[("en", "fraud", "roleplay")] == dict(generated=1, kept=0, accepted=0, fooled=0)  # rejected
    assert archive_cells(archive.save(tmp_path / "archive.json")) == archive_cells(archive)
    md = write_game_report(tmp_path, history(), pool_records(), archive=tmp_path / "archive.json").read_text()
    assert "from the coverage archive" in md and re.search(r"\| de +\| fraud +\| roleplay +\| 1 +\| 1 +\| 1 +\| 1 ", md)
