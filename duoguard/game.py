"""The two-player game: a generator and the guardrail co-evolve, round by round.

    warm-up: the guardrail learns the seeds
    for each round:
        conditions  <- random (seed, language, category, attack style) combinations
        rollout     <- generator.play(conditions, referee)   G candidates per prompt; the judge and the
                       frozen guardrail score them; TRL's GRPO step on group-relative advantages
        accepted    <- kept, new candidates            -> pool/round_NNNN.parquet
        guardrail   <- trained on seeds + the whole pool; scored on the round's fresh candidates
                       (before and after) and on the held-out seeds
        league      <- earlier guardrails score the fresh candidates, the new one scores older rounds:
                       the generator-round x guardrail-round fool-rate matrix, exploitability, forgetting
        health      <- diversity, coverage; alarms for collapse and reward hacking; report.md
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
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from duoguard.archive import Archive, curriculum_weights
from duoguard.atomic import atomic_dir
from duoguard.checkpoints import Checkpoints, GameState
from duoguard.config import CollapseAction, Config, GuardrailUpdate, NoveltyEmbeddings, to_container
from duoguard.data.decontam import Decontaminator
from duoguard.data.pool import Pool, normalise
from duoguard.data.record import PromptRecord
from duoguard.data.schema import Sample
from duoguard.diversity import collapse_alarm, round_diversity
from duoguard.errors import GameStopped
from duoguard.factory import (
    DECONTAMINATION_DIR,
    build_decontaminator,
    build_generator,
    build_guardrail,
    build_judge,
    build_taxonomy,
    decontaminate,
    decontaminated_training_samples,
    load_training_samples,
    model_path,
    set_up_torch,
    split_with_responses,
)
from duoguard.game_report import figures_dir, write_game_report
from duoguard.health import reward_hacking_alarm
from duoguard.league import LEAGUE_DIR, League, fool_rate, matrix_key, summary
from duoguard.manifest import StageManifest, has_manifest, write_manifest
from duoguard.metrics import binary_metrics
from duoguard.novelty import embedding_spread
from duoguard.prompts import ConditionSampler
from duoguard.referee import Referee
from duoguard.runtime import RoleDied, RoleError, RoleSpec, Runtime, each_rank, make_runtime, wait_until_alive
from duoguard.tracking import Tracker

if TYPE_CHECKING:
    from duoguard.roles.generator import Generator
    from duoguard.roles.guardrail import Guardrail
    from duoguard.roles.judge import Judge

log = logging.getLogger(__name__)


@dataclass
class Roles:
    """The three roles, each a runtime handle typed as its role class."""

    generator: Generator
    guardrail: Guardrail
    judge: Judge


# ---------------------------------------------------------------- one round
def accept(
    records: list[PromptRecord], pool_texts: set[str], seed_texts: set[str], round_index: int
) -> list[PromptRecord]:
    """Kept candidates that are new: not a seed, not in the pool, not repeated in this round."""
    seen = set(pool_texts) | seed_texts
    accepted = []
    for rec in records:
        key = normalise(rec.text)
        if rec.judge.keep and key and key not in seen:
            seen.add(key)
            accepted.append(replace(rec, id=f"r{round_index:04d}-{len(accepted):05d}"))
    return accepted


def judge_rejections(records: list[PromptRecord]) -> dict[str, int]:
    """How many candidates each judge rule rejected (a candidate may fail several)."""
    counts = Counter(reason for x in records if not x.judge.keep for reason in x.judge.reasons)
    return {f"judge/rejected_{reason}": n for reason, n in sorted(counts.items())}


def decision_accuracy(scores: np.ndarray, records: list[PromptRecord], threshold: float) -> float | None:
    if not records:
        return None
    want = np.array([r.unsafe for r in records])
    return float(np.mean((np.asarray(scores) > threshold) == want))


LABEL_REASONS = ("label_pattern", "llm_rating")  # the judge rules that check a candidate's label


def quality_checks(records: list[PromptRecord], cfg: Config) -> dict[str, float | None]:
    """What the reward-hacking alarm weighs against the reward: the kept candidates' fooling reward,
    the label check's pass rate and the LLM judge's mean rating (where they run)."""
    kept = [x for x in records if x.judge.keep]
    ratings = [x.judge.rating for x in records if x.judge.rating is not None]
    out: dict[str, float | None] = {"mean_fool_reward": float(np.mean([x.reward for x in kept])) if kept else None}
    if cfg.judge.label_check.value != "none" and records:
        failed = sum(any(r in LABEL_REASONS for r in x.judge.reasons) for x in records)
        out["label_pass_rate"] = 1.0 - failed / len(records)
    if ratings:
        out["judge/mean_rating"] = float(np.mean(ratings))
    return out


def score_league(
    r: int,
    guardrail: Guardrail,
    league: League,
    accepted: list[PromptRecord],
    after: np.ndarray,
    pool_records: list[PromptRecord],
    threshold: float,
) -> dict[str, float]:
    """Round r's entries of the fool-rate matrix (duoguard/league.py): its accepted candidates against
    the guardrail it played (r-1), the updated one (r) and the league's earlier ones; and, with a league,
    the updated guardrail against every earlier round's accepted candidates."""
    unsafe = [a.unsafe for a in accepted]
    row = {
        matrix_key(r, r - 1): fool_rate([a.guardrail_score for a in accepted], unsafe, threshold),
        matrix_key(r, r): fool_rate(after, unsafe, threshold),
    }
    members = league.members(r)
    if accepted and members:
        scores = guardrail.league_scores([str(path) for _, path in members], [a.text for a in accepted])
        for (j, _), s in zip(members, scores, strict=True):
            row[matrix_key(r, j)] = fool_rate(s, unsafe, threshold)
    older = [x for x in pool_records if x.round is not None and x.round < r] if league.size > 0 else []
    if older:
        scores = np.asarray(guardrail.unsafe_scores([x.text for x in older]))
        for k in sorted({x.round for x in older}):
            idx = [i for i, x in enumerate(older) if x.round == k]
            row[matrix_key(k, r)] = fool_rate(scores[idx], [older[i].unsafe for i in idx], threshold)
    return {k: v for k, v in row.items() if v is not None}


