"""The memory plan (duoguard/plan.py): parameter counts against published numbers, a plan computed by
hand for a tiny config, the real presets on their stated hardware and on one 24 GB GPU, `duoguard-plan`,
the check at an app's start, and the plan's line in an out-of-memory error."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import tomllib

import pytest
import yaml

from duoguard.config import HardwareConfig, LoraSettings, ModelConfig
from duoguard.plan import GIB, SHAPES, Pass, PlanError, Work, Zero, check_plan, make_plan, model_shape, role_lines
from tests.conftest import CONF_DIR, ROOT, compose

REAL_PRESETS = ["duoguard_qwen", "safedpo_llama8b", "safedpo_qwen7b_lora"]
ONE_24GB_GPU = ["hardware.nodes=1", "hardware.gpus_per_node=1", "hardware.gpu_memory_gib=24"]
# published sizes (model cards; REFERENCE §9): hub id -> (parameters, parameters without embeddings)
PUBLISHED = {
    "Qwen/Qwen2.5-0.5B": (0.49e9, 0.36e9),
    "Qwen/Qwen2.5-1.5B-Instruct": (1.54e9, 1.31e9),
    "Qwen/Qwen2.5-7B-Instruct": (7.61e9, 6.53e9),
    "meta-llama/Llama-3.1-8B-Instruct": (8.03e9, None),
}
# tiny_cpu's tiny Qwen2 (conf/*/model/tiny.yaml): hidden 64, MLP 128, 2 layers, 4 heads of 16, 2 KV heads,
# vocabulary 1024, tied embeddings
TINY_PARAMS = (
    1024 * 64  # embeddings (tied to the output layer)
    + 2
    * (
        64 * 64
        + 64  # q_proj with bias
        + 2 * (64 * 32 + 32)  # k_proj, v_proj with bias: 2 KV heads x 16
        + 64 * 64  # o_proj
        + 3 * 64 * 128  # gate, up, down
        + 2 * 64  # two RMSNorms
    )
    + 64  # the final norm
)


@pytest.mark.parametrize("hub_id", list(PUBLISHED))
def test_shipped_shapes_count_the_published_parameters_within_2_percent(hub_id):
    total, without_embeddings = PUBLISHED[hub_id]
    shape = model_shape(ModelConfig(name_or_path=hub_id))
    assert shape.source == f"shipped conf/shapes/{SHAPES[hub_id]}"
    assert abs(shape.params / total - 1) < 0.02, shape.params
    if without_embeddings:
        assert abs((shape.params - shape.embedding_params) / without_embeddings - 1) < 0.02


def test_every_known_hub_id_has_a_shipped_shape():
    for hub_id, folder in SHAPES.items():
        assert (CONF_DIR / "shapes" / folder / "config.json").is_file(), hub_id
    assert model_shape(ModelConfig(name_or_path="someorg/unknown-7b")) is None


def tiny_qwen2_config():
    """The shape `name_or_path: tiny` builds (conf/guardrail/model/tiny.yaml), its vocabulary at 1,024."""
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=1024,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )


def test_meta_count_equals_the_real_tiny_model_and_reads_local_folders(tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, Qwen2ForCausalLM

    tiny = ModelConfig(name_or_path="tiny")
    config = tiny_qwen2_config()
    real = sum(p.numel() for p in Qwen2ForCausalLM(config).parameters())
    assert model_shape(tiny).params == real == TINY_PARAMS  # the tied output layer is counted once
    config.save_pretrained(tmp_path)
    local = model_shape(ModelConfig(name_or_path=str(tmp_path)), num_labels=12)
    assert local.source == f"local {tmp_path}"
    with torch.device("cpu"):
        config.num_labels = 12
        classifier = AutoModelForSequenceClassification.from_config(config)
    assert local.params == sum(p.numel() for p in classifier.parameters()) == TINY_PARAMS + 64 * 12


def test_a_tiny_game_planned_by_hand():
    cfg = compose(["runtime.device=auto", "hardware.gpus_per_node=1", "hardware.gpu_memory_gib=1"], "game")
    plan = make_plan("game", cfg)
    generator, guardrail = plan.roles  # no LLM judge in tiny_cpu
    p, g = TINY_PARAMS, TINY_PARAMS + 64 * 12  # the guardrail: one output per category of duoguard12
    per_layer = 5 * 64 + 4 * 128  # activation elements a layer keeps per token
    kv_and_layer = 2 * 2 * 2 * 16 * 4 + 4 * (6 * 64 + 4 * 128)  # KV cache + one layer, bytes per token (fp32)
    # generator: fp32, AdamW, GRPO reference (beta 0.04); 4 prompts x 4 completions of 256 + 24 tokens
    train = 16 * 280 * 4 * 2 * per_layer + 16 * 24 * 1024 * 8  # layers, then logits of the 24 completion tokens
    sample = 16 * 280 * kv_and_layer + 16 * 1 * 1024 * 4  # generation: KV cache, the next token's logits
    assert generator.terms == {
        "weights": p * 4,
        "master": 0,  # fp32 weights are their own master
        "grads": p * 4,
        "optimizer": p * 8,
        "reference": p * 4,
        "vllm": 0,
        "activations": max(train, sample),
    }
    # guardrail: fp32 weights (autocast off in fp32), batches of 32 x 128 tokens; predicts 64 x 128
    assert guardrail.terms == {
        "weights": g * 4,
        "master": 0,
        "grads": g * 4,
        "optimizer": g * 8,
        "reference": 0,
        "vllm": 0,
        "activations": max(32 * 128 * 4 * 2 * per_layer, 64 * 128 * kv_and_layer),
    }
    assert generator.group == guardrail.group == "cuda:0"  # runtime=local: one process, one device
    assert generator.budget == 0.9 * GIB and plan.problems() == []
    assert plan.gpus_asked == {"game": (1.0, "runtime=local: cuda:0")}

    small = compose(["runtime.device=auto", "hardware.gpus_per_node=1", "hardware.gpu_memory_gib=0.05"], "game")
    with pytest.raises(PlanError) as e:
        check_plan("game", small)
    mib = 2**20
    total = g * 16 + 64 * 128 * kv_and_layer  # weights, grads and AdamW (4 + 4 + 8 bytes), then activations
    both = total + p * 20 + max(train, sample)  # and the generator's: weights, grads, AdamW, reference
    assert (
        f"role 'guardrail' (stage game) needs ~{total / mib:.1f} MiB per GPU "
        f"(on cuda:0 with 'generator': ~{both / mib:.1f} MiB together) but has {0.05 * 0.9 * 1024:.1f} MiB; "
        f"its largest term is activations, {64 * 128 * kv_and_layer / mib:.1f} MiB. Ways out: "
    ) in str(e.value)


LLAMA = "llama3.1-8b-instruct"  # conf/judge/model: meta-llama/Llama-3.1-8B-Instruct in bf16


def test_safedpo_plans_what_builds_the_pairs_apart_from_training_and_each_answer_judge_by_kind(tmp_path):
    one_gpu = ["runtime.device=auto", "hardware.gpus_per_node=1", "safedpo.num_workers=1"]
    base = ["experiment=safedpo_llama8b", *one_gpu, "hardware.gpu_memory_gib=1000"]
    stage_roles = lambda plan, stage: {r.role: r for r in plan.roles if r.stage == stage}  # noqa: E731

    # the shipped judge (the game's guardrail) and a model responder build the pairs; the ranks train alone
    plan = make_plan("safedpo", compose(base, "safedpo"))
    pairs, training = stage_roles(plan, "safedpo pairs"), stage_roles(plan, "safedpo")
    assert set(pairs) == {"target", "guardrail", "responder"} and set(training) == {"target"}
    assert pairs["target"].optimizer == "inference" and training["target"].optimizer.startswith("AdamW")
    assert pairs["guardrail"].work.shape.params == make_plan("game", compose(base, "game")).roles[1].work.shape.params

    # the two phases are checked apart: a GPU that holds either one (not both at once) fits
    pairs_total = sum(r.total for r in pairs.values())
    need = max(pairs_total, training["target"].total)
    gib = (need + min(pairs_total, training["target"].total) / 2) / 0.9 / GIB  # < the sum of both phases
    assert make_plan("safedpo", compose([*base, f"hardware.gpu_memory_gib={gib}"], "safedpo")).problems() == []
    short = pairs_total * 0.99 / 0.9 / GIB
    problems = make_plan("safedpo", compose([*base, f"hardware.gpu_memory_gib={short}"], "safedpo")).problems()
    assert any("(stage safedpo pairs)" in p for p in problems), problems

    # safedpo.guardrail_path names the game's guardrail: its own shape (a tiny checkpoint's config.json)
    tiny_qwen2_config().save_pretrained(tmp_path)
    named = make_plan("safedpo", compose([*base, f"safedpo.guardrail_path={tmp_path}"], "safedpo"))
    guard = stage_roles(named, "safedpo pairs")["guardrail"]
    assert guard.model == str(tmp_path) and guard.work.shape.params == TINY_PARAMS + 64 * 12

    # an LLM guard as judge is an 8B forward; a pattern judge loads nothing
    guard = ["safedpo.pairs.judge.kind=llm_guard", f"+judge/model@safedpo.pairs.judge.model={LLAMA}"]
    pairs = stage_roles(make_plan("safedpo", compose([*base, *guard], "safedpo")), "safedpo pairs")
    assert pairs["answer judge"].work.shape.params > 8e9 and pairs["answer judge"].optimizer == "inference"
    pattern = ["safedpo.pairs.judge.kind=pattern", "safedpo.pairs.judge.pattern=x"]
    pairs = stage_roles(make_plan("safedpo", compose([*base, *pattern], "safedpo")), "safedpo pairs")
    assert set(pairs) == {"target", "responder"}

    # the helpfulness recipe's reward model: the LM without its vocabulary head, one logit
    helpful = ["safedpo.pairs.recipe=helpfulness", f"+judge/model@safedpo.pairs.helpfulness.model={LLAMA}"]
    scorer = stage_roles(make_plan("safedpo", compose([*base, *helpful], "safedpo")), "safedpo pairs")[
        "helpfulness scorer"
    ]
    lm = model_shape(ModelConfig(name_or_path="meta-llama/Llama-3.1-8B-Instruct"))
    assert lm.params - scorer.work.shape.params == 128256 * 4096 - 4096  # the head of V outputs -> one
    assert not scorer.work.lm

    # the target's evaluation loads the target and its judges: the SafeDPO run's guardrail, or an LLM guard
    evaluated = stage_roles(make_plan("pipeline", compose(base, "pipeline")), "eval")
    assert set(evaluated) == {"target", "guardrail"}
    llm_judge = ["eval.target.judge.kind=llm_guard", f"+judge/model@eval.target.judge.model={LLAMA}"]
    evaluated = stage_roles(make_plan("pipeline", compose([*base, *llm_judge], "pipeline")), "eval")
    assert set(evaluated) == {"target", "answer judge"}
    # answers per generate() call: target.batch_size x samples_per_prompt sequences hold KV cache
    two = stage_roles(
        make_plan("safedpo", compose([*base, "safedpo.pairs.samples_per_prompt=2"], "safedpo")), "safedpo pairs"
    )
    four = stage_roles(
        make_plan("safedpo", compose([*base, "safedpo.pairs.samples_per_prompt=4"], "safedpo")), "safedpo pairs"
    )
    assert four["target"].terms["activations"] == pytest.approx(2 * two["target"].terms["activations"], rel=0.01)


def test_zero_offload_and_lora_divide_the_right_terms(tmp_path):
    shape = model_shape(ModelConfig(name_or_path="tiny"))
    p = shape.params
    base = dict(shape=shape, weight_bytes=2, act_bytes=2, passes=(), trains=True, master=True)
    assert Work(**base).memory() == {
        "weights": 2 * p,
        "master": 4 * p,
        "grads": 2 * p,
        "optimizer": 8 * p,
        "reference": 0,
        "vllm": 0,
        "activations": 0,
    }  # 16 bytes per parameter (REFERENCE §9)
    z2 = Work(**base, ranks=4, zero=Zero.from_json("conf/deepspeed/zero2.json")).memory()
    assert (z2["weights"], z2["master"], z2["grads"], z2["optimizer"]) == (2 * p, p, p / 2, 2 * p)
    z3 = Work(**base, ranks=4, zero=Zero.from_json("conf/deepspeed/zero3.json"), reference=True).memory()
    assert (z3["weights"], z3["grads"], z3["reference"]) == (p / 2, p / 2, p / 2)
    offload = tmp_path / "offload.json"
    offload.write_text('{"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}}}')
    z3o = Work(**base, ranks=4, zero=Zero.from_json(str(offload))).memory()
    assert (z3o["master"], z3o["optimizer"], z3o["weights"]) == (0, 0, p / 2)
    # LoRA r=8 on q, k, v, o: r x (in + out) = 8 x (128 + 96 + 96 + 128) per layer, 2 layers
    lora = LoraSettings(r=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    a = 2 * 8 * (128 + 96 + 96 + 128)
    assert shape.lora_params(lora) == a == _peft_trainable(lora)
    with_lora = Work(**base, lora=lora).memory()
    assert (with_lora["weights"], with_lora["grads"], with_lora["optimizer"]) == (2 * (p + a), 2 * a, 8 * a)
    inference = Work(shape, 2, 2, (Pass(1, 10, 0),)).memory()
    assert inference["weights"] == 2 * p and inference["optimizer"] == inference["grads"] == 0


def _peft_trainable(lora: LoraSettings) -> int:
    """The adapter parameters PEFT itself adds to the tiny model."""
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2ForCausalLM

    config = tiny_qwen2_config()
    model = get_peft_model(Qwen2ForCausalLM(config), LoraConfig(r=lora.r, target_modules=lora.target_modules))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("preset", REAL_PRESETS)
def test_each_real_preset_fits_the_hardware_it_states(preset):
    cfg = compose([f"experiment={preset}"], "pipeline")
    assert (cfg.hardware.nodes, cfg.hardware.gpus_per_node, cfg.hardware.gpu_memory_gib) == (1, 8, 80)
    for app in ("pipeline", "guardrail"):
        plan = make_plan(app, cfg)
        assert plan.problems() == [], plan.table()
        assert all(r.work is not None for r in plan.roles)  # every shape known (shipped)
    generator = make_plan("game", cfg).roles[0]
    assert generator.optimizer == "AdamW ZeRO-3 x4"
    assert generator.total > 72 * GIB / 2  # an 8B full fine-tune is not small even when sharded


@pytest.mark.parametrize("preset,role", [(p, r) for p in REAL_PRESETS for r in ("generator", "target")])
def test_each_real_preset_fails_on_one_24gb_gpu_naming_the_role(preset, role):
    cfg = compose([f"experiment={preset}", *ONE_24GB_GPU], "pipeline")
    with pytest.raises(PlanError) as e:
        check_plan("pipeline", cfg)
    msg = str(e.value)
    stage = "game" if role == "generator" else "safedpo"
    assert f"role '{role}' (stage {stage}) needs" in msg
    assert "its largest term is" in msg and "Ways out:" in msg
    assert "stage game asks for 6 GPUs" in msg  # and the count: 4 generator ranks, guardrail, judge


def test_an_unknown_shape_is_reported_and_stops_nothing():
    cfg = compose(["experiment=duoguard_qwen", "generator.model.name_or_path=someorg/unknown-7b"], "game")
    plan = make_plan("game", cfg)
    assert plan.roles[0].work is None and plan.problems() == []
    table = plan.table()
    assert "unknown shape" in table and "no config.json for 'someorg/unknown-7b'" in table


def test_auto_gpu_shares_follow_the_runtime_rule():
    from duoguard.runtime.placement import role_requests, share_gpus

    overrides = ["runtime=ray", "hardware.gpus_per_node=1", "hardware.gpu_memory_gib=40"]
    cfg = compose(overrides, "game")  # generator and guardrail ask num_gpus=null (auto)
    requests = role_requests(cfg.runtime.roles)
    share_gpus(requests, cfg.hardware.gpus)
    plan = make_plan("game", cfg)
    for r in plan.roles:
        assert r.gpus == f"{requests[r.role]['num_gpus']:g}"
        assert r.budget == pytest.approx(40 * GIB * 0.9 * requests[r.role]["num_gpus"])


def test_the_cluster_template_gpu_node_holds_the_duoguard_game():
    """scripts/ray_cluster.yaml's GPU node, planned as the hardware, fits experiment=duoguard_qwen."""
    gpu_memory_gib = {"p4de.24xlarge": 80}  # 8 x A100 80 GB
    nodes = yaml.safe_load((ROOT / "scripts" / "ray_cluster.yaml").read_text())["available_node_types"]
    gpu_nodes = {name: n for name, n in nodes.items() if n["resources"].get("GPU")}
    assert gpu_nodes
    for node in gpu_nodes.values():
        hw = [
            "hardware.nodes=1",
            f"hardware.gpus_per_node={node['resources']['GPU']}",
            f"hardware.gpu_memory_gib={gpu_memory_gib[node['node_config']['InstanceType']]}",
        ]
        assert make_plan("game", compose(["experiment=duoguard_qwen", *hw], "game")).problems() == []


