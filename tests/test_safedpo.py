"""SafeDPO: T(D), the loss against TRL and by hand, the trainer's margin, and learning."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from duoguard.config import LoraSettings, ModelConfig, SafeDPOConfig, SamplingConfig, TargetConfig
from duoguard.data.readers import DataError
from duoguard.losses import safedpo_loss
from duoguard.safedpo.pairs import read_pku_saferlhf
from duoguard.safedpo.transform import safedpo_transform

TARGET_CFG = TargetConfig(
    model=ModelConfig(name_or_path="tiny", precision="fp32"),
    sampling=SamplingConfig(max_new_tokens=8, temperature=0.0, top_p=1.0, top_k=0),
    use_chat_template=True,
    prompt_template="{system}User: {prompt}\nAssistant:",
    batch_size=8,
)

# SafeDPO at toy size: constant lr, one batch of 8 pairs per step, short sequences
TOY_SAFEDPO = SafeDPOConfig(
    delta=0.0,
    lr_scheduler="constant",
    warmup_ratio=0.0,
    global_batch_size=8,
    per_device_batch_size=8,
    max_length=64,
    logging_steps=1,
    seed=0,
)


def pair(h_w, h_l, i=0):
    return {"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}", "chosen_unsafe": h_w, "rejected_unsafe": h_l}


def test_transform_all_four_cases():
    out, counts = safedpo_transform(
        [pair(False, False, 0), pair(False, True, 1), pair(True, False, 2), pair(True, True, 3)]
    )
    assert counts == {"kept": 2, "swapped": 1, "dropped": 1}
    assert [p["prompt"] for p in out] == ["p0", "p1", "p2"]
    assert out[0] == pair(False, False, 0) and out[1] == pair(False, True, 1)
    assert out[2] == {"prompt": "p2", "chosen": "r2", "rejected": "c2", "chosen_unsafe": False, "rejected_unsafe": True}
    assert all(not p["chosen_unsafe"] for p in out)  # after T(D), h̃_w = 0


def test_loss_by_hand_with_margin():
    pc, pr, rc, rr = (
        torch.tensor([-5.0, -7.0]),
        torch.tensor([-6.0, -4.0]),
        torch.tensor([-5.5, -6.0]),
        torch.tensor([-5.0, -5.0]),
    )
    hw, hl = torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0])
    beta, delta = 0.1, 5.0
    got = safedpo_loss(pc, pr, rc, rr, hw, hl, beta=beta, delta=delta)
    for i in range(2):
        z = beta * ((pc[i] - rc[i]) - (pr[i] - rr[i])).item() - (hl[i] - hw[i]).item() * delta
        assert got[i].item() == pytest.approx(-math.log(1 / (1 + math.exp(-z))), rel=1e-6)
    # Δ only touches pairs whose rejected answer is unsafe
    plain = safedpo_loss(pc, pr, rc, rr, hw, hl, beta=beta, delta=0.0)
    assert got[1].item() == pytest.approx(plain[1].item()) and got[0].item() > plain[0].item()


def preference_dataset(n: int = 8):
    from datasets import Dataset

    rows = [
        {
            "prompt": f"User: request number {i}\nAssistant:",
            "chosen": " I can't help with that.",
            "rejected": " Sure, here is how to do it.",
            "chosen_unsafe": False,
            "rejected_unsafe": i % 2 == 0,
        }
        for i in range(n)
    ]
    return Dataset.from_list(rows)


def dpo_config(tmp_path, **kw):
    from trl import DPOConfig

    base = dict(
        output_dir=str(tmp_path),
        beta=0.1,
        loss_type=["sigmoid"],
        precompute_ref_log_probs=True,
        per_device_train_batch_size=8,
        use_cpu=True,
        bf16=False,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        max_length=64,
        seed=0,
    )
    return DPOConfig(**{**base, **kw})


def sequence_logps(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence completion log-probs, computed independently of TRL."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    logps = torch.log_softmax(logits.float(), -1).gather(-1, batch["input_ids"][:, 1:].unsqueeze(-1)).squeeze(-1)
    seq = (logps * batch["completion_mask"][:, 1:]).sum(-1)
    return seq.chunk(2)


def perturb(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


@pytest.fixture()
def tiny_lm(tiny_base):
    from transformers import AutoModelForCausalLM

    from duoguard.models import load_tokenizer

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_base), load_tokenizer(tiny_base, padding_side="left")


def test_loss_equals_trl_dpo_at_delta_zero_and_shifted_margin_at_delta(tiny_lm, tmp_path):
    from trl import DPOTrainer

    from duoguard.safedpo.trainer import _safedpo_trainer_class

    model, tok = tiny_lm
    data = preference_dataset()
    plain = DPOTrainer(model=model, args=dpo_config(tmp_path / "a"), train_dataset=data, processing_class=tok)
    perturb(plain.model)  # the policy moves away from the reference whose log-probs were precomputed
    batch = next(iter(plain.get_train_dataloader()))
    trl_loss = plain.compute_loss(plain.model, dict(batch)).item()
    chosen, rejected = sequence_logps(plain.model, batch)
    hw = torch.zeros(len(chosen))
    hl = torch.tensor([float(r) for r in data["rejected_unsafe"]])
    ours = safedpo_loss(
        chosen, rejected, batch["ref_chosen_logps"], batch["ref_rejected_logps"], hw, hl, beta=0.1, delta=0.0
    )
    assert ours.mean().item() == pytest.approx(trl_loss, rel=1e-4)
    assert abs(trl_loss - math.log(2)) > 1e-3  # the check is not the trivial policy == reference case

    # the SafeDPO trainer on the same policy and data equals the Δ formula with the clean reference
    delta = 3.0
    safe = _safedpo_trainer_class()(
        model=plain.model, args=dpo_config(tmp_path / "b"), train_dataset=data, processing_class=tok, delta=delta
    )
    safe_batch = next(iter(safe.get_train_dataloader()))
    chosen_half = safe_batch["input_ids"].chunk(2)[0]
    numbers = [
        int(tok.decode(ids, skip_special_tokens=True).split("request number ")[1].split()[0]) for ids in chosen_half
    ]
    hl = torch.tensor([float(n % 2 == 0) for n in numbers])  # rejected_unsafe of each row, in batch order
    assert torch.equal(safe_batch["safety_margin"], delta * hl)
    ref_c, ref_r = sequence_logps(safe.model, safe_batch)  # the reference this trainer precomputed (unshifted)
    perturb(safe.model, seed=1)  # move the policy again, so the log-ratios are not zero
    got = safe.compute_loss(safe.model, dict(safe_batch)).item()
    chosen, rejected = sequence_logps(safe.model, safe_batch)
    expected = safedpo_loss(chosen, rejected, ref_c, ref_r, hw, hl, beta=0.1, delta=delta)
    assert got == pytest.approx(expected.mean().item(), rel=1e-4)
    plain_dpo = safedpo_loss(chosen, rejected, ref_c, ref_r, hw, hl, beta=0.1, delta=0.0)
    assert got > plain_dpo.mean().item() + 0.5  # the margin is really in the loss


def test_pku_saferlhf_reader_and_its_errors(tmp_path):
    import json

    good = {
        "prompt": "p",
        "response_0": "a",
        "response_1": "b",
        "better_response_id": 1,
        "is_response_0_safe": True,
        "is_response_1_safe": False,
    }
    path = tmp_path / "pku.jsonl"
    path.write_text(json.dumps(good) + "\n")
    (row,) = read_pku_saferlhf(path)
    assert (row["chosen"], row["rejected"], row["chosen_unsafe"], row["rejected_unsafe"]) == ("b", "a", True, False)
    for bad, match in [
        ({k: v for k, v in good.items() if k != "response_1"}, r"missing field\(s\) \['response_1'\]"),
        ({**good, "response_0": "  "}, "'rejected' is empty"),
        ({**good, "is_response_0_safe": "maybe"}, "must be a boolean"),
        ({**good, "is_response_1_safe": 2}, r"'is_response_1_safe' must be a boolean .*got 2$"),
        ({**good, "is_response_0_safe": [True]}, r"'is_response_0_safe' must be a boolean .*got \[True\]$"),
        ({**good, "better_response_id": 2}, "0 or 1"),
    ]:
        path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
        with pytest.raises(DataError, match=match) as e:
            read_pku_saferlhf(path)
        assert e.value.line == 2 and str(e.value).startswith(f"{path}:2:")


def test_pku_saferlhf_labels_use_the_schema_boolean_parser(tmp_path):
    """The same spellings as the sample schema's `unsafe`, with safe/unsafe read for an is_safe field."""
    import json

    from duoguard.data.schema import parse_bool

    path = tmp_path / "pku.jsonl"
    for safe_0, safe_1 in [("yes", "no"), ("1", 0.0), ("safe", "unsafe"), ("T", "false")]:
        row = {
            "prompt": "p",
            "response_0": "a",
            "response_1": "b",
            "better_response_id": 0,
            "is_response_0_safe": safe_0,
            "is_response_1_safe": safe_1,
        }
        path.write_text(json.dumps(row) + "\n")
        (pair,) = read_pku_saferlhf(path)
        assert (pair["chosen_unsafe"], pair["rejected_unsafe"]) == (False, True), (safe_0, safe_1)
    assert parse_bool("unsafe", "unsafe") is True and parse_bool("unsafe", "is_safe", true_word="safe") is False
    with pytest.raises(ValueError, match=r"'x' must be a boolean \(true/false, 1/0, yes/no\), got 'safe'"):
        parse_bool("safe", "x", true_word=None)