def check_ranks_agree(role: Any, name: str, ranks: int) -> None:
    """Data parallel: every rank must hold the same full weights after an update (gathered under ZeRO-3)."""
    if ranks > 1:
        sums = each_rank(role).checksum()
        if len(set(sums)) > 1:
            raise RoleError(f"role '{name}': its {len(sums)} data-parallel ranks diverged (weight checksums {sums})")


def play_round(
    r: int,
    roles: Roles,
    sampler: ConditionSampler,
    pool: Pool,
    seeds: list[Sample],
    heldout: list[Sample],
    finder: Decontaminator | None,
    archive: Archive,
    league: League,
    cfg: Config,
    out_dir: Path,
) -> tuple[dict[str, Any], list[PromptRecord], list[PromptRecord]]:
    """One round; returns its metrics, every scored candidate and those accepted into the pool."""
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[f"seconds_{name}"] = now - clock
        clock = now

    threshold = cfg.guardrail.threshold
    grpo = cfg.generator.grpo
    curriculum = cfg.game.curriculum  # uniform, or cells weighted by the archive (under-covered, still fooled)
    weights = curriculum_weights(archive, sampler.cells, curriculum)
    conditions = sampler.draw(grpo.prompts_per_step * grpo.steps_per_round, r, weights, mix=curriculum.mix)
    prior = pool.records()  # every earlier round's accepted candidates
    novelty = cfg.game.reward.novelty  # its n-grams compare normalised texts, its embeddings the texts as written
    pool_texts = [x.text for x in prior] if novelty.embeddings == NoveltyEmbeddings.guardrail else None
    referee = Referee(
        roles.guardrail,
        roles.judge,
        cfg.game.reward,
        threshold,
        r,
        pool_texts=pool_texts or {normalise(x.text) for x in prior},
    )
    rollout = roles.generator.play(conditions, referee, r)
    check_ranks_agree(roles.generator, "generator", cfg.generator.num_workers)
    lap("rollout")
    records = rollout.records
    # new: not a seed of either side (a rewrite that lands on a held-out seed would leak it into training)
    accepted = accept(records, {normalise(x.text) for x in prior}, {normalise(s.text) for s in (*seeds, *heldout)}, r)
    # and not a near-copy of an evaluation prompt (data.decontamination)
    report = out_dir / DECONTAMINATION_DIR / f"round-{r:04d}.jsonl"
    accepted, contamination = decontaminate(accepted, "pool", cfg, finder, text=lambda x: x.text, report=report)
    pool.write_round(r, accepted)
    archive.update(records, accepted)
    lap("pool")
    before = decision_accuracy(np.array([a.guardrail_score for a in accepted]), accepted, threshold)
    train_stats: dict[str, float] = {}
    update = cfg.game.guardrail_update
    if update != GuardrailUpdate.frozen:
        if update == GuardrailUpdate.restart:
            roles.guardrail.restart()
        train_stats = roles.guardrail.train(
            seeds + pool.samples(),
            cfg.guardrail.train,
            output_dir=str(out_dir / ".trainer"),
            precision=cfg.guardrail.model.precision,
            progress=cfg.progress,
            epochs=cfg.game.guardrail_epochs,
            seed=cfg.guardrail.train.seed + r,
        )
    check_ranks_agree(roles.guardrail, "guardrail", cfg.guardrail.num_workers)
    lap("guardrail_train")
    after_scores = np.asarray(roles.guardrail.unsafe_scores([a.text for a in accepted]))
    after = decision_accuracy(after_scores, accepted, threshold)
    held_scores = roles.guardrail.unsafe_scores([s.text for s in heldout], [s.response for s in heldout])
    held = binary_metrics([s.unsafe for s in heldout], held_scores, threshold)
    lap("eval")
    pool_records = [*prior, *accepted]
    league_row = score_league(r, roles.guardrail, league, accepted, after_scores, pool_records, threshold)
    lap("league")
    seconds["seconds_round"] = sum(seconds.values())
    n = len(records)
    kept = [x for x in records if x.judge.keep]
    metrics = {
        "generated": n,
        "kept": len(kept),
        "accepted": len(accepted),
        "keep_rate": len(kept) / n if n else 0.0,
        "fool_rate": sum(x.fooled for x in kept) / n if n else 0.0,  # kept and misclassified / generated
        "fool_rate_of_kept": sum(x.fooled for x in kept) / len(kept) if kept else None,
        "mean_reward": float(np.mean([x.reward for x in records])) if records else None,
        "guardrail_acc_before": before,
        "guardrail_acc_after": after,
        "heldout_f1": held["f1"],
        "heldout_auprc": held["auprc"],
        "pool_size": len(pool_records),
        "pool_contaminated": contamination["overlaps"],  # near-copies of evaluation prompts (not pooled by default)
        "label_check": cfg.judge.label_check.value,  # "none": the kept candidates' labels are unchecked
        **judge_rejections(records),
        **quality_checks(records, cfg),
        **round_diversity(accepted),
        **(
            {"diversity/embedding_spread": embedding_spread(roles.guardrail.embed([a.text for a in accepted]))}
            if novelty.embeddings == NoveltyEmbeddings.guardrail
            else {}
        ),  # fmt: skip
        "coverage": archive.coverage(sampler.cells),  # share of the sampler's cells with an accepted candidate
        **league_row,
        "kl": rollout.stats.pop("kl", None),
        **{f"gen/{k}": v for k, v in rollout.stats.items()},
        **{f"guardrail/{k}": v for k, v in train_stats.items()},
        **seconds,
    }
    return metrics, records, accepted


