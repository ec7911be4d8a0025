"""The two-player game: a generator and the guardrail co-evolve, round by round.

    warm-up: the guardrail learns the seeds
    for each round:
        conditions  <- random (seed, language, category, attack style) combinations
        rollout     <- generator.play(conditions, referee)   G candidates per prompt; the judge and the
                       frozen guardrail score them; TRL's GRPO step on group-relative advantages
        accepted    <- kept, new candidates            -> pool/round_NNNN.parquet
        guardrail   <- trained on seeds + the whole pool; scored on the round's fresh candidates
                       (before and after) and on the held-out seeds
        checkpoint  <- generator, guardrail, optimizer and RNG state, pool manifest, tracker run id

A run interrupted mid-round loses only that round: on restart the pool is cut back to the last
checkpoint, metrics.jsonl is rewritten from the checkpoint's history and the same W&B run
continues.
"""

from __future__ import annotations

import logging
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from duoguard.atomic import atomic_dir
from duoguard.checkpoints import Checkpoints, GameState
from duoguard.config import to_container
from duoguard.data.pool import Pool, normalise
from duoguard.data.schema import Sample
from duoguard.metrics import binary_metrics
from duoguard.prompts import ConditionSampler
from duoguard.referee import Referee
from duoguard.runtime import make_runtime
from duoguard.stages import build_taxonomy, load_training_samples, model_path, set_up_torch, split_with_responses
from duoguard.tracking import Tracker

log = logging.getLogger(__name__)


@dataclass
class Roles:
    generator: Any
    guardrail: Any
    judge: Any


