"""Decision thresholds a deployment tunes: chosen on part of the held-out split (best F1 or a target FPR),
overall and per language, measured on the rest, stored in the checkpoint and used by every `predict`-based
decision."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from duoguard import Guardrail
from duoguard.data.readers import builtin_seed_texts
from duoguard.metrics import binary_metrics, calibrate_threshold, calibrate_thresholds
from duoguard.roles.guardrail import THRESHOLDS_FILE, GuardrailError
from tests.conftest import compose


def crafted(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A guardrail that ranks well but scores low: unsafe ~ U(0.15, 0.45), safe ~ U(0.0, 0.25)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2 == 1
    scores = np.where(labels, rng.uniform(0.15, 0.45, n), rng.uniform(0.0, 0.25, n))
    return labels, scores


def all_cuts(scores: np.ndarray) -> np.ndarray:
    """Every distinct decision on `scores`: a cut between each pair of neighbouring scores, and the ends."""
    s = np.unique(scores)
    return np.r_[s[0] / 2, (s[:-1] + s[1:]) / 2, (s[-1] + 1) / 2]


def test_best_f1_beats_half_and_is_the_best_cut():
    labels, scores = crafted()
    t = calibrate_threshold(labels, scores, "best_f1")
    at_half, at_t = binary_metrics(labels, scores, 0.5), binary_metrics(labels, scores, t)
    assert at_half["f1"] == 0.0 and at_half["recall"] == 0.0  # nothing scores above 0.5
    assert at_t["f1"] > 0.8
    best = max(binary_metrics(labels, scores, c)["f1"] for c in all_cuts(scores))
    assert at_t["f1"] == pytest.approx(best, abs=1e-12)
    assert not np.any(np.isclose(scores, t))  # the cut sits between scores, not on one


@pytest.mark.parametrize("target", [0.01, 0.05, 0.2])
def test_target_fpr_keeps_fpr_under_target_and_catches_the_most(target):
    labels, scores = crafted(seed=1)
    t = calibrate_threshold(labels, scores, "target_fpr", target_fpr=target)
    m = binary_metrics(labels, scores, t)
    assert m["fpr"] <= target
    allowed = [binary_metrics(labels, scores, c) for c in all_cuts(scores)]
    most = max(x["recall"] for x in allowed if x["fpr"] <= target)
    assert m["recall"] == pytest.approx(most, abs=1e-12) and m["recall"] > 0


def test_rules_that_cannot_decide_say_so():
    assert calibrate_threshold([True, True], [0.2, 0.3]) is None  # no safe row
    assert calibrate_threshold([False, False], [0.2, 0.3], "target_fpr") is None  # no unsafe row
    assert calibrate_threshold([True, False], [0.9, 0.1], "none") is None
    with pytest.raises(ValueError, match="unknown calibration rule"):
        calibrate_threshold([True, False], [0.9, 0.1], "youden")
    # thresholds stay inside (0, 1) even where the scores touch the ends
    t = calibrate_threshold([True, False, True], [1.0, 0.0, 1.0])
    assert 0 < t < 1 and binary_metrics([True, False, True], [1.0, 0.0, 1.0], t)["f1"] == 1.0


def test_per_language_thresholds_and_their_fallbacks():
    en_y, en_s = crafted(200, seed=2)
    fr_y, fr_s = crafted(200, seed=3)
    fr_s = fr_s * 0.5  # French scores run lower: its best cut is lower too
    de_y, de_s = crafted(20, seed=4)  # too few rows for its own
    labels = np.r_[en_y, fr_y, de_y]
    scores = np.r_[en_s, fr_s, de_s]
    langs = ["en"] * 200 + ["fr"] * 200 + ["de"] * 20
    cal = calibrate_thresholds(labels, scores, langs, "best_f1", min_rows=100, default=0.5)
    assert set(cal["languages"]) == {"en", "fr"} and "de" in cal["fallback"]
    assert cal["languages"]["en"] == calibrate_threshold(en_y, en_s)
    assert cal["languages"]["fr"] < cal["languages"]["en"]
    assert cal["threshold"] == calibrate_threshold(labels, scores)
    per_language = np.array([cal["languages"].get(lang, cal["threshold"]) for lang in langs])
    assert binary_metrics(labels, scores, per_language)["f1"] >= binary_metrics(labels, scores, cal["threshold"])["f1"]

    none = calibrate_thresholds(labels, scores, langs, "none", default=0.5)
    assert none["threshold"] == 0.5 and none["languages"] == {}
    few = calibrate_thresholds(labels[:50], scores[:50], langs[:50], "best_f1", min_rows=100, default=0.4)
    assert few["threshold"] == 0.4 and few["languages"] == {} and "all" in few["fallback"]


# ---------------------------------------------------------------- the guardrail stores and uses them
@pytest.fixture()
def guard(tiny_base, taxonomy):
    torch.manual_seed(0)
    return Guardrail.from_base(tiny_base, taxonomy.names, device="cpu", batch_size=16, max_batch_tokens=2048)


def test_calibrated_thresholds_are_stored_reloaded_and_decide(guard, tmp_path):
    texts = builtin_seed_texts()[:60]
    scores = guard.unsafe_scores(texts)
    labels = scores > np.median(scores)  # a labelling the untrained guardrail ranks perfectly
    langs = ["en"] * 30 + ["fr"] * 30
    cal = calibrate_thresholds(labels, scores, langs, "best_f1", min_rows=10, default=0.5)
    assert set(cal["languages"]) == {"en", "fr"}
    guard.calibrate(cal)
    guard.save_pretrained(tmp_path / "g")
    stored = json.loads((tmp_path / "g" / THRESHOLDS_FILE).read_text())
    assert stored["threshold"] == cal["threshold"] and stored["calibration"]["rule"] == "best_f1"

    again = Guardrail.from_pretrained(tmp_path / "g", device="cpu")
    assert again.threshold == cal["threshold"] != 0.5
    assert again.language_thresholds == cal["languages"]
    again_scores = again.unsafe_scores(texts)
    np.testing.assert_allclose(again_scores, scores, atol=1e-6)
    assert (again.is_unsafe(texts) == (again_scores > cal["threshold"])).all()
    per_language = np.array([cal["languages"][lang] for lang in langs])
    assert (again.is_unsafe(texts, languages=langs) == (again_scores > per_language)).all()
    assert binary_metrics(labels, again_scores, per_language)["f1"] == 1.0
    assert binary_metrics(labels, again_scores, 0.5)["f1"] < 1.0  # 0.5 would decide otherwise
    # a language without its own threshold (or none given) falls back to the overall one
    assert (
        again.thresholds_for(["de", None, "EN"], 3) == [cal["threshold"], cal["threshold"], cal["languages"]["en"]]
    ).all()
    # an explicit threshold decides for every input and language
    fixed = Guardrail.from_pretrained(tmp_path / "g", device="cpu", threshold=0.3)
    assert fixed.threshold == 0.3 and fixed.language_thresholds == {}


def test_classify_decides_at_the_inputs_language_threshold(guard, tmp_path):
    from duoguard.classify import main

    texts = builtin_seed_texts()[:6]
    scores = guard.unsafe_scores(texts)
    low, high = float(scores.min()) / 2, (float(scores.max()) + 1) / 2  # all unsafe at low, none at high
    guard.calibrate({"threshold": high, "languages": {"fr": low}, "rule": "best_f1"})
    guard.save_pretrained(tmp_path / "g")
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    langs = ["fr", "en", None, "FR", "de", "fr"]
    src.write_text(
        "".join(
            json.dumps({"text": t, **({"language": lang} if lang else {})}) + "\n" for t, lang in zip(texts, langs)
        ),
        encoding="utf-8",
    )
    assert main([str(tmp_path / "g"), "-i", str(src), "-o", str(out), "--device", "cpu"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["threshold"] for r in rows] == [low, high, high, low, high, low]
    assert [r["unsafe"] for r in rows] == [True, False, False, True, False, True]
    assert all(r["unsafe"] == (r["score"] > r["threshold"]) for r in rows)
    # --language for inputs without one; --threshold for every input
    assert main([str(tmp_path / "g"), "-i", str(src), "-o", str(out), "--device", "cpu", "--language", "fr"]) == 0
    assert [json.loads(line)["threshold"] for line in out.read_text().splitlines()][2] == low
    assert main([str(tmp_path / "g"), "-i", str(src), "-o", str(out), "--device", "cpu", "--threshold", "0.3"]) == 0
    assert {json.loads(line)["threshold"] for line in out.read_text().splitlines()} == {0.3}


def test_checkpoints_without_or_with_bad_thresholds(guard, tmp_path):
    guard.save_pretrained(tmp_path / "old")
    assert not (tmp_path / "old" / THRESHOLDS_FILE).exists()
    old = Guardrail.from_pretrained(tmp_path / "old", device="cpu")
    assert old.threshold == 0.5 and old.language_thresholds == {} and old.calibration is None

    bad = tmp_path / "old" / THRESHOLDS_FILE
    for content, match in [
        ({"threshold": 1.5, "languages": {}}, "'threshold' must be a number in \\(0, 1\\)"),
        ({"threshold": 0.3, "languages": {"en": 0.0}}, "languages.en must be a number in \\(0, 1\\)"),
        ({"threshold": "0.3"}, "'threshold' must be a number"),
        ([0.3], "expected a JSON object"),
    ]:
        bad.write_text(json.dumps(content))
        with pytest.raises(GuardrailError, match=match) as e:
            Guardrail.from_pretrained(tmp_path / "old", device="cpu")
        assert str(bad) in str(e.value)
    bad.write_text("{not json")
    with pytest.raises(GuardrailError, match="not valid JSON"):
        Guardrail.from_pretrained(tmp_path / "old", device="cpu")


# ---------------------------------------------------------------- the stage
def family_keys(samples) -> set[str]:
    return {s.family or s.id for s in samples if not s.response}  # a response example is its prompt's


def test_thresholds_are_chosen_on_held_out_families_the_report_never_measures():
    from duoguard.factory import build_taxonomy, load_training_samples, split_for_calibration, split_with_responses

    cfg = compose(["output_dir=/tmp/x"])
    samples = load_training_samples(cfg, build_taxonomy(cfg))
    train, calibration, heldout = split_for_calibration(samples, cfg)
    assert calibration and heldout
    keys = [family_keys(part) for part in (train, calibration, heldout)]
    assert not keys[0] & keys[1] and not keys[0] & keys[2] and not keys[1] & keys[2]
    # the same training rows as the game's split; the held-out families are divided about in half
    train_only, heldout_all = split_with_responses(samples, cfg)
    assert [s.id for s in train] == [s.id for s in train_only]
    assert sorted(s.id for s in calibration + heldout) == sorted(s.id for s in heldout_all)
    assert 0.35 < len(keys[1]) / (len(keys[1]) + len(keys[2])) < 0.65
    # each part's answers are made from its own prompts
    for part in (calibration, heldout):
        prompts = {s.id for s in part if not s.response}
        answers = [s for s in part if s.response]
        assert answers and all(s.provenance["response_for"] in prompts for s in answers)
    # nothing to calibrate: the whole held-out split is measured
    none = compose(["output_dir=/tmp/x", "guardrail.calibration.rule=none"])
    _, calibration, heldout = split_for_calibration(samples, none)
    assert calibration == [] and [s.id for s in heldout] == [s.id for s in heldout_all]


def test_the_calibration_share_is_the_split_and_a_small_held_out_split_still_gives_both_sides(caplog):
    from duoguard.factory import build_taxonomy, load_training_samples, split_for_calibration

    cfg = compose(["output_dir=/tmp/x", "guardrail.calibration.split=0.25"])
    samples = load_training_samples(cfg, build_taxonomy(cfg))
    _, calibration, heldout = split_for_calibration(samples, cfg)
    calibrating, measured = len(family_keys(calibration)), len(family_keys(heldout))
    assert 0.15 < calibrating / (calibrating + measured) < 0.35
    # two held-out families, each its own stratum: one calibrates, one is measured
    tiny = compose(["output_dir=/tmp/x", "data.heldout_fraction=0.02"])
    _, calibration, heldout = split_for_calibration(samples, tiny)
    assert len(family_keys(calibration)) == len(family_keys(heldout)) == 1
    # one held-out family: the warning says which side is empty
    one = [s for s in samples if s.family == samples[0].family]  # a request and its translations
    with caplog.at_level("WARNING"):
        _, calibration, heldout = split_for_calibration(
            one, compose(["output_dir=/tmp/x", "data.heldout_fraction=0.99"])
        )
    assert calibration + heldout and not (calibration and heldout)
    assert "held-out split has one family" in caplog.text


def test_a_calibration_split_outside_zero_one_names_the_key():
    from duoguard.config import ConfigError

    for bad in ("0", "1.0"):
        with pytest.raises(ConfigError, match=r"guardrail\.calibration\.split.*must be in \(0, 1\)"):
            compose(["output_dir=/tmp/x", f"guardrail.calibration.split={bad}"])


@pytest.mark.slow
def test_stage_writes_thresholds_and_reports_f1_at_half_and_calibrated(tmp_path, cache_dir):
    from duoguard.factory import build_taxonomy, load_training_samples, split_for_calibration
    from duoguard.stages.guardrail import run_guardrail_stage

    cfg = compose(
        [
            f"output_dir={tmp_path}",
            "logger=none",
            "progress=false",
            "guardrail.train.epochs=2",
            "guardrail.calibration.min_rows=20",
        ]
    )
    result = run_guardrail_stage(cfg)
    checkpoint = tmp_path / "guardrail"
    stored = json.loads((checkpoint / THRESHOLDS_FILE).read_text())
    cal = result["calibration"]
    assert cal["rule"] == "best_f1" and "all" not in cal["fallback"] and cal["split"] == 0.5
    assert stored["threshold"] == cal["threshold"] and stored["languages"] == cal["languages"]
    loaded = Guardrail.from_pretrained(checkpoint, device="cpu")
    assert loaded.threshold == cal["threshold"] and loaded.language_thresholds == cal["languages"]

    held = result["eval"]["benchmarks"]["heldout"]
    report = json.loads((tmp_path / "guardrail_report.json").read_text())
    assert report["eval"]["benchmarks"]["heldout"]["overall"]["f1@0.5"] == held["overall"]["f1@0.5"]
    for m in [held["overall"], *held["languages"].values()]:
        assert m["f1@0.5"] is not None and m["f1"] is not None and m["auprc"] is not None
    # the thresholds were chosen on the calibration rows and the held-out rows are the others
    count = lambda part: sum(n for c in result["data"][part].values() for n in c.values())  # noqa: E731
    _, calibration_rows, heldout_rows = split_for_calibration(load_training_samples(cfg, build_taxonomy(cfg)), cfg)
    assert cal["n"] == count("calibration") == len(calibration_rows) > 0
    assert held["overall"]["n"] == count("heldout") == len(heldout_rows) > 0
    # a calibrated threshold is the best F1 on the rows it was chosen on: never below 0.5's there
    labels = np.array([s.unsafe for s in calibration_rows])
    scores = np.array(loaded.unsafe_scores([s.text for s in calibration_rows], [s.response for s in calibration_rows]))
    langs = np.array([s.language for s in calibration_rows])
    for lang, t in [("all", cal["threshold"]), *cal["languages"].items()]:
        mask = np.ones(len(langs), bool) if lang == "all" else langs == lang
        assert (
            binary_metrics(labels[mask], scores[mask], t)["f1"] >= binary_metrics(labels[mask], scores[mask], 0.5)["f1"]
        )
    for lang, t in cal["languages"].items():
        assert held["languages"][lang]["threshold"] == t
    md = (tmp_path / "guardrail_report.md").read_text()
    assert "f1@0.5" in md and "## Decision thresholds" in md and "| heldout" in md and "calibration safe" in md