# ---------------------------------------------------------------- the game
def spawn_roles(runtime: Runtime, cfg: Config, names: list[str], ckpt: Path | None, out_dir: Path) -> Roles:
    """Build the three roles where the runtime puts them, from a checkpoint or the base models."""
    from duoguard.plan import role_lines
    from duoguard.roles.generator import Rollout

    g, grpo, llm = cfg.guardrail, cfg.generator.grpo, cfg.judge.llm.model
    planned = role_lines("game", cfg)  # named in an out-of-memory error
    gen_base = model_path(cfg.generator.model, cfg.cache_dir)
    per_step = f"{grpo.prompts_per_step} (x num_generations={grpo.num_generations})"
    guardrail = RoleSpec(
        "guardrail",
        build_guardrail,
        kwargs=dict(
            cfg=cfg,
            categories=names,
            base_path=model_path(g.model, cfg.cache_dir),
            checkpoint=str(ckpt / "guardrail") if ckpt else g.init_checkpoint,
            device=runtime.device("guardrail"),
            key="the round checkpoint" if ckpt else "guardrail.init_checkpoint",
        ),
        oom_hints={
            "train": ("guardrail.train.per_device_batch_size", g.train.per_device_batch_size),
            "unsafe_scores": ("guardrail.predict_batch_size", g.predict_batch_size),
            "embed": ("guardrail.predict_batch_size", g.predict_batch_size),
            "league_scores": ("guardrail.predict_batch_size", g.predict_batch_size),
        },
        memory_plan=planned.get("guardrail", ""),
    )
    judge = RoleSpec(
        "judge",
        build_judge,
        kwargs=dict(
            cfg=cfg,
            llm_path=model_path(llm, cfg.cache_dir) if llm is not None and llm.name_or_path else None,
            device=runtime.device("judge"),
        ),
        oom_hints={"judge": ("judge.llm.batch_size", cfg.judge.llm.batch_size)},
        memory_plan=planned.get("judge", ""),
    )
    generator = RoleSpec(
        "generator",
        build_generator,
        kwargs=dict(
            cfg=cfg,
            path=str(ckpt / "generator") if ckpt else gen_base,
            reference_path=gen_base,
            work_dir=str(out_dir / ".generator"),
            device=runtime.device("generator"),
        ),
        oom_hints={"play": ("generator.grpo.prompts_per_step", per_step)},
        memory_plan=planned.get("generator", ""),
        merge={"play": Rollout.merged},  # generator.num_workers > 1: one rollout from every rank's share
    )
    return Roles(guardrail=runtime.spawn(guardrail), judge=runtime.spawn(judge), generator=runtime.spawn(generator))