# ---------------------------------------------------------------- role builders (run in each role's process)
def _pin_threads(threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(int(threads))


def build_guardrail(cfg: dict, categories: list[str], base_path: str, checkpoint: str | None, device: str):
    from duoguard.roles.guardrail import Guardrail

    _pin_threads(cfg["runtime"]["torch_threads"])
    g = cfg["guardrail"]
    opts = dict(threshold=g["threshold"], max_length=g["max_length"], response_template=g["response_template"],
                batch_size=g["predict_batch_size"], max_batch_tokens=g["predict_max_tokens"])  # fmt: skip
    if checkpoint:
        guard = Guardrail.from_pretrained(checkpoint, device=device, precision="fp32", **opts)
        guard.base_path = base_path
        return guard
    import torch

    torch.manual_seed(int(cfg["seed"]))
    return Guardrail.from_base(
        base_path, categories, device=device, trust_remote_code=g["model"]["trust_remote_code"], **opts
    )


def build_generator(cfg: dict, path: str, reference_path: str, work_dir: str, device: str):
    from duoguard.roles.generator import Generator

    _pin_threads(cfg["runtime"]["torch_threads"])
    return Generator(path, cfg["generator"], work_dir=work_dir, device=device, seed=int(cfg["seed"]),
                     reference_path=reference_path, progress=bool(cfg["progress"]))  # fmt: skip


def build_judge(cfg: dict, llm_path: str | None, device: str):
    from duoguard.roles.judge import Judge, LLMJudge

    _pin_threads(cfg["runtime"]["torch_threads"])
    llm = None
    j = cfg["judge"]
    if llm_path:
        from transformers import AutoModelForCausalLM

        from duoguard.models import load_tokenizer, pick_dtype

        m = j["llm"]["model"]
        tok = load_tokenizer(llm_path, trust_remote_code=m["trust_remote_code"], padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(llm_path, dtype=pick_dtype(m["precision"], device),
                                                     trust_remote_code=m["trust_remote_code"]).to(device)  # fmt: skip
        llm = LLMJudge(model, tok, template=j["llm"]["template"], min_rating=j["llm"]["min_rating"],
                       batch_size=j["llm"]["batch_size"])  # fmt: skip
    return Judge(j, llm)


def role_device(cfg: DictConfig, role: str) -> str:
    """In a Ray actor a GPU role sees its own GPU(s) as cuda:0; locally runtime.device applies."""
    override = cfg.runtime.roles[role].device
    if override:
        return override
    if cfg.runtime.name.value == "ray":
        return "cuda" if cfg.runtime.roles[role].num_gpus > 0 else "cpu"
    from duoguard.models import pick_device

    return pick_device(cfg.runtime.device)


# ---------------------------------------------------------------- one round
def accept(records: list[dict], pool_texts: set[str], seed_texts: set[str], round_index: int) -> list[dict]:
    """Kept candidates that are new: not a seed, not in the pool, not repeated in this round."""
    seen = set(pool_texts) | seed_texts
    accepted = []
    for rec in records:
        key = normalise(rec["text"])
        if rec["judge_keep"] and key and key not in seen:
            seen.add(key)
            accepted.append({**rec, "id": f"r{round_index:04d}-{len(accepted):05d}"})
    return accepted


def decision_accuracy(scores: np.ndarray, rows: list[dict], threshold: float) -> float | None:
    if not rows:
        return None
    want = np.array([r["unsafe"] for r in rows])
    return float(np.mean((np.asarray(scores) > threshold) == want))


def play_round(r: int, roles: Roles, sampler: ConditionSampler, pool: Pool, seeds: list[Sample],
               heldout: list[Sample], cfg: DictConfig, out_dir: Path) -> tuple[dict[str, Any], list[dict]]:  # fmt: skip
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[f"seconds_{name}"] = now - clock
        clock = now

    threshold = float(cfg.guardrail.threshold)
    grpo = cfg.generator.grpo
    conditions = sampler.draw(int(grpo.prompts_per_step) * int(grpo.steps_per_round), r)
    referee = Referee(roles.guardrail, roles.judge, to_container(cfg.game.reward), threshold, r)
    rollout = roles.generator.call("play", conditions, referee, r)
    lap("rollout")
    records = rollout.records
    accepted = accept(records, pool.texts(), {normalise(s.text) for s in seeds}, r)
    pool.write_round(r, accepted)
    lap("pool")
    before = decision_accuracy(np.array([a["guardrail_score"] for a in accepted]), accepted, threshold)
    train_stats: dict[str, float] = {}
    update = cfg.game.guardrail_update.value
    if update != "frozen":
        if update == "restart":
            roles.guardrail.call("restart")
        train_stats = roles.guardrail.call(
            "train", seeds + pool.samples(), to_container(cfg.guardrail.train), output_dir=str(out_dir / ".trainer"),
            precision=cfg.guardrail.model.precision.value, progress=bool(cfg.progress),
            epochs=float(cfg.game.guardrail_epochs), seed=int(cfg.guardrail.train.seed) + r,
        )  # fmt: skip
    lap("guardrail_train")
    after = decision_accuracy(roles.guardrail.call("unsafe_scores", [a["text"] for a in accepted]), accepted, threshold)
    held_scores = roles.guardrail.call("unsafe_scores", [s.text for s in heldout], [s.response for s in heldout])
    held = binary_metrics([s.unsafe for s in heldout], held_scores, threshold)
    lap("eval")
    n = len(records)
    kept = [x for x in records if x["judge_keep"]]
    metrics = {
        "generated": n,
        "kept": len(kept),
        "accepted": len(accepted),
        "keep_rate": len(kept) / n if n else 0.0,
        "fool_rate": sum(x["fooled"] for x in kept) / n if n else 0.0,  # kept and misclassified / generated
        "fool_rate_of_kept": sum(x["fooled"] for x in kept) / len(kept) if kept else None,
        "mean_reward": float(np.mean([x["reward"] for x in records])) if records else None,
        "guardrail_acc_before": before,
        "guardrail_acc_after": after,
        "heldout_f1": held["f1"],
        "heldout_auprc": held["auprc"],
        "pool_size": len(pool.rows()),
        "kl": rollout.stats.pop("kl", None),
        **{f"gen/{k}": v for k, v in rollout.stats.items()},
        **{f"guardrail/{k}": v for k, v in train_stats.items()},
        **seconds,
    }
    return metrics, records


# ---------------------------------------------------------------- the game
def play_game(cfg: DictConfig) -> dict[str, Any]:
    out_dir = Path(cfg.output_dir)
    taxonomy = build_taxonomy(cfg)
    samples = load_training_samples(cfg, taxonomy)
    seeds, heldout = split_with_responses(samples, cfg)
    checkpoints = Checkpoints(out_dir / "checkpoints", keep=int(cfg.game.keep_checkpoints))
    state = checkpoints.resume_state(str(cfg.game.resume).lower())
    categories = list(cfg.game.categories) or taxonomy.names
    prompt_seeds = [s for s in seeds if s.response is None]  # the generator rewrites prompts
    sampler = ConditionSampler(prompt_seeds, [taxonomy.resolve(c) for c in categories], list(cfg.data.languages),
                               list(cfg.data.attack_styles), unsafe_fraction=float(cfg.game.unsafe_fraction),
                               seed=int(cfg.seed))  # fmt: skip
    set_up_torch(cfg)
    pool = Pool(out_dir / "pool")
    pool.truncate(state.round if state else 0)
    guard_base = model_path(cfg.guardrail.model, cfg.cache_dir)
    gen_base = model_path(cfg.generator.model, cfg.cache_dir)
    llm_cfg = cfg.judge.llm.model
    llm_path = model_path(llm_cfg, cfg.cache_dir) if llm_cfg is not None and llm_cfg.name_or_path else None
    tracker = Tracker(cfg.logger, out_dir, config=to_container(cfg), run_id=state.run_id if state else None,
                      job_type="game", step_name="round")  # fmt: skip
    if state:
        tracker.rewrite_history(state.history)
        random.setstate(state.python_rng)
        log.info("resuming the game after round %d from %s", state.round, checkpoints.latest_dir())
    runtime = make_runtime(to_container(cfg.runtime), to_container(cfg.ray))
    plain = to_container(cfg)
    history = list(state.history) if state else []
    try:
        ckpt = checkpoints.latest_dir() if state else None
        roles = Roles(
            guardrail=runtime.spawn("guardrail", build_guardrail, plain, taxonomy.names, guard_base,
                                    str(ckpt / "guardrail") if ckpt else None, role_device(cfg, "guardrail")),
            judge=runtime.spawn("judge", build_judge, plain, llm_path, role_device(cfg, "judge")),
            generator=runtime.spawn("generator", build_generator, plain, str(ckpt / "generator") if ckpt else gen_base,
                                    gen_base, str(out_dir / ".generator"), role_device(cfg, "generator")),
        )  # fmt: skip
        if not state and cfg.game.warmup_guardrail:
            stats = roles.guardrail.call(
                "train", seeds, to_container(cfg.guardrail.train), output_dir=str(out_dir / ".trainer"),
                precision=cfg.guardrail.model.precision.value, progress=bool(cfg.progress),
            )  # fmt: skip
            log.info("guardrail warm-up on %d seeds: loss %.4f", len(seeds), stats["train_loss"])
        for r in range((state.round if state else 0) + 1, int(cfg.game.rounds) + 1):
            start = time.perf_counter()
            metrics, records = play_round(r, roles, sampler, pool, seeds, heldout, cfg, out_dir)
            metrics["seconds_round"] = time.perf_counter() - start
            history.append({"round": r, **metrics})
            checkpoints.save(r, roles, GameState(round=r, history=history, run_id=tracker.run_id,
                                                 pool=pool.manifest(), python_rng=random.getstate()))  # fmt: skip
            tracker.log(metrics, step=r)
            _log_candidates(tracker, records, r, int(cfg.game.sample_table_rows), int(cfg.seed))
            log.info(
                "round %d: generated %d, kept %d, accepted %d, fool rate %.3f, held-out F1 %s, %.1f s",
                r, metrics["generated"], metrics["kept"], metrics["accepted"], metrics["fool_rate"],
                f"{metrics['heldout_f1']:.3f}" if metrics["heldout_f1"] is not None else "–", metrics["seconds_round"],
            )  # fmt: skip
        final = checkpoints.latest_dir()
        if final is not None:
            for name in ("generator", "guardrail"):
                atomic_dir(out_dir / name, lambda tmp, n=name: _export(final / n, tmp), replace=True)
            tracker.log_artifact(out_dir / "pool", "pool", "dataset")
            tracker.log_artifact(out_dir / "guardrail", "guardrail", "model")
            tracker.log_artifact(out_dir / "generator", "generator", "model")
        return {"rounds": len(history), "history": history, "output_dir": str(out_dir)}
    finally:
        runtime.shutdown()
        tracker.finish()
        shutil.rmtree(out_dir / ".trainer", ignore_errors=True)
        shutil.rmtree(out_dir / ".generator", ignore_errors=True)


def _export(src: Path, dst: Path) -> None:
    """Final model folder: the checkpoint without its optimizer state."""
    shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("optimizer.pt"))


def _log_candidates(tracker: Tracker, records: list[dict], r: int, rows: int, seed: int) -> None:
    """A random sample of the round's candidates, rejected ones included, as a W&B table."""
    if rows <= 0 or not records:
        return
    sample = random.Random(seed * 1_000 + r).sample(records, min(rows, len(records)))
    cols = ["text", "language", "category", "unsafe", "attack_style", "guardrail_score", "fooled", "judge_keep",
            "judge_reasons", "reward"]  # fmt: skip
    tracker.log_table("candidates", cols, [[x[c] for c in cols] for x in sample], step=r)
