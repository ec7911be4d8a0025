"""Memory plan vs measured: what `duoguard/plan.py` predicts per GPU for a role, beside the peak
`torch.cuda.max_memory_allocated` of that role's work on random-weight models of the same shape.

    python scripts/bench_memory.py --device cuda                     # Qwen2.5-0.5B and -1.5B shapes, bf16
    python scripts/bench_memory.py --device cpu --shapes tiny        # the code paths and the plan only

Shapes: `0.5b` and `1.5b` build Qwen2.5-0.5B / -1.5B from conf/shapes/<name>/config.json with random
weights on the device (no hub); `tiny` is the offline tiny Qwen2 of conf/*/model/tiny.yaml. The sizes
are those of experiment=duoguard_qwen on one GPU (`GPU_SIZES`: guardrail batches of 16 x 512 tokens,
predict batches of 256 texts; GRPO with 4 prompts x 8 completions of 256 + 256 tokens; the target
answering 32 prompts with 512 new tokens), with every model in bf16; `tiny` keeps tiny_cpu's sizes.
The plan is `make_plan("pipeline", cfg)` of that same config (hardware: one GPU of 141 GiB).

Cases (each measured from an empty device, so the peak holds its weights, states and activations):

- guardrail train: the guardrail's own `Guardrail.fit` (transformers Trainer, fp32 weights under
  bf16 autocast, AdamW), 2 optimizer steps on texts that fill `guardrail.max_length`, then one predict
  batch of the plan's size with the trained model (the game's guardrail does both);
- guardrail predict: `Guardrail.predict` with bf16 weights on texts of `guardrail.max_length` tokens;
- generator grpo: the memory of one GRPO step written out by hand (not TRL's trainer: that one runs in
  scripts/bench_game.py): fp32 policy under bf16 autocast with fused AdamW, the KL reference in bf16,
  generation of the step's completions (KV cache), then the update on prompt + completion tokens with
  logits for the completion tokens in fp32 (log-softmax), gradient checkpointing as configured; one
  update before the generation so AdamW's states exist during it;
- target generate: `generate` in bf16 at `target.batch_size` prompts of the plan's prompt length.

On CPU nothing is measured (torch's CPU allocator keeps no peak): the measured column is empty and the
run only checks that every case's code path runs and that the plan has a number for it.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GIB = 2**30
# experiment=duoguard_qwen's batch and length settings, on one GPU with the local runtime
GPU_SIZES = [
    "guardrail.max_length=512",
    "guardrail.predict_batch_size=256",
    "guardrail.train.per_device_batch_size=16",
    "guardrail.train.global_batch_size=16",
    "guardrail.train.gradient_checkpointing=true",
    "generator.sampling.max_new_tokens=256",
    "generator.grpo.num_generations=8",
    "generator.grpo.prompts_per_step=4",
    "generator.grpo.gradient_checkpointing=true",
    "generator.grpo.beta=0.04",
    "target.batch_size=32",
    "target.sampling.max_new_tokens=512",
    "hardware.gpus_per_node=1",
    "hardware.gpu_memory_gib=141",
]
HUB_IDS = {  # shipped shapes (plan.SHAPES) the plan reads without the hub
    "0.5b": {"guardrail": "Qwen/Qwen2.5-0.5B", "lm": "Qwen/Qwen2.5-0.5B-Instruct"},
    "1.5b": {"guardrail": "Qwen/Qwen2.5-0.5B", "lm": "Qwen/Qwen2.5-1.5B-Instruct"},
}
# case -> (plan stage, plan role); the shapes each case runs on
CASES = {
    "guardrail train": ("game", "guardrail"),
    "guardrail predict": ("eval", "guardrail"),
    "generator grpo": ("game", "generator"),
    "target generate": ("eval", "target"),
}
CASES_OF_SHAPE = {
    "tiny": list(CASES),
    "0.5b": ["guardrail train", "guardrail predict", "generator grpo"],
    "1.5b": ["generator grpo", "target generate"],
}


def config_for(shape: str, device: str, out: str):
    """The pipeline config whose plan and sizes a shape's cases use."""
    from duoguard.config import compose

    overrides = ["logger=none", "progress=false", f"output_dir={out}", f"runtime.device={device}"]
    if shape != "tiny":
        ids = HUB_IDS[shape]
        overrides += GPU_SIZES + [
            f"guardrail.model.name_or_path={ids['guardrail']}",
            f"generator.model.name_or_path={ids['lm']}",
            f"target.model.name_or_path={ids['lm']}",
            *[f"{role}.model.precision=bf16" for role in ("guardrail", "generator", "target")],
        ]
    return compose("pipeline", overrides)


