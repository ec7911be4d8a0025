"""The memory plan: what every role needs on each GPU, set against the GPUs it gets, before anything loads.

Parameters are counted by building the model from its `config.json` on torch's meta device (shapes
without storage, no weights read; accelerate's `init_empty_weights` was not used: under transformers 5
it leaves tied embeddings untied, counting Qwen2.5-0.5B as 0.63 B). A hub id without a local
folder uses a shape shipped in conf/shapes/ (`SHAPES`); any other model is reported as an unknown shape.

Per GPU, for P parameters, A trained parameters (A = P, or LoRA's adapter parameters), N ranks and
w = 2 bytes per element in bf16/fp16 (4 in fp32), the terms are (REFERENCE §9):

    weights      (P [+ A with LoRA]) x w                       / N under ZeRO-3; 0 with offload_param
    master       A x 4 (fp32 master copy, mixed precision only) / N under ZeRO-1+; 0 with offload_optimizer
    grads        A x w                                         / N under ZeRO-2+
    optimizer    A x 8 (AdamW's two fp32 moments)               / N under ZeRO-1+; 0 with offload_optimizer
    reference    P x w, the GRPO reference policy when beta > 0 / N under ZeRO-3 (TRL shards it only then)
    vllm         vllm_gpu_memory_utilization x GPU memory (TRL's colocate mode); with sleep mode only
                 what it exceeds the activations by (it sleeps during the update)
    activations  the largest working set of the role's passes (below)

so a mixed-precision full fine-tune with AdamW costs 2 + 4 + 2 + 8 = 16 bytes per parameter, as
does an fp32 one (4 + 4 + 8). Every trained role keeps fp32 weights and trains under bf16 autocast
(4 + 4 + 8: the same 16 bytes, split differently); the GRPO reference loads in the compute precision.
SafeDPO precomputes its reference log-probs, so it keeps no reference model.

Activations, a rough estimate from the architecture (hidden h, MLP width I, L layers, vocabulary V,
e bytes per activation element, b sequences of s tokens per rank, s_l tokens with logits):

    training       b·s·e·L·(5h + 4I)            what a LLaMA/Qwen2 layer saves for backward per token
                                                (norm in/out, q/k/v, attention output, the MLP's gate,
                                                up, activation and product; no s² term: SDPA/flash)
                   b·s·e·(L·h + 5h + 4I)        with activation checkpointing (each layer's input, and
                                                one layer recomputed at a time)
                 + b·s_l·V·8                    an LM's logits: bf16, an fp32 copy, their gradient
    inference      b·s·(kv + e·(6h + 4I)) + b·s_l·V·w
                                                kv = 2·L·kv_heads·head_dim·w bytes of KV cache per token,
                                                one layer's intermediates, the logits asked for;
                                                generation under ZeRO-3 also gathers the full weights
                                                (TRL's ds3_gather_for_generation): + P·w·(1 - 1/N)

SafeDPO is two phases that never hold memory at once, each planned on its own: building the pairs (the
target answering, the answer judge, the helpfulness scorer, a model responder: stage "safedpo pairs")
and training (stage "safedpo"). A prompt is planned as `PROMPT_TOKENS` long. These are arithmetic
estimates, checked against published parameter counts only (tests/test_plan.py), not measured on GPUs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from duoguard.config import (
    AnswerJudge,
    AnswerJudgeConfig,
    Config,
    EvalMode,
    GuardrailUpdate,
    HardwareConfig,
    HelpfulnessScorer,
    LoraSettings,
    ModelConfig,
    PairRecipe,
    Precision,
    RefusalJudge,
    Responder,
    RuntimeName,
    conf_dir,
    config_file,
)
from duoguard.errors import UserError

log = logging.getLogger(__name__)

GIB = 2**30
PROMPT_TOKENS = 256  # planned length of an instruction prompt (a seed rewritten, a judge's question)
ADAM_BYTES = 8  # AdamW's two fp32 moments per trained parameter
MASTER_BYTES = 4  # an fp32 master copy per trained parameter under mixed precision
TRAIN_LOGIT_BYTES = 8  # per token and vocabulary entry in training: bf16 logits, an fp32 copy, the gradient
MAX_RANKS = 64  # the largest ZeRO-3 world the plan suggests

# hub ids -> conf/shapes/<folder>/config.json, for a plan without the hub (a local folder wins)
SHAPES = {
    "Qwen/Qwen2.5-0.5B": "qwen2.5-0.5b",
    "Qwen/Qwen2.5-0.5B-Instruct": "qwen2.5-0.5b",
    "Qwen/Qwen2.5-1.5B": "qwen2.5-1.5b",
    "Qwen/Qwen2.5-1.5B-Instruct": "qwen2.5-1.5b",
    "Qwen/Qwen2.5-7B": "qwen2.5-7b",
    "Qwen/Qwen2.5-7B-Instruct": "qwen2.5-7b",
    "meta-llama/Llama-3.1-8B": "llama-3.1-8b",
    "meta-llama/Llama-3.1-8B-Instruct": "llama-3.1-8b",
    "meta-llama/Meta-Llama-3.1-8B": "llama-3.1-8b",
    "meta-llama/Meta-Llama-3.1-8B-Instruct": "llama-3.1-8b",
    "cognitivecomputations/dolphin-2.9.4-llama3.1-8b": "llama-3.1-8b",  # a Llama-3.1-8B fine-tune
}

# the stages each app runs, in order
APP_STAGES = {
    "guardrail": ("guardrail",),
    "eval": ("eval",),
    "game": ("game",),
    "safedpo": ("safedpo",),
    "pipeline": ("game", "safedpo", "eval"),
}

TERMS = ("weights", "master", "grads", "optimizer", "reference", "vllm", "activations")


class PlanError(UserError):
    """A role cannot fit the GPUs the hardware section states; the message names it and the ways out."""


# ---------------------------------------------------------------- shapes
@dataclass(frozen=True)
class Shape:
    """What the memory terms need to know of a model, counted on the meta device."""

    source: str  # where the shape came from
    params: int
    embedding_params: int  # input embeddings, and the output layer when it is not tied to them
    hidden: int
    intermediate: int
    layers: int
    vocab: int
    kv_per_token: int  # K and V elements per token over all layers
    linears: tuple[tuple[str, int, int], ...]  # (module name, in, out) of every linear layer

    def lora_params(self, lora: LoraSettings) -> int:
        """Adapter parameters, r x (in + out) per adapted linear layer (PEFT matches a target by name suffix)."""
        targets = set(lora.target_modules)
        return sum(lora.r * (i + o) for name, i, o in self.linears if name.rsplit(".", 1)[-1] in targets)


def shape_source(model: ModelConfig) -> tuple[str, str | None]:
    """(how the plan reads the shape, the config.json's folder; None = tiny or unknown)."""
    name = model.name_or_path
    if name == "tiny":
        return "tiny", None
    local = Path(name).expanduser()
    if (local / "config.json").is_file():
        return f"local {local}", str(local)
    if name in SHAPES:
        return f"shipped conf/shapes/{SHAPES[name]}", str(Path(conf_dir()) / "shapes" / SHAPES[name])
    return "unknown", None


def model_shape(model: ModelConfig, num_labels: int | None = None) -> Shape | None:
    """The model's shape as a causal LM (or a sequence classifier with `num_labels` outputs); None when
    there is no config.json to read (a hub id the plan does not ship)."""
    source, folder = shape_source(model)
    if source == "unknown":
        return None
    if source != "tiny":
        try:
            return _count(source, folder, num_labels, model.trust_remote_code)
        except (OSError, ValueError, KeyError) as e:  # a folder transformers cannot read: planned as unknown
            log.warning("memory plan: cannot read the shape of %s (%s)", model.name_or_path, e)
            return None
    return _count("tiny", json.dumps(tiny_shape(model.tiny), sort_keys=True), num_labels, False)


def tiny_shape(t) -> dict:
    """The tiny model's transformers config (Qwen2) as keyword arguments, without its tokenizer."""
    return dict(
        model_type="qwen2",
        vocab_size=t.vocab_size,  # the trained tokenizer's size is at most this
        hidden_size=t.hidden_size,
        intermediate_size=t.intermediate_size,
        num_hidden_layers=t.num_layers,
        num_attention_heads=t.num_heads,
        num_key_value_heads=t.num_kv_heads,
        max_position_embeddings=t.max_position_embeddings,
        tie_word_embeddings=True,
    )


@functools.cache
def _count(source: str, config: str, num_labels: int | None, trust_remote_code: bool) -> Shape:
    """Build the model on the meta device (no storage, no weights) and count; `config` is a folder or JSON."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if source == "tiny":
        spec = json.loads(config)
        cfg = AutoConfig.for_model(spec.pop("model_type"), **spec)
    else:
        cfg = AutoConfig.from_pretrained(config, trust_remote_code=trust_remote_code)
    if num_labels is not None:
        cfg.num_labels = num_labels
    auto = AutoModelForSequenceClassification if num_labels is not None else AutoModelForCausalLM
    with torch.device("meta"):
        model = auto.from_config(cfg, trust_remote_code=trust_remote_code)
    params = sum(p.numel() for p in model.parameters())  # a tied weight is one parameter
    embeddings = [model.get_input_embeddings().weight]
    out = model.get_output_embeddings() if num_labels is None else None
    if out is not None and out.weight is not embeddings[0]:
        embeddings.append(out.weight)
    text = cfg.get_text_config()
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    linears = tuple(
        (name, m.in_features, m.out_features) for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)
    )
    return Shape(
        source=source,
        params=params,
        embedding_params=sum(e.numel() for e in embeddings),
        hidden=text.hidden_size,
        intermediate=getattr(text, "intermediate_size", 4 * text.hidden_size),
        layers=text.num_hidden_layers,
        vocab=text.vocab_size,
        kv_per_token=2 * text.num_hidden_layers * kv_heads * head_dim,
        linears=linears,
    )


# ---------------------------------------------------------------- one role's terms
@dataclass(frozen=True)
class Zero:
    """What a DeepSpeed JSON says about memory: the ZeRO stage and what is offloaded to the CPU."""

    stage: int = 0
    offload_optimizer: bool = False
    offload_param: bool = False

    @staticmethod
    def from_json(path: str | None) -> Zero:
        if not path:
            return Zero()
        z = json.loads(Path(config_file(path)).read_text()).get("zero_optimization", {})
        stage = z.get("stage", 0)

        def offloaded(key: str) -> bool:
            return str((z.get(key) or {}).get("device", "none")) in ("cpu", "nvme")

        return Zero(
            stage=stage if isinstance(stage, int) else 0,
            offload_optimizer=offloaded("offload_optimizer"),
            offload_param=stage == 3 and offloaded("offload_param"),
        )


@dataclass(frozen=True)
class Pass:
    """One forward a role runs: b sequences of s tokens, logits for s_logits of them; `train` keeps
    activations for backward, else a KV cache is held when `kv`; `gather` = generation under ZeRO-3."""

    batch: int
    tokens: int
    logit_tokens: int
    train: bool = False
    kv: bool = False
    gather: bool = False


@dataclass(frozen=True)
class Work:
    """What one role does with its model in one stage, in the units the terms need."""

    shape: Shape
    weight_bytes: int  # per element as the model sits on the GPU: 2 (bf16/fp16) or 4 (fp32)
    act_bytes: int  # per activation element (2 under bf16 autocast)
    passes: tuple[Pass, ...]
    trains: bool = False
    master: bool = False  # an fp32 master copy (mixed precision)
    lora: LoraSettings | None = None
    ranks: int = 1
    zero: Zero = Zero()
    checkpointing: bool = False
    reference: bool = False
    vllm_bytes: float = 0.0
    vllm_sleeps: bool = False  # vLLM gives its share back during the update
    lm: bool = True  # a causal LM's logits (a classifier's head is a few outputs)

    def memory(self) -> dict[str, float]:
        """Bytes per GPU, term by term (the module's docstring gives the formulas)."""
        s, n, z = self.shape, self.ranks, self.zero
        trained = (s.lora_params(self.lora) if self.lora else s.params) if self.trains else 0
        weights = (s.params + (trained if self.lora else 0)) * self.weight_bytes
        if z.stage == 3:
            weights = 0.0 if z.offload_param else weights / n
        states = 0 if z.offload_optimizer else 1
        shard1, shard2 = (n if z.stage >= 1 else 1), (n if z.stage >= 2 else 1)
        out = {
            "weights": weights,
            "master": states * trained * MASTER_BYTES / shard1 if self.master else 0.0,
            "grads": trained * self.weight_bytes / shard2,
            "optimizer": states * trained * ADAM_BYTES / shard1,
            "reference": s.params * self.weight_bytes / (n if z.stage == 3 else 1) if self.reference else 0.0,
            "vllm": self.vllm_bytes,
            "activations": max((self._working_set(p) for p in self.passes), default=0.0),
        }
        if self.vllm_sleeps:  # asleep during the update: only what its share exceeds the activations by adds
            out["vllm"] = max(0.0, out["vllm"] - out["activations"])
        return out

    def _working_set(self, p: Pass) -> float:
        s, e = self.shape, self.act_bytes
        vocab = s.vocab if self.lm else 0
        if p.train:
            per_layer = 5 * s.hidden + 4 * s.intermediate
            kept = s.layers * s.hidden + per_layer if self.checkpointing else s.layers * per_layer
            return p.batch * p.tokens * e * kept + p.batch * p.logit_tokens * vocab * TRAIN_LOGIT_BYTES
        kv = s.kv_per_token * self.weight_bytes if p.kv else 0
        out = p.batch * p.tokens * (kv + e * (6 * s.hidden + 4 * s.intermediate))
        out += p.batch * p.logit_tokens * vocab * self.weight_bytes
        if p.gather and self.zero.stage == 3 and self.ranks > 1:
            out += s.params * self.weight_bytes * (1 - 1 / self.ranks)
        return out


# ---------------------------------------------------------------- the plan
@dataclass
class RolePlan:
    """One role in one stage: its estimate per GPU and the GPU it gets."""

    stage: str
    role: str
    model: str
    gpus: str  # what the role gets, as the table shows it
    group: str  # roles with the same group share one GPU
    budget: float | None  # bytes of that GPU (share) the role may use; None = not planned (CPU)
    work: Work | None  # None: unknown shape
    precision: str
    ways: Callable[[RolePlan, float | None], list[str]] | None = None  # (plan, bytes it may use) -> ways out
    note: str = ""

    def ways_out(self, room: float | None) -> list[str]:
        """Concrete ways to fit in `room` bytes (its budget less what shares the GPU with it)."""
        return self.ways(self, room) if self.ways and self.work else []

    @property
    def terms(self) -> dict[str, float]:
        return self.work.memory() if self.work else {}

    @property
    def total(self) -> float | None:
        return sum(self.terms.values()) if self.work else None

    @property
    def largest(self) -> tuple[str, float]:
        return max(self.terms.items(), key=lambda kv: kv[1]) if self.work else ("?", 0.0)

    @property
    def optimizer(self) -> str:
        w = self.work
        if w is None or not w.trains:
            return "inference"
        zero = f"ZeRO-{w.zero.stage}" if w.zero.stage else ("DDP" if w.ranks > 1 else "no ZeRO")
        offload = "+offload" if w.zero.offload_optimizer or w.zero.offload_param else ""
        return f"AdamW {zero}{offload} x{w.ranks}"

    @property
    def lora(self) -> str:
        w = self.work
        return f"r={w.lora.r}: {_count_text(w.shape.lora_params(w.lora))}" if w and w.trains and w.lora else "-"

    def line(self) -> str:
        """One sentence for logs and out-of-memory errors."""
        if self.work is None:
            return f"{self.role}: shape unknown ({self.note})"
        name, biggest = self.largest
        budget = f" of {_size(self.budget)} planned" if self.budget else ""
        return f"{self.role} needs ~{_size(self.total)} per device{budget} (largest term: {name} {_size(biggest)})"


@dataclass
class Plan:
    app: str
    hardware: HardwareConfig
    roles: list[RolePlan]
    gpus_asked: dict[str, tuple[float, str]]  # stage -> (GPUs it asks for, how)

    def groups(self) -> dict[tuple[str, str], list[RolePlan]]:
        out: dict[tuple[str, str], list[RolePlan]] = {}
        for r in self.roles:
            out.setdefault((r.stage, r.group), []).append(r)
        return out

    def problems(self) -> list[str]:
        """Why the run cannot fit the stated hardware; empty when it fits (or it is a CPU run)."""
        if self.hardware.gpus_per_node == 0:
            return []
        out = []
        for (stage, group), members in self.groups().items():
            known = [r for r in members if r.work is not None]
            budget = members[0].budget
            if budget is None or not known:
                continue
            total = sum(r.total for r in known)
            if total <= budget:
                continue
            worst = max(known, key=lambda r: r.total)
            name, biggest = worst.largest
            others = ", ".join(repr(r.role) for r in members if r is not worst)
            shared = f" (on {group} with {others}: ~{_size(total)} together)" if others else ""
            room = budget - (total - worst.total)
            ways = "; ".join([*worst.ways_out(room), "a GPU with more memory (hardware.gpu_memory_gib)"])
            out.append(
                f"role '{worst.role}' (stage {stage}) needs ~{_size(worst.total)} per GPU{shared} but has "
                f"{_size(budget)}; its largest term is {name}, {_size(biggest)}. Ways out: {ways}"
            )
        have = self.hardware.gpus
        for stage, (asked, how) in self.gpus_asked.items():
            if asked > have:
                out.append(
                    f"stage {stage} asks for {asked:g} GPUs ({how}) but the hardware has {have} "
                    f"(hardware.nodes={self.hardware.nodes} x hardware.gpus_per_node={self.hardware.gpus_per_node})"
                )
        return out

    def table(self) -> str:
        hw = self.hardware
        head = (
            f"memory plan for duoguard-{self.app}: "
            + (
                f"{hw.nodes} node(s) x {hw.gpus_per_node} GPU(s) of {hw.gpu_memory_gib:g} GiB, "
                f"{hw.usable_fraction:.0%} of each planned"
                if hw.gpus_per_node
                else "a CPU run (hardware.gpus_per_node=0): estimates only, nothing checked"
            )
            + " (GiB per GPU)"
        )
        cols = ["stage", "role", "GPUs", "params", "precision", "optimizer", "LoRA", *TERMS, "total", "budget", "fits"]
        rows = []
        for (_, group), members in self.groups().items():
            for r in members:
                t = r.terms
                shared = len(members) > 1
                fits = "-" if r.budget is None or shared or r.work is None else _yes(r.total <= r.budget)
                rows.append(
                    [
                        r.stage,
                        r.role,
                        r.gpus,
                        _count_text(r.work.shape.params) if r.work else "?",
                        r.precision,
                        r.optimizer,
                        r.lora,
                        *[f"{t[k] / GIB:.1f}" if r.work else "" for k in TERMS],
                        f"{r.total / GIB:.1f}" if r.work else "?",
                        "" if shared or r.budget is None else f"{r.budget / GIB:.1f}",
                        fits if r.work else "unknown shape",
                    ]
                )
            if len(members) > 1:
                known = [r.total for r in members if r.work]
                budget = members[0].budget
                total = sum(known)
                fits = "-" if budget is None else _yes(total <= budget)
                rows.append(
                    [members[0].stage, f"(together on {group})", "", "", "", "", "", *[""] * len(TERMS)]
                    + [f"{total / GIB:.1f}", "" if budget is None else f"{budget / GIB:.1f}", fits]
                )
        widths = [max(len(str(x)) for x in col) for col in zip(cols, *rows)]
        lines = [head, "  ".join(c.ljust(w) for c, w in zip(cols, widths))]
        lines += ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)) for row in rows]
        notes = [f"{r.stage}/{r.role}: {r.note}" for r in self.roles if r.note]
        lines += [f"  note {n}" for n in notes]
        lines += [f"  GPUs: stage {s} asks for {a:g} ({how})" for s, (a, how) in self.gpus_asked.items()]
        return "\n".join(line.rstrip() for line in lines)


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def _size(n: float) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB / 10 else f"{n / 2**20:.1f} MiB"