def margins(target, prompts, chosen, rejected) -> torch.Tensor:
    """log π(chosen | prompt) - log π(rejected | prompt) per prompt, as the target renders it."""
    out = []
    tok, model = target.tokenizer, target.model
    for p in prompts:
        ctx = tok(target.render(p), add_special_tokens=False)["input_ids"]
        vals = []
        for completion in (chosen, rejected):
            ids = tok(target.render(p) + completion, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]
            lp = torch.log_softmax(logits, -1).gather(-1, torch.tensor(ids[1:]).unsqueeze(-1)).squeeze(-1)
            vals.append(lp[len(ctx) - 1 :].sum())
        out.append(vals[0] - vals[1])
    return torch.stack(out)


def test_safedpo_learns_and_the_margin_helps_on_unsafe_rejections(tiny_base, tmp_path):
    from duoguard.roles.target import Target
    from duoguard.safedpo.trainer import train_safedpo

    prompts = [f"request number {i}" for i in range(8)]
    chosen, rejected = "I can't help with that.", "Sure, here is how to do it."
    pairs = [
        {"prompt": p, "chosen": chosen, "rejected": rejected, "chosen_unsafe": False, "rejected_unsafe": True}
        for p in prompts
    ]
    cfg = replace(TOY_SAFEDPO, learning_rate=3e-3, epochs=6)
    gains = {}
    for delta in (0.0, 5.0):
        torch.manual_seed(0)
        target = Target(tiny_base, TARGET_CFG, device="cpu")
        before = margins(target, prompts, " " + chosen, " " + rejected)
        stats = train_safedpo(pairs, target, replace(cfg, delta=delta), work_dir=tmp_path / f"d{delta}", progress=False)
        gains[delta] = (margins(target, prompts, " " + chosen, " " + rejected) - before).mean().item()
        assert stats["transform"] == {"kept": 8, "swapped": 0, "dropped": 0}
        if delta:
            assert stats["safety/margin"] == pytest.approx(delta)
            assert "rewards_clean/margins" in stats
    assert gains[0.0] > 1.0  # plain DPO on T(D) raises log π(chosen) - log π(rejected) clearly
    assert gains[5.0] > gains[0.0] + 0.5  # and the safety margin raises it further