def test_the_out_of_memory_error_names_the_plans_line():
    from duoguard.runtime import LocalRuntime, RoleOutOfMemory, RoleSpec

    lines = role_lines("game", compose(["experiment=duoguard_qwen"], "game"))
    assert lines["generator"].startswith("generator needs ~") and "largest term: " in lines["generator"]
    hints = {"eat": ("generator.grpo.prompts_per_step", 4)}
    spec = RoleSpec("generator", _Greedy, oom_hints=hints, memory_plan=lines["generator"])
    with pytest.raises(RoleOutOfMemory) as e:
        LocalRuntime().spawn(spec).eat()
    assert str(e.value).startswith(
        "role 'generator' ran out of memory in eat(); its batch size is generator.grpo.prompts_per_step=4: lower it"
    )
    assert str(e.value).endswith(f"; memory plan: {lines['generator']}")


class _Greedy:
    def eat(self):
        raise MemoryError("cannot allocate")


def test_duoguard_plan_prints_the_table_and_exits_2_when_a_role_cannot_fit():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["duoguard-plan"] == "duoguard.cli:plan_main"
    console = ["-c", "import sys; from duoguard.cli import plan_main; sys.exit(plan_main())"]  # the console script
    ok = subprocess.run(
        [sys.executable, *console, "pipeline", "experiment=duoguard_qwen"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "memory plan for duoguard-pipeline: 1 node(s) x 8 GPU(s) of 80 GiB" in ok.stdout
    assert re.search(r"stage +role", ok.stdout) and "AdamW ZeRO-3 x4" in ok.stdout and "8.03 B" in ok.stdout
    bad = subprocess.run(
        [sys.executable, *console, "game", "experiment=duoguard_qwen", *ONE_24GB_GPU],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert bad.returncode == 2, bad.stderr[-2000:]
    assert "NO" in bad.stdout and "error: role 'generator' (stage game) needs" in bad.stderr


def test_an_app_stops_before_any_model_loads_when_a_role_cannot_fit(tmp_path):
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "duoguard",
            "game",
            "experiment=duoguard_qwen",
            "hardware.gpus_per_node=1",
            "hardware.gpu_memory_gib=24",
            "logger=none",
            f"hydra.run.dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "memory plan: role 'generator' (stage game) needs" in proc.stderr
    assert time.perf_counter() - start < 120
    assert {p.name for p in tmp_path.iterdir()} <= {".hydra", "game.log"}  # no roles, no checkpoints, no pool


def test_the_hardware_section_checks_its_values():
    from duoguard.config import ConfigError

    with pytest.raises(ConfigError, match="hardware.gpu_memory_gib: must be > 0 when hardware.gpus_per_node=2"):
        HardwareConfig(gpus_per_node=2).check("hardware")
    with pytest.raises(ConfigError, match=r"hardware.usable_fraction: must be in \(0, 1\]"):
        HardwareConfig(usable_fraction=0).check("hardware")
    assert HardwareConfig(nodes=2, gpus_per_node=8, gpu_memory_gib=80).gpus == 16


@pytest.mark.parametrize("preset", REAL_PRESETS)
def test_each_real_preset_trains_the_game_guardrail_for_enough_optimizer_steps(preset):
    """The warm-up on the seeds, and every round (the seeds at least, plus the pool), give the guardrail at
    least FEW_STEPS updates at the preset's global batch (DuoGuard's 640 suits its large dataset, not a game)."""
    from duoguard.factory import build_taxonomy, load_training_samples, split_with_responses
    from duoguard.training import FEW_STEPS, optimizer_steps

    cfg = compose([f"experiment={preset}", "output_dir=/tmp/x"], "game")
    train, _ = split_with_responses(load_training_samples(cfg, build_taxonomy(cfg)), cfg)
    t = cfg.guardrail.train
    warm_up = optimizer_steps(len(train), t.global_batch_size, t.epochs, t.max_steps)
    each_round = optimizer_steps(len(train), t.global_batch_size, cfg.game.guardrail_epochs, t.max_steps)
    assert min(warm_up, each_round) >= FEW_STEPS, (len(train), t.global_batch_size)


def test_vllm_in_sleep_mode_counts_only_what_its_share_exceeds_the_update_by():
    from duoguard.plan import Pass

    shape = model_shape(ModelConfig(name_or_path="tiny"))
    base = dict(shape=shape, weight_bytes=2, act_bytes=2, passes=(Pass(8, 64, 8, train=True),), trains=True)
    awake = Work(**base, vllm_bytes=1e9).memory()
    assert awake["vllm"] == 1e9 and awake["activations"] > 0  # both resident: summed
    asleep = Work(**base, vllm_bytes=1e9, vllm_sleeps=True).memory()
    assert asleep["vllm"] == 1e9 - asleep["activations"]  # the peak is the larger of the two
    small = Work(**base, vllm_bytes=1.0, vllm_sleeps=True).memory()
    assert small["vllm"] == 0.0
    assert sum(asleep.values()) == sum(awake.values()) - awake["activations"]