def warm_up(roles: Roles, seeds: list[Sample], cfg: Config, out_dir: Path) -> None:
    if cfg.game.warmup_guardrail:
        stats = roles.guardrail.train(
            seeds,
            cfg.guardrail.train,
            output_dir=str(out_dir / ".trainer"),
            precision=cfg.guardrail.model.precision,
            progress=cfg.progress,
        )
        log.info("guardrail warm-up on %d seeds: loss %.4f", len(seeds), stats["train_loss"])


def reload_roles(roles: Roles, ckpt: Path) -> None:
    """Every stateful role back to a checkpoint (after a role's process died mid-round)."""
    for role in (roles.generator, roles.guardrail, roles.judge):
        wait_until_alive(role)  # Ray rebuilds a dead role's actor from its spec
    roles.generator.load(str(ckpt / "generator"))
    roles.guardrail.load(str(ckpt / "guardrail"))


def check_nonfinite(history: list[dict], r: int, limit: int) -> None:
    for role, key in (("generator", "gen/skipped_updates"), ("guardrail", "guardrail/skipped_steps")):
        total = sum(h.get(key) or 0 for h in history)
        if total and total >= limit:
            raise GameStopped(
                f"role '{role}' skipped {total:g} updates with non-finite losses, rewards or gradients by round {r} "
                f"(game.max_nonfinite_updates={limit}); the game stops with round {r - 1} complete"
            )