def _count_text(n: int) -> str:
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return str(n)


# ---------------------------------------------------------------- from the config
def _bytes(precision: Precision) -> int:
    """Element bytes on a GPU: auto is bf16 (or fp16) there."""
    return 4 if precision == Precision.fp32 else 2


def _precision_text(weight_bytes: int, act_bytes: int, master: bool) -> str:
    if weight_bytes == 4:
        return "fp32 + bf16 autocast" if act_bytes == 2 else "fp32"
    return "bf16 + fp32 master" if master else "bf16"


class _Placement:
    """Which GPU (share) each role of a stage gets, from runtime and hardware."""

    def __init__(self, cfg: Config):
        self.cfg, self.hw = cfg, cfg.hardware
        self.per_gpu = self.hw.gpu_memory_gib * GIB * self.hw.usable_fraction if self.hw.gpus_per_node else None

    def process_device(self) -> str | None:
        """The device of a stage that runs in the app's process: None = the CPU."""
        device = self.cfg.runtime.device
        if device == "cpu" or (device == "auto" and not self.hw.gpus_per_node):
            return None
        return "cuda:0" if device in ("auto", "cuda") else device

    def game_role(self, role: str, workers: int) -> tuple[str, str, float | None, float]:
        """(GPUs as shown, group, budget per rank, GPUs asked) of a game role."""
        res = getattr(self.cfg.runtime.roles, role)
        if self.cfg.runtime.name == RuntimeName.local:
            device = res.device or self.process_device()
            if device is None or device == "cpu":
                return "cpu", f"cpu:{role}", None, 0.0
            device = "cuda:0" if device == "cuda" else device
            return device, device, self.per_gpu, 0.0
        share = res.num_gpus if res.num_gpus is not None else self.auto_share(role)
        if not share:
            return "cpu", f"cpu:{role}", None, 0.0
        shown = f"{workers} x {share:g}" if workers > 1 else f"{share:g}"
        budget = self.per_gpu * min(share, 1.0) if self.per_gpu else None
        return shown, role, budget, share * workers

    def auto_share(self, role: str) -> float:
        """runtime.roles.<role>.num_gpus=null, as runtime.placement.share_gpus decides it at start: a whole
        GPU per worker when the hardware has enough for every auto worker; else a whole GPU for each rank
        of a process group and an equal share of the rest for single-worker roles."""
        roles = self.cfg.runtime.roles
        workers = {"generator": self.cfg.generator.num_workers, "guardrail": self.cfg.guardrail.num_workers, "judge": 1}
        auto = [r for r in workers if getattr(roles, r).num_gpus is None]
        fixed = sum(getattr(roles, r).num_gpus * n for r, n in workers.items() if r not in auto)
        left = max(0.0, self.hw.gpus - fixed)
        if left >= sum(workers[r] for r in auto) or workers[role] > 1:
            return 1.0 if self.hw.gpus else 0.0
        singles = [r for r in auto if workers[r] == 1]
        rest = left - sum(workers[r] for r in auto if workers[r] > 1)
        return max(0.0, math.floor(100 * rest / len(singles)) / 100)


