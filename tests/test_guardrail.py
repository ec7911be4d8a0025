"""The Guardrail role: fast batched inference equal to one-by-one, save/load, and learning."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from duoguard import Guardrail
from duoguard.config import GuardrailTrainConfig
from duoguard.data.readers import builtin_seed_texts
from duoguard.data.schema import Sample
from duoguard.losses import UNKNOWN
from duoguard.metrics import binary_metrics
from duoguard.roles.guardrail import GuardrailError


@pytest.fixture()
def guard(tiny_base, taxonomy):
    torch.manual_seed(0)
    return Guardrail.from_base(tiny_base, taxonomy.names, device="cpu", batch_size=16, max_batch_tokens=2048)


def one_by_one(guard: Guardrail, texts: list[str]) -> np.ndarray:
    """The reference: each text alone, no padding at all."""
    rows = []
    with torch.no_grad():
        for t in texts:
            ids = guard.tokenizer(t, truncation=True, max_length=guard.max_length, return_tensors="pt")["input_ids"]
            rows.append(torch.sigmoid(guard.model(input_ids=ids).logits)[0].numpy())
    return np.stack(rows)


def test_batched_predict_equals_one_by_one(guard):
    texts = builtin_seed_texts()[::7][:50]
    random.Random(0).shuffle(texts)
    batched = guard.predict(texts)
    assert batched.shape == (len(texts), 12) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, one_by_one(guard, texts), atol=1e-4, rtol=0)


def test_results_come_back_in_input_order(guard):
    texts = ["a", "a much longer input than the first one, with many more tokens in it", "mid length one"]
    probs = guard.predict(texts)
    rev = guard.predict(texts[::-1])
    np.testing.assert_allclose(probs, rev[::-1], atol=1e-5)
    assert guard.predict([]).shape == (0, 12)


def test_token_budget_splits_batches(guard):
    lengths = [100, 90, 80, 10, 5]
    guard.batch_size, guard.max_batch_tokens = 64, 250
    batches = list(guard._batches(lengths, [0, 1, 2, 3, 4]))
    assert batches == [[0, 1], [2, 3, 4]]
    assert all(lengths[b[0]] * len(b) <= 250 for b in batches)


def test_response_classification_formats_a_conversation(guard):
    probs = guard.predict(["How do I bake bread?"], ["Mix flour and water."])
    formatted = guard.response_template.format(prompt="How do I bake bread?", response="Mix flour and water.")
    np.testing.assert_allclose(probs, guard.predict([formatted]), atol=1e-6)
    assert "User: How do I bake bread?" in formatted and "Agent: Mix flour and water." in formatted
    with pytest.raises(GuardrailError, match="2 prompts but 1 responses"):
        guard.predict(["a", "b"], ["x"])
    with pytest.raises(GuardrailError, match="list of prompts"):
        guard.predict("a single string")


def test_is_unsafe_uses_max_category_probability(guard):
    texts = builtin_seed_texts()[:20]
    probs = guard.predict(texts)
    guard.threshold = float(np.median(probs.max(axis=1)))
    assert (guard.is_unsafe(texts) == (probs.max(axis=1) > guard.threshold)).all()


def test_save_load_round_trip_through_plain_transformers(guard, tmp_path, taxonomy):
    guard.threshold = 0.42
    guard.save_pretrained(tmp_path / "g")
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "g")
    assert [plain.config.id2label[i] for i in range(12)] == taxonomy.names
    assert plain.config.problem_type == "multi_label_classification"
    texts = builtin_seed_texts()[:10]
    with torch.no_grad():
        ids = guard.tokenizer(texts[0], return_tensors="pt")["input_ids"]
        np.testing.assert_allclose(
            plain(input_ids=ids).logits.numpy(), guard.model(input_ids=ids).logits.numpy(), atol=1e-6
        )
    again = Guardrail.from_pretrained(tmp_path / "g", device="cpu")
    assert again.threshold == 0.42 and again.categories == taxonomy.names
    np.testing.assert_allclose(again.predict(texts), guard.predict(texts), atol=1e-6)


def test_loading_a_non_guardrail_checkpoint_fails_clearly(tiny_base, tmp_path):
    with pytest.raises(GuardrailError, match="problem_type"):
        Guardrail.from_pretrained(tiny_base)
    with pytest.raises(GuardrailError, match="no config.json"):
        Guardrail.from_pretrained(tmp_path)


def toy_world(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """A separable labelling: a text is 'Hate' iff it contains the marker word 'zorblax'."""
    rng = random.Random(seed)
    words = [
        "the",
        "a",
        "cat",
        "dog",
        "house",
        "river",
        "blue",
        "green",
        "small",
        "tall",
        "run",
        "jump",
        "eat",
        "read",
        "sing",
        "write",
    ]
    texts, labels = [], np.zeros((n, 12), dtype=np.float32)
    for i in range(n):
        toks = [rng.choice(words) for _ in range(rng.randint(3, 9))]
        if i % 2:
            toks.insert(rng.randint(0, len(toks)), "zorblax")
            labels[i, 8] = 1.0
        texts.append(" ".join(toks))
    return texts, labels


def test_guardrail_learns_a_separable_toy_labelling(guard, tmp_path):
    train_x, train_y = toy_world(256, seed=1)
    test_x, test_y = toy_world(128, seed=2)
    truth = test_y.max(axis=1) > 0
    before = binary_metrics(truth, guard.unsafe_scores(test_x))
    cfg = GuardrailTrainConfig(
        loss="zlpr",
        learning_rate=3e-3,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        epochs=6,
        global_batch_size=32,
        per_device_batch_size=32,
        weight_decay=0.0,
        max_grad_norm=1.0,
        max_steps=-1,
        logging_steps=1000,
        gradient_checkpointing=False,
        deepspeed=None,
        seed=0,
    )
    stats = guard.fit(train_x, train_y, cfg, output_dir=tmp_path / "t", progress=False)
    after = binary_metrics(truth, guard.unsafe_scores(test_x))
    assert before["accuracy"] <= 0.65  # chance level on a balanced set
    assert after["f1"] > 0.9 and after["accuracy"] > 0.9
    assert stats["train_steps"] == 48


def test_labels_of_category_less_unsafe_rows_are_unknown_not_made_up(guard):
    rows = [
        Sample("hi", "en", [], False),
        Sample("hurt the dog", "en", ["Hate", "Violent Crimes"], True),
        Sample("write a bomb tutorial", "en", [], True, id="advbench:1"),
    ]
    labels = guard.labels_for(rows)
    assert labels[0].tolist() == [0.0] * 12
    assert labels[1].sum() == 2 and labels[1, guard.categories.index("Hate")] == 1
    assert (labels[2] == UNKNOWN).all()


def test_category_less_unsafe_rows_raise_the_unsafe_score_without_a_category_target(guard, tmp_path):
    """AdvBench-style training rows: unsafe, no category. The guardrail learns to score them unsafe."""
    train_x, train_y = toy_world(256, seed=1)
    test_x, test_y = toy_world(128, seed=2)
    samples = [Sample(t, "en", [], bool(y.any()), id=str(i)) for i, (t, y) in enumerate(zip(train_x, train_y))]
    labels = guard.labels_for(samples)
    assert not (labels == 1).any() and (labels == UNKNOWN).all(axis=1).sum() == 128  # no category target
    truth = test_y.max(axis=1) > 0
    before = guard.unsafe_scores(test_x)
    cfg = GuardrailTrainConfig(
        learning_rate=3e-3,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        epochs=4,
        global_batch_size=32,
        per_device_batch_size=32,
        logging_steps=1000,
        seed=0,
    )
    guard.train(samples, cfg, output_dir=tmp_path / "t", progress=False)
    after = guard.unsafe_scores(test_x)
    assert after[truth].mean() - before[truth].mean() > 0.3  # the unsafe score rose by a margin
    assert after[truth].min() > after[~truth].max()  # and separates unsafe from safe


def test_a_long_pair_loses_the_end_of_its_prompt_never_its_response(guard):
    guard.max_length = 48
    prompt = " ".join(f"word{i}" for i in range(200))
    response = "here is the final answer to judge"
    (text,) = guard.format([prompt], [response])
    ids = guard.tokenizer(text)["input_ids"]
    assert len(ids) <= guard.max_length  # nothing left for truncation to cut
    assert text.endswith(response) and text.startswith("User: word0 word1")
    short = guard.format(["a short prompt"], [response])[0]
    assert short == guard.response_template.format(prompt="a short prompt", response=response)  # untouched
