"""SafeDPO trainer overhead: our SafeDPOTrainer against plain TRL DPOTrainer, side by side.

    python scripts/bench_safedpo.py                    # CPU: tiny and small random Qwen2 shapes
    python scripts/bench_safedpo.py --shapes 1b --device cuda --steps 20

Both trainers get the same model (same seed), batch size, data and DPOConfig (precomputed
reference log-probs); ours adds the SafeDPO margin (Δ = 10, half the pairs with an unsafe
rejected answer). Each variant runs in its own process so peak memory is its own: peak RSS on
CPU, `torch.cuda.max_memory_allocated` on GPU. Every batch holds the same rows (one triple
repeated; half the pairs' rejected answer marked unsafe), so every step does the same work; step
time is the median over timed steps after warm-up, best of the interleaved repeats. Target:
overhead <= 5%.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPES = {  # hidden, intermediate, layers, heads, kv heads, vocab
    "tiny": (64, 128, 2, 4, 2, 1024),
    "small": (256, 768, 4, 4, 2, 1024),
    "1b": (2048, 5632, 16, 16, 8, 32000),  # ~1B parameters (TinyLlama-like shape), for a GPU
}


def _run(variant: str, shape: str, steps: int, warmup: int, device: str, queue) -> None:
    import torch
    from datasets import Dataset
    from transformers import Qwen2Config, Qwen2ForCausalLM, TrainerCallback
    from trl import DPOTrainer

    from duoguard.config import SafeDPOConfig
    from duoguard.data.readers import builtin_seed_texts
    from duoguard.models import build_tiny_tokenizer, quiet_transformers
    from duoguard.safedpo.trainer import _safedpo_trainer_class, dpo_args
    from duoguard.training import quiet_trainer

    quiet_transformers()
    torch.manual_seed(0)
    tok = build_tiny_tokenizer(builtin_seed_texts(), 1024)
    tok.padding_side = "left"
    h, inter, layers, heads, kv, vocab = SHAPES[shape]
    model = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=max(vocab, len(tok)),
            hidden_size=h,
            intermediate_size=inter,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
    )
    texts = builtin_seed_texts()
    # one prompt/answers triple repeated: every batch has the same shape, so step times compare
    # like for like (with varied rows, the shuffled batches' padded lengths swing a step by +-40%)
    prompt, chosen, rejected = f"User: {texts[0]}\nAssistant:", " " + " ".join(texts[1:3]), " " + " ".join(texts[3:5])
    rows = [
        {
            "prompt": prompt,
            "chosen": chosen,
            "rejected": rejected,
            "chosen_unsafe": False,
            "rejected_unsafe": i % 2 == 0,
        }
        for i in range(96)
    ]
    cfg = SafeDPOConfig(
        delta=10.0,
        beta=0.1,
        learning_rate=1e-5,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        epochs=100,
        global_batch_size=8,
        per_device_batch_size=8,
        max_length=256,
        weight_decay=0.0,
        gradient_checkpointing=False,
        deepspeed=None,
        logging_steps=1000,
        seed=0,
    )
    with tempfile.TemporaryDirectory() as tmp:
        args = dpo_args(cfg, output_dir=tmp, device=device, precision="auto", progress=False)
        args.max_steps = warmup + steps
        data = Dataset.from_list(rows)
        if variant == "trl":
            data = data.remove_columns(["chosen_unsafe", "rejected_unsafe"])
            trainer = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
        else:
            trainer = _safedpo_trainer_class()(
                model=model, args=args, train_dataset=data, processing_class=tok, delta=cfg.delta
            )
        quiet_trainer(trainer)
        times: list[float] = []

        class Clock(TrainerCallback):
            def on_step_begin(self, *a, **k):
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                self.t = time.perf_counter()

            def on_step_end(self, *a, **k):
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - self.t)

        trainer.add_callback(Clock())
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
    peak = (
        torch.cuda.max_memory_allocated()
        if device.startswith("cuda")
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    queue.put(
        {
            "variant": variant,
            "step_s": statistics.median(times[warmup:]),
            "peak_mib": peak / 2**20,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        }
    )


def measure(variant: str, shape: str, steps: int, warmup: int, device: str) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run, args=(variant, shape, steps, warmup, device, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    from duoguard.report import markdown_table

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default="tiny,small")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3, help="alternate trl/safedpo runs this many times")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = []
    for shape in args.shapes.split(","):
        runs = {"trl": [], "safedpo": []}
        for _ in range(args.repeats):  # interleaved, so drift in machine load hits both
            for variant in ("trl", "safedpo"):
                runs[variant].append(measure(variant, shape, args.steps, args.warmup, args.device))
        trl = min(r["step_s"] for r in runs["trl"])
        ours = min(r["step_s"] for r in runs["safedpo"])
        rows.append(
            {
                "shape": shape,
                "params_m": runs["trl"][0]["params_m"],
                "device": args.device,
                "trl_step_ms": 1000 * trl,
                "safedpo_step_ms": 1000 * ours,
                "overhead_pct": 100 * (ours / trl - 1),
                "trl_peak_mib": max(r["peak_mib"] for r in runs["trl"]),
                "safedpo_peak_mib": max(r["peak_mib"] for r in runs["safedpo"]),
            }
        )
    cols = list(rows[0])
    print(markdown_table(cols, [[r[c] for c in cols] for r in rows], digits=2))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