def _role(
    stage: str,
    role: str,
    model: ModelConfig,
    where: tuple[str, str, float | None],
    make_work,
    *,
    num_labels: int | None = None,
    ways_out=None,
) -> RolePlan:
    """A RolePlan from the role's model and a function of its shape giving its Work."""
    shape = model_shape(model, num_labels)
    work = make_work(shape) if shape else None
    if work is None:
        precision = "?"
        note = (
            f"no config.json for {model.name_or_path!r} here and no shipped shape: give a local folder "
            f"(name_or_path=/path/to/model) to plan it; shipped: {', '.join(sorted(set(SHAPES.values())))}"
        )
    else:
        precision = _precision_text(work.weight_bytes, work.act_bytes, work.master)
        note = f"shape of {shape.source}" if shape.source.startswith("shipped") else ""
    return RolePlan(stage, role, model.name_or_path, *where, work, precision, ways=ways_out, note=note)


def _offload(key: str) -> str:
    return f"CPU offload of the optimizer states: zero_optimization.offload_optimizer.device=cpu in {key}'s JSON"


def _zero3_ranks(work: Work, room: float | None) -> str:
    """The fewest ZeRO-3 ranks (one GPU each) that fit the role in `room` bytes, as a way out."""
    if room is None:
        return ""
    z3 = dataclasses.replace(work.zero, stage=3)
    for n in range(2, MAX_RANKS + 1):
        total = sum(dataclasses.replace(work, ranks=n, zero=z3).memory().values())
        if total <= room:
            return f"~{total / GIB:.1f} GiB per GPU on {n} ranks"
    return f"more than {MAX_RANKS} ranks"