def play_game(cfg: Config) -> dict[str, Any]:
    out_dir = Path(cfg.output_dir)
    taxonomy = build_taxonomy(cfg)
    finder = build_decontaminator(cfg)  # every configured evaluation set: no training text may nearly copy one
    samples, decontamination = decontaminated_training_samples(
        cfg, load_training_samples(cfg, taxonomy), finder, out_dir
    )
    seeds, heldout = split_with_responses(samples, cfg)
    checkpoints = Checkpoints(out_dir / "checkpoints", keep=cfg.game.keep_checkpoints)
    state = checkpoints.resume_state(cfg.game.resume.value)
    rounds = cfg.game.rounds
    if (
        state
        and state.round >= rounds
        and all((out_dir / n / "config.json").is_file() for n in ("generator", "guardrail"))
    ):
        log.info("the game in %s already played its %d rounds", out_dir, state.round)
        if not has_manifest(out_dir, "game"):  # a game finished before stages wrote manifests
            write_game_manifest(out_dir, cfg)
        return {"rounds": state.round, "history": state.history, "output_dir": str(out_dir)}
    sampler = ConditionSampler(
        [s for s in seeds if s.response is None],
        [taxonomy.resolve(c) for c in cfg.game.categories or taxonomy.names],
        list(cfg.data.languages),
        list(cfg.data.attack_styles),
        unsafe_fraction=cfg.game.unsafe_fraction,
        seed=cfg.seed,
    )
    set_up_torch(cfg)
    pool = Pool(out_dir / "pool")
    pool.truncate(state.round if state else 0)
    league = League(out_dir / LEAGUE_DIR, cfg.game.league.size)
    league.truncate(state.round if state else -1)
    tracker = Tracker(
        cfg.logger,
        out_dir,
        config=to_container(cfg),
        run_id=state.run_id if state else None,
        job_type="game",
        step_name="round",
    )
    history = list(state.history) if state else []
    archive = Archive.from_json(state.archive, "state.json") if state and state.archive else Archive()
    tracker.rewrite_history(history)
    ranks = {"generator": cfg.generator.num_workers, "guardrail": cfg.guardrail.num_workers}
    runtime = make_runtime(cfg.runtime, cfg.ray, ranks)
    try:
        roles = spawn_roles(runtime, cfg, taxonomy.names, checkpoints.latest_dir(), out_dir)
        if state is None:  # round 0: the warmed-up guardrail and the initial generator
            warm_up(roles, seeds, cfg, out_dir)
            league.add(
                0,
                checkpoints.save(0, roles, GameState(round=0, run_id=tracker.run_id, pool=pool.manifest()))
                / "guardrail",
            )
        else:
            log.info("resuming the game after round %d from %s", state.round, checkpoints.latest_dir())
        r, failures = len(history) + 1, 0
        while r <= rounds:
            try:  # a round counts once its checkpoint is written
                before = archive.to_json()  # a failed round leaves the archive as it was
                metrics, records, accepted = play_round(
                    r, roles, sampler, pool, seeds, heldout, finder, archive, league, cfg, out_dir
                )
                metrics.update(summary([*history, metrics], r))  # exploitability, forgetting
                entry = {"round": r, **metrics, "role_failures": failures}
                check_nonfinite([*history, entry], r, cfg.game.max_nonfinite_updates)
                state_r = GameState(r, [*history, entry], tracker.run_id, pool.manifest(), archive.to_json())
                league.add(r, checkpoints.save(r, roles, state_r) / "guardrail")
            except RoleDied as e:  # Ray restarts the actor; every role goes back to the last round
                archive = Archive.from_json(before, "the last round's archive")
                failures += 1
                pool.truncate(r - 1)  # what stays on disk is the last completed round
                if failures > cfg.game.max_role_failures:
                    raise GameStopped(
                        f"{e}; {failures} role failures (game.max_role_failures="
                        f"{cfg.game.max_role_failures}): the game stops with round {r - 1} complete"
                    ) from e
                log.warning("%s; retrying round %d from the round %d checkpoint", e, r, r - 1)
                reload_roles(roles, checkpoints.latest_dir())
                continue
            except GameStopped:
                pool.truncate(r - 1)  # what stays on disk is the last completed round
                raise
            history.append(entry)
            every = cfg.game.report_every
            if r == rounds or (every and r % every == 0):
                report_round(out_dir, history, pool, records, archive, tracker, r)
            tracker.log(metrics, step=r)
            _log_candidates(tracker, records, r, cfg.game.sample_table_rows, cfg.seed)
            log.info(
                "round %d: generated %d, kept %d, accepted %d, fool rate %.3f, held-out F1 %s, %.1f s",
                r,
                metrics["generated"],
                metrics["kept"],
                metrics["accepted"],
                metrics["fool_rate"],
                f"{metrics['heldout_f1']:.3f}" if metrics["heldout_f1"] is not None else "–",
                metrics["seconds_round"],
            )
            alarm = collapse_alarm(history, cfg.game.collapse, accepted)
            if alarm:
                log.warning("collapse alarm: %s", alarm)
                if cfg.game.collapse.action == CollapseAction.stop:
                    raise GameStopped(f"{alarm}; the game stops with round {r} complete (game.collapse.action=stop)")
            hacking = reward_hacking_alarm(history, cfg.game.reward_hacking)
            if hacking:
                log.warning("reward-hacking alarm: %s", hacking)
                if cfg.game.reward_hacking.action == CollapseAction.stop:
                    raise GameStopped(
                        f"{hacking}; the game stops with round {r} complete (game.reward_hacking.action=stop)"
                    )
            r, failures = r + 1, 0
        export_final(
            checkpoints.latest_dir(),
            out_dir,
            tracker,
            cfg,
            {"against": finder.benchmarks if finder else [], **decontamination},
        )
        return {"rounds": len(history), "history": history, "output_dir": str(out_dir)}
    finally:
        runtime.shutdown()
        tracker.finish()
        shutil.rmtree(out_dir / ".trainer", ignore_errors=True)
        shutil.rmtree(out_dir / ".generator", ignore_errors=True)