def hf_config(model_cfg, num_labels: int | None = None):
    """The transformers config of a model section: the shipped shape's config.json, or the tiny one."""
    from transformers import AutoConfig

    from duoguard.plan import shape_source, tiny_shape

    source, folder = shape_source(model_cfg)
    if source == "tiny":
        cfg = AutoConfig.for_model(**tiny_shape(model_cfg.tiny))
    elif folder is not None:
        cfg = AutoConfig.from_pretrained(folder)
    else:
        raise SystemExit(f"no shape for {model_cfg.name_or_path}")
    if num_labels is not None:
        cfg.num_labels = num_labels
    return cfg


def random_model(model_cfg, device: str, dtype, num_labels: int | None = None, pad_token_id: int = 0):
    """Random weights of the model's shape, built on `device` directly (fast on a GPU)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    torch.manual_seed(0)
    cfg = hf_config(model_cfg, num_labels)
    cfg.pad_token_id = pad_token_id
    auto = AutoModelForSequenceClassification if num_labels is not None else AutoModelForCausalLM
    if num_labels is not None:
        cfg.problem_type = "multi_label_classification"
    with torch.device(device):
        model = auto.from_config(cfg, dtype=dtype)
    return model


def long_texts(tokenizer, tokens: int, n: int) -> list[str]:
    """`n` texts of more than `tokens` tokens (seed texts joined), so every batch is padded to the max length."""
    from duoguard.data.readers import builtin_seed_texts

    seeds = builtin_seed_texts()
    counts = [len(x) for x in tokenizer(seeds)["input_ids"]]
    out = []
    for i in range(n):
        words, total, k = [], 0, i
        while total < 1.2 * tokens + 8:
            words.append(seeds[k % len(seeds)])
            total += counts[k % len(seeds)]
            k += 1
        out.append(" ".join(words))
    short = min(len(x) for x in tokenizer(out)["input_ids"])
    if short <= tokens:
        raise RuntimeError(f"long_texts: a text of {short} tokens, wanted more than {tokens}")
    return out


def autocast(device: str, dtype):
    import contextlib

    import torch

    if device.startswith("cuda") and dtype != torch.float32:
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def checkpointing(model, on: bool) -> None:
    """Activation checkpointing on or off (transformers 5.2x renamed gradient_checkpointing_*)."""
    name = "activation_checkpointing" if hasattr(model, "activation_checkpointing_enable") else "gradient_checkpointing"
    getattr(model, f"{name}_{'enable' if on else 'disable'}")()


# ---------------------------------------------------------------- the cases
def guardrail_train(cfg, device: str, work: Path) -> str:
    import dataclasses

    import numpy as np
    import torch

    from duoguard.data.readers import builtin_seed_texts
    from duoguard.models import build_tiny_tokenizer
    from duoguard.plan import _guardrail_predict
    from duoguard.roles.guardrail import Guardrail

    g, t = cfg.guardrail, cfg.guardrail.train
    tok = build_tiny_tokenizer(builtin_seed_texts(), 1024)
    categories = list(cfg.taxonomy.categories)
    net = random_model(g.model, device, torch.float32, len(categories), tok.pad_token_id)
    guard = Guardrail(net, tok, max_length=g.max_length)
    n = 2 * t.global_batch_size  # two optimizer steps
    texts = long_texts(tok, g.max_length, n)
    labels = np.zeros((n, len(categories)), dtype=np.float32)
    labels[::2, 0] = 1.0
    train_cfg = dataclasses.replace(t, max_steps=2, logging_steps=1000)
    guard.fit(texts, labels, train_cfg, output_dir=work / "guardrail", precision=g.model.precision, progress=False)
    # the game's guardrail also scores with the trained (fp32) model: the plan's activations are the larger pass
    planned = _guardrail_predict(cfg)
    guard.batch_size, guard.max_batch_tokens = planned.batch, planned.batch * g.max_length
    guard.predict(long_texts(tok, g.max_length, planned.batch))
    return f"{t.per_device_batch_size} x {g.max_length}"


def guardrail_predict(cfg, device: str, work: Path) -> str:
    from duoguard.data.readers import builtin_seed_texts
    from duoguard.models import build_tiny_tokenizer, pick_dtype
    from duoguard.plan import _guardrail_predict
    from duoguard.roles.guardrail import Guardrail

    g = cfg.guardrail
    tok = build_tiny_tokenizer(builtin_seed_texts(), 1024)
    categories = list(cfg.taxonomy.categories)
    net = random_model(g.model, device, pick_dtype(g.model.precision, device), len(categories), tok.pad_token_id)
    planned = _guardrail_predict(cfg)  # the batch the plan assumes (predict_batch_size within the token budget)
    guard = Guardrail(net, tok, max_length=g.max_length, batch_size=planned.batch)
    guard.max_batch_tokens = planned.batch * g.max_length
    guard.predict(long_texts(tok, g.max_length, 2 * planned.batch))
    return f"{planned.batch} x {g.max_length}"


def generator_grpo(cfg, device: str, work: Path) -> str:
    import torch

    from duoguard.models import pick_dtype
    from duoguard.plan import PROMPT_TOKENS

    gen = cfg.generator
    grpo, sampling = gen.grpo, gen.sampling
    dtype = pick_dtype(gen.model.precision, device)
    batch = grpo.prompts_per_step * grpo.num_generations // gen.num_workers
    new = sampling.max_new_tokens
    policy = random_model(gen.model, device, torch.float32)
    reference = random_model(gen.model, device, dtype) if grpo.beta > 0 else None
    if reference is not None:
        reference.eval().requires_grad_(False)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-6, fused=device.startswith("cuda"))
    vocab = policy.config.vocab_size
    prompts = torch.randint(0, vocab, (batch, PROMPT_TOKENS), device=device)

    def update(ids):
        policy.train()
        if grpo.gradient_checkpointing:
            checkpointing(policy, True)
        with autocast(device, dtype):
            logits = policy(ids, logits_to_keep=new + 1, use_cache=False).logits[:, :-1]
            logps = torch.log_softmax(logits.float(), -1).gather(-1, ids[:, -new:, None]).squeeze(-1)
            loss = -logps.mean()
            if reference is not None:
                with torch.no_grad():
                    ref_logits = reference(ids, logits_to_keep=new + 1, use_cache=False).logits[:, :-1]
                    ref = torch.log_softmax(ref_logits.float(), -1).gather(-1, ids[:, -new:, None]).squeeze(-1)
                    del ref_logits
                loss = loss + grpo.beta * (torch.exp(ref - logps) - (ref - logps) - 1).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        del logits, logps, loss

    full = torch.randint(0, vocab, (batch, PROMPT_TOKENS + new), device=device)
    update(full)  # AdamW's states exist from here on
    policy.eval()
    checkpointing(policy, False)
    with torch.no_grad(), autocast(device, dtype):
        out = generate_exactly(policy, prompts, new)
    update(out)
    return f"{batch} x {PROMPT_TOKENS}+{new}"


def generate_exactly(model, prompts, new: int):
    """Sampled continuations of exactly `new` tokens (no early end: the planned length is what is held)."""
    import torch

    return model.generate(
        prompts,
        attention_mask=torch.ones_like(prompts),
        max_new_tokens=new,
        min_new_tokens=new,
        do_sample=True,
        pad_token_id=0,
    )


def target_generate(cfg, device: str, work: Path) -> str:
    import torch

    from duoguard.models import pick_dtype
    from duoguard.plan import PROMPT_TOKENS

    t = cfg.target
    model = random_model(t.model, device, pick_dtype(t.model.precision, device)).eval()
    new = t.sampling.max_new_tokens
    prompts = torch.randint(0, model.config.vocab_size, (t.batch_size, PROMPT_TOKENS), device=device)
    with torch.no_grad():
        generate_exactly(model, prompts, new)
    return f"{t.batch_size} x {PROMPT_TOKENS}+{new}"


RUNNERS = {
    "guardrail train": guardrail_train,
    "guardrail predict": guardrail_predict,
    "generator grpo": generator_grpo,
    "target generate": target_generate,
}


def planned_role(plan, case: str):
    stage, role = CASES[case]
    return next(r for r in plan.roles if r.stage == stage and r.role == role)


def run_case(case: str, shape: str, cfg, plan, device: str, work: Path) -> dict:
    import torch

    role = planned_role(plan, case)
    row = {
        "case": case,
        "shape": shape,
        "model": role.model,
        "precision": role.precision,
        "batch_x_len": None,
        "planned_gib": role.total / GIB if role.total is not None else None,
        "planned_terms_gib": {k: v / GIB for k, v in role.terms.items()},
        "measured_gib": None,
        "ratio": None,
        "seconds": None,
        "error": None,
    }
    cuda = device.startswith("cuda")
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    start = time.perf_counter()
    try:
        row["batch_x_len"] = RUNNERS[case](cfg, device, work)
        if cuda:
            torch.cuda.synchronize()
            row["measured_gib"] = (torch.cuda.max_memory_allocated() - base) / GIB
            if row["planned_gib"]:
                row["ratio"] = row["measured_gib"] / row["planned_gib"]
    except Exception as e:  # one case failing (out of memory, say) must not stop the others
        traceback.print_exc()
        row["error"] = f"{type(e).__name__}: {e}"[:500]
    row["seconds"] = time.perf_counter() - start
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda or cpu (cpu: plan and code paths only)")
    ap.add_argument("--shapes", default="0.5b,1.5b", help=f"comma list of {', '.join(CASES_OF_SHAPE)}")
    ap.add_argument("--cases", default=",".join(CASES), help="comma list of cases to run")
    ap.add_argument("--json", default=None, help="write the rows to this file (rewritten after every case)")
    args = ap.parse_args()

    import torch

    from duoguard.models import quiet_transformers
    from duoguard.plan import make_plan
    from duoguard.report import markdown_table

    quiet_transformers()
    shapes = args.shapes.split(",")
    wanted = args.cases.split(",")
    for s in shapes:
        if s not in CASES_OF_SHAPE:
            raise SystemExit(f"--shapes: unknown shape {s!r} (known: {', '.join(CASES_OF_SHAPE)})")
    for c in wanted:
        if c not in CASES:
            raise SystemExit(f"--cases: unknown case {c!r} (known: {', '.join(CASES)})")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda but no CUDA device is visible")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
        for shape in shapes:
            cfg = config_for(shape, args.device, tmp)
            plan = make_plan("pipeline", cfg)
            for case in CASES_OF_SHAPE[shape]:
                if case not in wanted:
                    continue
                row = run_case(case, shape, cfg, plan, args.device, Path(tmp))
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "planned_terms_gib"}), flush=True)
                if args.json:
                    Path(args.json).write_text(json.dumps(rows, indent=2))
    cols = ["case", "shape", "precision", "batch_x_len", "planned_gib", "measured_gib", "ratio", "seconds", "error"]
    print(
        f"\ndevice {args.device}, torch {torch.__version__}"
        + (" (CPU: nothing measured)" if args.device == "cpu" else "")
    )
    print(markdown_table(cols, [[r[c] if r[c] is not None else "-" for c in cols] for r in rows], digits=2))
    return 1 if any(r["error"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