def _game(cfg: Config, place: _Placement) -> tuple[list[RolePlan], tuple[float, str]]:
    g, gen, judge = cfg.guardrail, cfg.generator, cfg.judge.llm
    grpo, sampling = gen.grpo, gen.sampling
    n = gen.num_workers
    roles, asked = [], []

    where = place.game_role("generator", n)
    asked.append((where[3], f"generator {where[0]}"))
    per_rank = grpo.prompts_per_step * grpo.num_generations // n
    seq = PROMPT_TOKENS + sampling.max_new_tokens
    vllm = grpo.vllm_gpu_memory_utilization * place.hw.gpu_memory_gib * GIB if grpo.use_vllm else 0.0
    wb = _bytes(gen.model.precision)

    def generator_work(shape: Shape) -> Work:
        passes = [Pass(per_rank, seq, sampling.max_new_tokens, train=True)]
        if not grpo.use_vllm:  # vLLM generates inside its own share
            passes.append(Pass(per_rank, seq, 1, kv=True, gather=True))
        return Work(
            shape,
            wb,
            wb,
            tuple(passes),
            trains=True,
            master=wb == 2,
            ranks=n,
            zero=Zero.from_json(grpo.deepspeed),
            checkpointing=grpo.gradient_checkpointing,
            reference=grpo.beta > 0,
            vllm_bytes=vllm,
            vllm_sleeps=grpo.vllm_sleep_mode,
        )

    def generator_ways(p: RolePlan, room: float | None) -> list[str]:
        out = [
            "LoRA: not yet supported for the GRPO generator",
            f"ZeRO-3 over more GPUs: generator.grpo.deepspeed=conf/deepspeed/zero3.json generator.num_workers=N "
            f"(runtime=ray, runtime.roles.generator.num_gpus=1): {_zero3_ranks(p.work, room)}",
            _offload("generator.grpo.deepspeed"),
            f"a smaller batch or length: generator.grpo.prompts_per_step={grpo.prompts_per_step}, "
            f"generator.grpo.num_generations={grpo.num_generations}, "
            f"generator.sampling.max_new_tokens={sampling.max_new_tokens}",
        ]
        if not grpo.gradient_checkpointing:
            out.append("generator.grpo.gradient_checkpointing=true")
        if grpo.beta > 0:
            out.append("generator.grpo.beta=0 loads no reference model")
        return out

    roles.append(_role("game", "generator", gen.model, where[:3], generator_work, ways_out=generator_ways))

    where = place.game_role("guardrail", g.num_workers)
    asked.append((where[3], f"guardrail {where[0]}"))
    trains = not (cfg.game.guardrail_update == GuardrailUpdate.frozen and not cfg.game.warmup_guardrail)
    roles.append(
        _role(
            "game",
            "guardrail",
            g.model,
            where[:3],
            lambda shape: _guardrail_work(cfg, shape, trains),
            num_labels=len(cfg.taxonomy.categories),
            ways_out=lambda p, room: _guardrail_ways(cfg, p),
        )
    )

    if judge.model is not None and judge.model.name_or_path:
        where = place.game_role("judge", 1)
        asked.append((where[3], f"judge {where[0]}"))
        jb = _bytes(judge.model.precision)
        roles.append(
            _role(
                "game",
                "judge",
                judge.model,
                where[:3],
                lambda shape: Work(shape, jb, jb, (Pass(judge.batch_size, seq, seq, kv=True),)),
                ways_out=lambda p, room: [
                    f"a smaller batch: judge.llm.batch_size={judge.batch_size}",
                    "a whole GPU for the judge: runtime.roles.judge.num_gpus=1",
                    "a smaller judge model (judge.llm.model)",
                ],
            )
        )
    if cfg.runtime.name == RuntimeName.local:
        devices = {r.group for r in roles if r.budget is not None}
        return roles, (float(len(devices)), "runtime=local: " + (", ".join(sorted(devices)) or "cpu"))
    return roles, (sum(a for a, _ in asked), ", ".join(how for a, how in asked if a))


