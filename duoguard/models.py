"""Model loading by hub id or local path, and the offline tiny-model factory.

Everything downstream loads checkpoints by path with the `Auto*` classes, exactly as it would
load Qwen2.5-0.5B from the hub. `name_or_path: tiny` resolves to a folder in the cache that
holds a byte-level BPE tokenizer trained on the seed texts and a small random Qwen2: real
checkpoint files, built once per shape and reused.

Why a BPE and not ByT5: a ByT5 tokenizer saved next to a Qwen2 config reloads through
`AutoTokenizer` as a Qwen2 tokenizer that encodes everything to zero tokens (REFERENCE §8).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from duoguard.atomic import atomic_dir
from duoguard.config import ModelConfig, Precision, TinyModelConfig

log = logging.getLogger(__name__)

TINY = "tiny"
PAD_TOKEN = "<|pad|>"
EOS_TOKEN = "<|endoftext|>"
TINY_FORMAT_VERSION = 1  # bump when the factory's output changes

# Covers characters the seed texts may lack, so common scripts get merges of their own.
_ALPHABET_HINT = (
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:!?¿¡'\"()[]{}-_/@#%&*+=<>"
    " àâäæçéèêëîïôœùûüÿáíóúñ ßöäü ìòù ÀÉÈÇÑÖÜ 你好世界 안녕하세요 مرحبا привет नमस्ते สวัสดี"
)


def cache_root(cache_dir: str | os.PathLike) -> Path:
    return Path(os.path.expanduser(str(cache_dir)))


def build_tiny_tokenizer(texts: Iterable[str], vocab_size: int, *, all_bytes: bool = True):
    """A byte-level BPE trained on `texts`.

    With `all_bytes` (the default) it round-trips any text in any language and never yields
    empty ids. Without, its alphabet is only what `texts` contain: toy worlds use that to get a
    vocabulary of a few dozen whole-word tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD_TOKEN, EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if all_bytes else [],
        show_progress=False,
    )
    tok.train_from_iterator([*texts, _ALPHABET_HINT] if all_bytes else list(texts), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD_TOKEN, eos_token=EOS_TOKEN, model_max_length=2048
    )


def tiny_checkpoint(tiny: TinyModelConfig, cache_dir: str | os.PathLike, corpus: list[str]) -> Path:
    """Path of the tiny causal-LM checkpoint for this shape and corpus, built if absent."""
    spec = dict(sorted(dataclasses.asdict(tiny).items()))
    key = json.dumps({"v": TINY_FORMAT_VERSION, "spec": spec, "corpus": _digest(corpus)}, sort_keys=True)
    folder = cache_root(cache_dir) / "tiny" / hashlib.sha256(key.encode()).hexdigest()[:16]

    def build(tmp: Path) -> None:
        import torch
        from transformers import Qwen2Config, Qwen2ForCausalLM

        quiet_transformers()
        tokenizer = build_tiny_tokenizer(corpus, int(spec["vocab_size"]))
        config = Qwen2Config(
            vocab_size=len(tokenizer),
            hidden_size=int(spec["hidden_size"]),
            intermediate_size=int(spec["intermediate_size"]),
            num_hidden_layers=int(spec["num_layers"]),
            num_attention_heads=int(spec["num_heads"]),
            num_key_value_heads=int(spec["num_kv_heads"]),
            max_position_embeddings=int(spec["max_position_embeddings"]),
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=None,
            tie_word_embeddings=True,
        )
        with torch.random.fork_rng():
            torch.manual_seed(int(spec["seed"]))
            model = Qwen2ForCausalLM(config)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "duoguard_tiny.json").write_text(json.dumps(spec, indent=2))

    if not folder.exists():
        log.info("building tiny offline model %s", folder)
    return atomic_dir(folder, build)


def _digest(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]


def resolve_model_path(model_cfg: ModelConfig, cache_dir: str | os.PathLike, corpus: list[str]) -> str:
    """Hub id or local path to load; builds the tiny model when `name_or_path` is `tiny`."""
    name = model_cfg.name_or_path
    if name == TINY:
        return str(tiny_checkpoint(model_cfg.tiny, cache_dir, corpus))
    local = Path(name).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise FileNotFoundError(f"model folder {local} has no config.json: not a transformers checkpoint")
        return str(local)
    if name.startswith((".", "/", "~")):
        raise FileNotFoundError(f"model path {name} does not exist")
    return name  # a hub id


def pick_device(name: str = "auto") -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        from duoguard.errors import UserError

        raise UserError(f"runtime.device={name} but no CUDA device is visible (runtime.device=auto picks one)")
    return name


def pick_dtype(precision: Precision, device: str):
    """`auto` is bf16 on GPUs that have it, fp16 on older GPUs and fp32 on CPU."""
    import torch

    if precision == Precision.auto:
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return {Precision.fp32: torch.float32, Precision.bf16: torch.bfloat16, Precision.fp16: torch.float16}[
        Precision(precision)
    ]


def load_tokenizer(
    path: str, *, trust_remote_code: bool = False, revision: str | None = None, padding_side: str = "right"
):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(
        path, trust_remote_code=trust_remote_code, revision=revision, padding_side=padding_side
    )
    if tok.pad_token is None:  # Qwen and Llama base models ship no pad token: DuoGuard uses EOS
        tok.pad_token = tok.eos_token
    return tok


def attention_kwargs(model_cfg: ModelConfig) -> dict[str, str]:
    """from_pretrained's attention argument when the config names a kernel (else transformers' default)."""
    impl = model_cfg.attn_implementation
    return {"attn_implementation": impl} if impl else {}


def load_causal_lm(path: str, model_cfg: ModelConfig, device: str):
    """(model on `device`, left-padding tokenizer) of a causal LM for inference, with the model
    config's precision, trust_remote_code and hub revision (a local folder ignores the revision)."""
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    trust, revision = model_cfg.trust_remote_code, model_cfg.revision
    tokenizer = load_tokenizer(path, trust_remote_code=trust, revision=revision, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(
        path,
        dtype=pick_dtype(model_cfg.precision, device),
        trust_remote_code=trust,
        revision=revision,
        **attention_kwargs(model_cfg),
    ).to(device)
    return model, tokenizer


def quiet_transformers() -> None:
    """Keep load reports ("newly initialized: score.weight") out of the user's console."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