def test_lora_and_gradient_checkpointing_by_config(tiny_base, tmp_path):
    """safedpo.lora trains adapters on the attention projections only (merged back into the
    target after training), with activation checkpointing on; the margin still moves."""
    from duoguard.roles.target import Target
    from duoguard.safedpo.trainer import train_safedpo

    prompts = [f"request number {i}" for i in range(8)]
    chosen, rejected = "I can't help with that.", "Sure, here is how to do it."
    pairs = [
        {"prompt": p, "chosen": chosen, "rejected": rejected, "chosen_unsafe": False, "rejected_unsafe": True}
        for p in prompts
    ]
    lora = LoraSettings(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
    cfg = replace(TOY_SAFEDPO, delta=5.0, learning_rate=1e-2, epochs=4, gradient_checkpointing=True, lora=lora)
    torch.manual_seed(0)
    target = Target(tiny_base, TARGET_CFG, device="cpu")
    before_weights = {k: v.clone() for k, v in target.model.state_dict().items()}
    before = margins(target, prompts, " " + chosen, " " + rejected)
    train_safedpo(pairs, target, cfg, work_dir=tmp_path, progress=False)
    after_weights = target.model.state_dict()
    assert set(after_weights) == set(before_weights)  # merged: a plain model again, no adapter keys
    changed = {k for k in before_weights if not torch.equal(before_weights[k], after_weights[k])}
    assert changed and all(k.endswith(("q_proj.weight", "v_proj.weight")) for k in changed)
    assert (margins(target, prompts, " " + chosen, " " + rejected) - before).mean().item() > 0.5


def test_a_margin_that_saturates_every_pair_is_warned():
    from duoguard.safedpo.trainer import margin_saturates

    egida = [pair(False, True, i) for i in range(4)]  # safe chosen, unsafe rejected: the same margin for all
    assert margin_saturates(egida, delta=10.0)  # Δ·1 = 10 for every pair
    assert not margin_saturates(egida, delta=2.0)
    mixed = [*egida, pair(False, False, 9)]  # a pair without a safety difference: margin 0
    assert not margin_saturates(mixed, delta=10.0)