def _guardrail_work(cfg: Config, shape: Shape, trains: bool) -> Work:
    """The guardrail trains fp32 weights under autocast and predicts with the same model."""
    g, t = cfg.guardrail, cfg.guardrail.train
    passes = [_guardrail_predict(cfg)]
    if trains:
        passes.append(Pass(t.per_device_batch_size, g.max_length, 0, train=True))
    return Work(
        shape,
        4,
        _bytes(g.model.precision),
        tuple(passes),
        trains=trains,
        zero=Zero.from_json(t.deepspeed),
        ranks=g.num_workers,
        checkpointing=t.gradient_checkpointing,
        lm=False,
    )


def _guardrail_predict(cfg: Config) -> Pass:
    """One inference batch of the guardrail: at most predict_batch_size texts and its token budget."""
    g = cfg.guardrail
    tokens = min(g.predict_batch_size * g.max_length, g.predict_max_tokens or 65_536)
    return Pass(max(1, tokens // g.max_length), g.max_length, 0, kv=True)


def _guardrail_ways(cfg: Config, p: RolePlan) -> list[str]:
    g = cfg.guardrail
    out = [
        f"a smaller batch or length: guardrail.train.per_device_batch_size={g.train.per_device_batch_size}, "
        f"guardrail.max_length={g.max_length}, guardrail.predict_batch_size={g.predict_batch_size}",
        _offload("guardrail.train.deepspeed"),
        "a smaller base model (guardrail.model)",
    ]
    if not g.train.gradient_checkpointing:
        out.append("guardrail.train.gradient_checkpointing=true")
    if cfg.runtime.name == RuntimeName.ray and p.gpus not in ("1", "cpu"):
        out.append("a whole GPU: runtime.roles.guardrail.num_gpus=1")
    return out


def _inference(stage: str, role: str, model: ModelConfig, where, batch: int, tokens: int, key: str) -> RolePlan:
    """A causal LM that only generates (the target before training, a responder, a refusal judge)."""
    b = _bytes(model.precision)
    return _role(
        stage,
        role,
        model,
        where,
        lambda shape: Work(shape, b, b, (Pass(batch, tokens, 1, kv=True),)),
        ways_out=lambda p, room: [f"a smaller batch: {key}={batch}", f"a smaller model ({role})"],
    )


def _answer_judge(
    stage: str, judge: AnswerJudgeConfig, cfg: Config, where, tokens: int, key: str, *, game_path: str | None = None
) -> list[RolePlan]:
    """The model that labels answers unsafe (`safedpo.pairs.judge`, `eval.target.judge`), by its kind: the
    game's guardrail (the checkpoint `game_path` when given, else `guardrail.model`'s shape), another guardrail
    checkpoint (`path`), a Llama-Guard-style LM (one forward over the filled template, whose logits
    transformers computes at every position) or nothing (pattern)."""
    if judge.kind == AnswerJudge.pattern or (judge.kind == AnswerJudge.guardrail and not judge.path):
        return []
    if judge.kind == AnswerJudge.llm_guard:
        if judge.model is None:
            return []
        b, seq = _bytes(judge.model.precision), tokens + PROMPT_TOKENS  # the template around the answer
        return [
            _role(
                stage,
                "answer judge",
                judge.model,
                where,
                lambda shape: Work(shape, b, b, (Pass(judge.batch_size, seq, seq),)),  # logits at every position
                ways_out=lambda p, room: [
                    f"a smaller batch: {key}.batch_size={judge.batch_size}",
                    f"a smaller guard model ({key}.model)",
                ],
            )
        ]
    g = cfg.guardrail
    path = game_path if judge.kind == AnswerJudge.game else judge.path
    model = ModelConfig(name_or_path=path, precision=g.model.precision) if path else g.model
    gb = _bytes(model.precision)
    return [
        _role(
            stage,
            "guardrail" if judge.kind == AnswerJudge.game else "answer judge (guardrail)",
            model,
            where,
            lambda shape: Work(shape, gb, gb, (_guardrail_predict(cfg),), lm=False),
            num_labels=len(cfg.taxonomy.categories),
        )
    ]


def _safedpo(cfg: Config, place: _Placement) -> tuple[list[RolePlan], tuple[float, str]]:
    """Two phases that never share a GPU's memory: the pairs (the target answers, the judge labels, the
    helpfulness scorer and a model responder, all loaded at once in the app's process: stage
    "safedpo pairs"), then training (the ranks load the target afresh: stage "safedpo")."""
    s, t = cfg.safedpo, cfg.target
    device = place.process_device()
    shown = f"{s.num_workers} ranks x 1" if s.num_workers > 1 else "1"
    where = (shown, device, place.per_gpu) if device else ("cpu", "cpu", None)
    one = ("1", device, place.per_gpu) if device else ("cpu", "cpu", None)
    wb = _bytes(t.model.precision)
    answer = PROMPT_TOKENS + t.sampling.max_new_tokens

    def target_work(shape: Shape) -> Work:
        return Work(
            shape,
            wb,
            wb,
            (Pass(2 * s.per_device_batch_size, s.max_length, s.max_length, train=True),),  # chosen + rejected
            trains=True,
            master=wb == 2,
            lora=s.lora,
            ranks=s.num_workers,
            zero=Zero.from_json(s.deepspeed),
            checkpointing=s.gradient_checkpointing,
        )

    def target_ways(p: RolePlan, room: float | None) -> list[str]:
        out = []
        if s.lora is None:
            out.append("LoRA adapters: a preset that sets safedpo.lora (as experiment=safedpo_qwen7b_lora)")
        out += [
            f"ZeRO-3 over more GPUs: safedpo.deepspeed=conf/deepspeed/zero3.json safedpo.num_workers=N: "
            f"{_zero3_ranks(p.work, room)}",
            _offload("safedpo.deepspeed"),
            f"a smaller batch or length: safedpo.per_device_batch_size={s.per_device_batch_size}, "
            f"safedpo.max_length={s.max_length}",
        ]
        if not s.gradient_checkpointing:
            out.append("safedpo.gradient_checkpointing=true")
        return out

    pairs = "safedpo pairs"
    p = s.pairs
    answers = t.batch_size * p.samples_per_prompt  # sequences per generate() call (num_return_sequences)
    roles = [_inference(pairs, "target", t.model, one, answers, answer, "target.batch_size")]
    roles += _answer_judge(pairs, p.judge, cfg, one, answer, "safedpo.pairs.judge", game_path=s.guardrail_path)
    if p.recipe == PairRecipe.helpfulness and p.helpfulness.model is not None:
        h = p.helpfulness
        hb = _bytes(h.model.precision)
        rm = h.scorer == HelpfulnessScorer.reward_model  # a sequence classifier with one logit
        seq = answer + PROMPT_TOKENS  # the rating LM's question around the answer (logits at every position)
        roles.append(
            _role(
                pairs,
                "helpfulness scorer",
                h.model,
                one,
                lambda shape: Work(shape, hb, hb, (Pass(h.batch_size, seq, 1 if rm else seq),), lm=not rm),
                num_labels=1 if rm else None,
                ways_out=lambda p_, room: [
                    f"a smaller batch: safedpo.pairs.helpfulness.batch_size={h.batch_size}",
                    "a smaller scorer (safedpo.pairs.helpfulness.model)",
                ],
            )
        )
    if p.responder == Responder.model and p.responder_model is not None:
        k = p.samples_per_prompt if p.recipe == PairRecipe.helpfulness else 1  # the responder's answers per prompt
        roles.append(
            _inference(pairs, "responder", p.responder_model, one, t.batch_size * k, answer, "target.batch_size")
        )
    roles.append(_role("safedpo", "target", t.model, where, target_work, ways_out=target_ways))
    return roles, (float(s.num_workers if device else 0), f"safedpo.num_workers={s.num_workers} ranks")


def _eval(cfg: Config, place: _Placement, target: bool) -> tuple[list[RolePlan], tuple[float, str]]:
    """duoguard-eval: the guardrail on benchmarks, or (target mode, the pipeline's eval) the target with its
    judges: the answer judge (eval.target.judge, the SafeDPO run's guardrail by default) and an LLM
    refusal judge."""
    device = place.process_device()
    where = ("1", device, place.per_gpu) if device else ("cpu", "cpu", None)
    g, t = cfg.guardrail, cfg.target
    if not target:
        gb = _bytes(g.model.precision)
        guard = _role(
            "eval",
            "guardrail",
            g.model,
            where,
            lambda shape: Work(shape, gb, gb, (_guardrail_predict(cfg),), lm=False),
            num_labels=len(cfg.taxonomy.categories),
        )
        return [guard], (1.0 if device else 0.0, "runtime.device")
    answer = PROMPT_TOKENS + t.sampling.max_new_tokens
    answers = t.batch_size * cfg.eval.target.samples_per_prompt
    roles = [_inference("eval", "target", t.model, where, answers, answer, "target.batch_size")]
    refusal = cfg.eval.target
    if refusal.refusal_judge == RefusalJudge.llm and refusal.refusal_llm.model is not None:
        roles.append(
            _inference(
                "eval",
                "refusal judge",
                refusal.refusal_llm.model,
                where,
                refusal.refusal_llm.batch_size,
                answer + PROMPT_TOKENS,
                "eval.target.refusal_llm.batch_size",
            )
        )
    roles += _answer_judge("eval", cfg.eval.target.judge, cfg, where, answer, "eval.target.judge")
    return roles, (1.0 if device else 0.0, "runtime.device")


def _guardrail_stage(cfg: Config, place: _Placement) -> tuple[list[RolePlan], tuple[float, str]]:
    device = place.process_device()
    where = ("1", device, place.per_gpu) if device else ("cpu", "cpu", None)
    role = _role(
        "guardrail",
        "guardrail",
        cfg.guardrail.model,
        where,
        lambda shape: _guardrail_work(cfg, shape, True),
        num_labels=len(cfg.taxonomy.categories),
        ways_out=lambda p, room: _guardrail_ways(cfg, p),
    )
    return [role], (1.0 if device else 0.0, "runtime.device")


def make_plan(app: str, cfg: Config) -> Plan:
    """The memory plan of an app's stages on the hardware `cfg.hardware` states (pure arithmetic;
    the parameter counts build models on the meta device)."""
    place = _Placement(cfg)
    roles, asked = [], {}
    for stage in APP_STAGES[app]:
        if stage == "game":
            found, gpus = _game(cfg, place)
        elif stage == "safedpo":
            found, gpus = _safedpo(cfg, place)
        elif stage == "guardrail":
            found, gpus = _guardrail_stage(cfg, place)
        else:
            found, gpus = _eval(cfg, place, target=app == "pipeline" or cfg.eval.mode == EvalMode.target)
        roles += found
        asked[stage] = gpus
    return Plan(app, cfg.hardware, roles, asked)


def check_plan(app: str, cfg: Config) -> Plan:
    """The app-start check: log the plan; raise PlanError when a role cannot fit the stated hardware."""
    plan = make_plan(app, cfg)
    log.info("%s", plan.table())
    problems = plan.problems()
    if problems:
        raise PlanError("memory plan: " + " | ".join(problems) + " (duoguard-plan prints the whole table)")
    return plan


def role_lines(app: str, cfg: Config) -> dict[str, str]:
    """role -> the plan's line for it, for out-of-memory errors at run time (one-stage apps)."""
    return {r.role: r.line() for r in make_plan(app, cfg).roles}
