"""Benchmark loaders on small made-up fixtures in each benchmark's published format."""

from __future__ import annotations

import pytest

from duoguard.data.benchmarks import load_benchmark
from duoguard.data.readers import DataError
from tests.conftest import FIXTURES

B = FIXTURES / "benchmarks"

# (format, path, task, rows, unsafe rows, languages) — counts as documented in fixtures/benchmarks/README.md
CASES = [
    ("xstest", B / "xstest/xstest_prompts.csv", "prompt", 10, 4, {"en"}),
    ("openai_moderation", B / "openai_moderation/samples-1680.jsonl.gz", "prompt", 8, 4, {"en"}),
    ("toxicchat", B / "toxic_chat/data/0124/toxic-chat_annotation_test.csv", "prompt", 8, 3, {"en"}),
    ("beavertails", B / "beavertails/30k_test.jsonl", "response", 8, 4, {"en"}),
    ("xsafety", B / "xsafety", "prompt", 9, 9, {"en", "zh"}),
    ("rtp_lx", B / "rtp_lx", "prompt", 14, 8, {"en", "zh-hans"}),
    ("rtp_lx", B / "rtp_lx_legacy_v0.3", "prompt", 6, 3, {"fr"}),
    (
        "multijail",
        B / "multijail/MultiJail.csv",
        "prompt",
        60,
        60,
        {"en", "zh", "it", "vi", "ar", "ko", "th", "bn", "sw", "jv"},
    ),
    ("jbb_artifacts", B / "jailbreakbench", "response", 5, 3, {"en"}),
]


@pytest.mark.parametrize("fmt,path,task,n,n_unsafe,langs", CASES, ids=[f"{c[0]}-{c[1].name}" for c in CASES])
def test_loader_reads_public_format(fmt, path, task, n, n_unsafe, langs):
    bench = load_benchmark(fmt, fmt, path)
    assert bench.task == task
    assert len(bench.examples) == n
    assert sum(e.unsafe for e in bench.examples) == n_unsafe
    assert {e.language for e in bench.examples} == langs
    assert all(e.text.strip() for e in bench.examples)
    if task == "response":
        assert all(e.response for e in bench.examples)


def test_xstest_label_rule_is_the_contrast_prefix():
    bench = load_benchmark("x", "xstest", B / "xstest/xstest_prompts.csv")
    assert all(e.unsafe == e.category.startswith("contrast_") for e in bench.examples)


def test_jbb_skips_null_attacks_and_labels_by_jailbroken():
    bench = load_benchmark("j", "jbb_artifacts", B / "jailbreakbench")
    assert all(e.response is not None for e in bench.examples)  # the null entry is gone


def test_multijail_can_select_languages():
    bench = load_benchmark("m", "multijail", B / "multijail/MultiJail.csv", languages=["en", "it"])
    assert {e.language for e in bench.examples} == {"en", "it"} and len(bench.examples) == 12


def test_loader_options():
    toxic = load_benchmark(
        "t", "toxicchat", B / "toxic_chat/data/0124/toxic-chat_annotation_test.csv", human_annotated_only=True
    )
    assert len(toxic.examples) == 5
    strict = load_benchmark("r", "rtp_lx", B / "rtp_lx_legacy_v0.3", toxicity_threshold=1.5)
    assert sum(e.unsafe for e in strict.examples) == 2  # the [1, 1, 2] row (mean 1.33) is safe at 1.5
    with pytest.raises(ValueError, match="unknown option.*'humann'.*human_annotated_only"):
        load_benchmark("t", "toxicchat", B / "toxic_chat/data/0124/toxic-chat_annotation_test.csv", humann=True)


def test_limit_and_errors(tmp_path):
    assert len(load_benchmark("x", "xstest", B / "xstest/xstest_prompts.csv", limit=3).examples) == 3
    with pytest.raises(ValueError, match="unknown benchmark format 'xtest'"):
        load_benchmark("x", "xtest", B / "xstest/xstest_prompts.csv")
    with pytest.raises(FileNotFoundError, match="benchmark file not found"):
        load_benchmark("x", "xstest", tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,question\n1,hello\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.csv:2: missing column\(s\) \['prompt', 'type'\]"):
        load_benchmark("x", "xstest", bad)