def report_round(
    out_dir: Path,
    history: list[dict[str, Any]],
    pool: Pool,
    records: list[PromptRecord],
    archive: Archive,
    tracker: Tracker,
    r: int,
) -> None:
    """Rewrite <out_dir>/report.md and its plots, and send the plots to W&B; a failure to draw never
    stops the game."""
    try:
        rejected = [x for x in records if x.judge is not None and not x.judge.keep]
        path = write_game_report(out_dir, history, pool.records(), rejected=rejected, archive=archive)
        tracker.log_images({f"report/{png.stem}": png for png in sorted(figures_dir(path).glob("*.png"))}, step=r)
    except Exception as e:  # noqa: BLE001 - the report is a view of the game, not part of it
        log.warning("game report not written: %s", e)


def export_final(ckpt: Path, out_dir: Path, tracker: Tracker, cfg: Config, decontamination: dict[str, Any]) -> None:
    """The last round's models (without optimizer state) and the pool, also as W&B artifacts;
    then the game's manifest (last: its presence means the game finished)."""
    for name in ("generator", "guardrail"):
        atomic_dir(out_dir / name, lambda tmp, n=name: _export(ckpt / n, tmp), replace=True)
    tracker.log_artifact(out_dir / "pool", "pool", "dataset")
    tracker.log_artifact(out_dir / "guardrail", "guardrail", "model")
    tracker.log_artifact(out_dir / "generator", "generator", "model")
    write_game_manifest(out_dir, cfg, decontamination)


def write_game_manifest(out_dir: Path, cfg: Config, decontamination: dict[str, Any] | None = None) -> None:
    outputs = {"pool": "pool", "guardrail": "guardrail", "generator": "generator", "metrics": "metrics.jsonl"}
    inputs = {"guardrail_base": cfg.guardrail.model.name_or_path, "generator_base": cfg.generator.model.name_or_path}
    facts = {"rounds": cfg.game.rounds, "label_check": cfg.judge.label_check.value}
    if decontamination is not None:  # training seeds and files vs the evaluation sets (the pool: metrics)
        facts["decontamination"] = decontamination
    write_manifest(out_dir, StageManifest("game", outputs, inputs, facts, config=to_container(cfg)))


def _export(src: Path, dst: Path) -> None:
    """Final model folder: the checkpoint without its optimizer state (optimizer.pt, or DeepSpeed's folder)."""
    shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("optimizer.pt", "deepspeed"))


def _log_candidates(tracker: Tracker, records: list[PromptRecord], r: int, rows: int, seed: int) -> None:
    """A random sample of the round's candidates, rejected ones included, as a W&B table."""
    if rows <= 0 or not records:
        return
    sample = random.Random(seed * 1_000 + r).sample(records, min(rows, len(records)))
    table = [
        {
            "text": x.text,
            "language": x.language,
            "category": x.category,
            "unsafe": x.unsafe,
            "attack_style": x.attack_style,
            "guardrail_score": x.guardrail_score,
            "fooled": x.fooled,
            "judge_keep": x.judge.keep,
            "judge_reasons": ",".join(x.judge.reasons),
            "reward": x.reward,
        }
        for x in sample
    ]
    tracker.log_table("candidates", list(table[0]), [list(row.values()) for row in table], step=r)
