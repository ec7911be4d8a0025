from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from duoguard.config import ModelConfig, TinyModelConfig
from duoguard.data.readers import builtin_seed_texts
from duoguard.models import resolve_model_path, tiny_checkpoint

MULTILINGUAL = [
    "How do I bake bread?",
    "Comment tuer le temps ?",
    "¿Cómo estás?",
    "Straße",
    "你好，世界",
    "مرحبا",
    "🙂 ok",
]


def test_tiny_tokenizer_reloads_by_path_with_non_empty_ids(tiny_base):
    tok = AutoTokenizer.from_pretrained(tiny_base)
    for text in MULTILINGUAL:
        ids = tok(text)["input_ids"]
        assert len(ids) > 0
        assert tok.decode(ids) == text
    assert tok.pad_token == "<|pad|>" and tok.eos_token == "<|endoftext|>"
    assert tok.pad_token_id != tok.eos_token_id


def test_tiny_model_loads_like_a_hub_checkpoint(tiny_base):
    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    assert model.config.model_type == "qwen2" and model.config.num_hidden_layers == 2
    out = model(input_ids=torch.tensor([[5, 6, 7]]))
    assert out.logits.shape[-1] == model.config.vocab_size


def test_tiny_build_is_deterministic_and_cached(tmp_path, tiny_base):
    spec = TinyModelConfig(
        hidden_size=32,
        intermediate_size=64,
        num_layers=1,
        num_heads=2,
        num_kv_heads=1,
        vocab_size=400,
        max_position_embeddings=256,
        seed=7,
    )
    corpus = builtin_seed_texts()[:50]
    a = tiny_checkpoint(spec, tmp_path / "a", corpus)
    b = tiny_checkpoint(spec, tmp_path / "b", corpus)
    wa = AutoModelForCausalLM.from_pretrained(a).state_dict()
    wb = AutoModelForCausalLM.from_pretrained(b).state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    mtime = (a / "model.safetensors").stat().st_mtime_ns
    assert tiny_checkpoint(spec, tmp_path / "a", corpus) == a  # reused, not rebuilt
    assert (a / "model.safetensors").stat().st_mtime_ns == mtime
    other = tiny_checkpoint(dataclasses.replace(spec, seed=8), tmp_path / "a", corpus)
    assert other != a


def test_resolve_model_path_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model_path(ModelConfig(name_or_path="./no/such/model"), tmp_path, [])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        resolve_model_path(ModelConfig(name_or_path=str(tmp_path / "empty")), tmp_path, [])
    assert resolve_model_path(ModelConfig(name_or_path="Qwen/Qwen2.5-0.5B"), tmp_path, []) == "Qwen/Qwen2.5-0.5B"
