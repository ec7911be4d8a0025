"""Game overhead: each round's wall time in the local and Ray runtimes against the sum of its parts
run standalone, at three sizes, side by side in one run.

    python scripts/bench_game.py                  # tiny models on CPU (the default game config)
    python scripts/bench_game.py --sizes 2,4,8 --rounds 3
    python scripts/bench_game.py --health --sizes 4 --rounds 4   # the health checks' cost, off vs on
    python scripts/bench_game.py --shape 0.5b --device cuda --runtimes local --sizes 8,16,32   # GPU

For each size (prompts per GRPO step; G candidates each, `steps_per_round` steps), the same game
config is played twice, `runtime=local` and `runtime=ray`. A round's wall time runs from the end
of the previous round's tracking call to the end of its own (metrics.jsonl timestamps): rollout,
pool, guardrail training, evaluation, checkpoint and logging. Rounds 2.. are timed (round 1 also
builds the trainers). The parts, standalone on fresh roles with the same models and batch sizes:

- grpo: TRL's GRPOTrainer steps (generation + update) with a trivial reward, same GRPOConfig;
- scoring: the judge's rules and the guardrail's `unsafe_scores` on as many of the round's own
  candidates (the local game's pool rows of that round, repeated to the round's count);
- guardrail: training on the same samples as the game's round (seeds + pool up to that round)
  for `game.guardrail_epochs`;
- eval: the guardrail on the held-out seeds and the round's accepted candidates.

ratio = round wall time / sum of parts (1.0 = no overhead). rounds/min = 60 / round wall time.
Generation tokens/s = completion tokens generated in the round / the rollout phase's seconds.

`--health` instead measures what the game's health checks add to a round (issue target: under 15% of
a round at the default size), side by side: the same game with them off (`game.league.size=0`,
`game.reward.novelty.weight=0`, `game.report_every=0`) and on (a league of 3, novelty weight 0.5, the
report every round). The on game's own phases are timed in it (`seconds_league`); the report (with its
figures), the diversity metrics and the novelty of every candidate against the pool are re-timed
standalone on that game's round data, since they run outside the round's phases. checks_overhead =
(league + diversity + novelty) / the off game's round wall time; with_report_overhead adds the report.

`--shape` swaps the tiny models for random-weight ones of a real architecture's size (speed
only; the offline BPE tokenizer keeps its small vocabulary): `0.5b` = Qwen2.5-0.5B's layers for
both roles, `1.5b` = Qwen2.5-1.5B's for the generator.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from duoguard.config import compose  # noqa: E402
from duoguard.report import markdown_table  # noqa: E402

SHAPES = {  # hidden, intermediate, layers, heads, kv heads
    "0.5b": (896, 4864, 24, 14, 2),
    "1.5b": (1536, 8960, 28, 12, 2),
}


def shape_overrides(shape: str | None) -> list[str]:
    if not shape:
        return []
    out = []
    for role, name in (("guardrail", "0.5b"), ("generator", shape)):
        hidden, inter, layers, heads, kv = SHAPES[name]
        out += [
            f"{role}.model.tiny.hidden_size={hidden}",
            f"{role}.model.tiny.intermediate_size={inter}",
            f"{role}.model.tiny.num_layers={layers}",
            f"{role}.model.tiny.num_heads={heads}",
            f"{role}.model.tiny.num_kv_heads={kv}",
            f"{role}.model.precision=auto",
        ]
    return out


def round_walls(run: Path) -> dict[int, float]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return {b["round"]: b["time"] - a["time"] for a, b in zip(lines, lines[1:])}


def time_parts(cfg, run: Path, history: list[dict], rounds: list[int]) -> dict[int, dict[str, float]]:
    """Each timed round's parts, standalone, on fresh roles of the same config."""
    from datasets import Dataset
    from trl import GRPOTrainer

    from duoguard.data.pool import Pool
    from duoguard.factory import (
        build_generator,
        build_guardrail,
        build_judge,
        build_taxonomy,
        load_training_samples,
        model_path,
        split_with_responses,
    )
    from duoguard.models import pick_device
    from duoguard.prompts import ConditionSampler
    from duoguard.roles.judge import Candidate
    from duoguard.training import quiet_trainer
    from duoguard.trl_private import reset_grpo_rollout

    device = pick_device(cfg.runtime.device)
    taxonomy = build_taxonomy(cfg)
    seeds, heldout = split_with_responses(load_training_samples(cfg, taxonomy), cfg)
    pool = Pool(run / "pool").samples()
    work = Path(tempfile.mkdtemp(prefix="bench_parts_"))
    rng = random.Random(0)
    try:
        gen_base = model_path(cfg.generator.model, cfg.cache_dir)
        gen = build_generator(
            cfg=cfg, path=gen_base, reference_path=gen_base, work_dir=str(work / "gen"), device=device
        )
        sampler = ConditionSampler(
            [s for s in seeds if s.response is None],
            taxonomy.names,
            list(cfg.data.languages),
            list(cfg.data.attack_styles),
            seed=0,
        )
        n_prompts = cfg.generator.grpo.prompts_per_step * cfg.generator.grpo.steps_per_round
        dataset = Dataset.from_list([{"prompt": gen.prompt(c)} for c in sampler.draw(n_prompts, 0)])
        trainer = GRPOTrainer(
            model=gen.model,
            reward_funcs=[lambda completions, **_: [rng.random() for _ in completions]],
            args=gen.grpo_args(),
            train_dataset=dataset,
            processing_class=gen.tokenizer,
        )
        quiet_trainer(trainer)
        trainer.train()  # first call builds the optimizer, as the game's first round does
        reset_grpo_rollout(trainer)
        start = time.perf_counter()
        trainer.train()
        grpo = time.perf_counter() - start
        del trainer, gen

        guard = build_guardrail(
            cfg=cfg,
            categories=taxonomy.names,
            base_path=model_path(cfg.guardrail.model, cfg.cache_dir),
            checkpoint=None,
            device=device,
        )
        judge = build_judge(cfg=cfg, llm_path=None, device=device)
        out = {}
        for r in rounds:
            parts = {"grpo": grpo}
            last = history[r - 1]
            own = [s for s in pool if s.provenance["round"] == r] or seeds
            texts = [own[i % len(own)].text for i in range(int(last["generated"]))]
            start = time.perf_counter()
            judge.judge([Candidate(t, rng.choice(seeds).text, True, "en", taxonomy.names[0]) for t in texts])
            guard.unsafe_scores(texts)
            parts["scoring"] = time.perf_counter() - start

            train = seeds + [s for s in pool if s.provenance["round"] <= r]
            start = time.perf_counter()
            guard.train(
                train,
                cfg.guardrail.train,
                output_dir=work / "trainer",
                progress=False,
                epochs=cfg.game.guardrail_epochs,
            )
            parts["guardrail"] = time.perf_counter() - start

            start = time.perf_counter()
            guard.unsafe_scores([s.text for s in heldout], [s.response for s in heldout])
            guard.unsafe_scores([s.text for s in own][: int(last["accepted"])])
            parts["eval"] = time.perf_counter() - start
            parts["sum"] = sum(parts.values())
            out[r] = parts
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def common_overrides(args, size: int) -> list[str]:
    """The game config every variant of one size shares."""
    return [
        "logger=none",
        "progress=false",
        f"game.rounds={args.rounds}",
        f"generator.grpo.prompts_per_step={size}",
        *shape_overrides(args.shape),
        *([f"runtime.device={args.device}"] if args.device else []),
    ]


HEALTH_OFF = ["game.league.size=0", "game.reward.novelty.weight=0", "game.report_every=0", "game.collapse.floor=0"]
HEALTH_ON = ["game.league.size=3", "game.reward.novelty.weight=0.5", "game.report_every=1"]


def health(args, common: list[str], out: Path) -> list[dict]:
    """Rounds 2.. of the game with the health checks off and on; the checks' own seconds per round."""
    from duoguard.data.pool import Pool
    from duoguard.diversity import round_diversity
    from duoguard.game import play_game
    from duoguard.game_report import write_game_report
    from duoguard.novelty import NgramIndex, group_ids, novelty

    play_game(compose("game", [*common, *HEALTH_OFF, f"output_dir={out / 'off'}"]))
    cfg = compose("game", [*common, *HEALTH_ON, f"output_dir={out / 'on'}"])
    on = play_game(cfg)["history"]
    walls_off, walls_on = round_walls(out / "off"), round_walls(out / "on")
    records = Pool(out / "on" / "pool").records()
    rows = []
    for r in range(2, args.rounds + 1):
        prior = [x for x in records if x.round < r]
        fresh = [x for x in records if x.round == r]
        start = time.perf_counter()
        write_game_report(out / "timing", on[:r], [x for x in records if x.round <= r])
        report_s = time.perf_counter() - start
        start = time.perf_counter()
        round_diversity(fresh)
        diversity_s = time.perf_counter() - start
        # every candidate the round scored: its accepted ones repeated up to the round's count
        texts = [x.text for x in fresh] or ["-"]
        texts = (texts * (on[r - 1]["generated"] // len(texts) + 1))[: on[r - 1]["generated"]]
        groups = [{"seed_id": str(i // cfg.generator.grpo.num_generations)} for i in range(len(texts))]
        start = time.perf_counter()
        novelty(texts, group_ids(groups), NgramIndex.build([x.text for x in prior], cfg.game.reward.novelty.ngram))
        novelty_s = time.perf_counter() - start
        league_s = on[r - 1]["seconds_league"]
        added = league_s + diversity_s + novelty_s  # the target: the league and diversity terms
        rows.append(
            {
                "prompts_per_step": cfg.generator.grpo.prompts_per_step,
                "round": r,
                "samples": on[r - 1]["generated"],
                "pool": len(prior),
                "off_round_s": walls_off[r],
                "on_round_s": walls_on[r],
                "league_s": league_s,
                "report_s": report_s,
                "diversity_s": diversity_s,
                "novelty_s": novelty_s,
                "checks_s": added,
                "checks_overhead": added / walls_off[r],
                "with_report_overhead": (added + report_s) / walls_off[r],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="2,4,8", help="prompts per GRPO step, one game per value")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per game; rounds 2.. are timed")
    ap.add_argument("--runtimes", default="local,ray", help="which runtimes to play (ray needs Ray installed)")
    ap.add_argument("--shape", choices=sorted(SHAPES), default=None, help="random-weight models of a real size")
    ap.add_argument("--device", default=None, help="runtime.device (default: the preset's)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--health", action="store_true", help="the health checks' cost: off vs on (local runtime)")
    args = ap.parse_args()
    if args.rounds < 2:
        raise SystemExit("--rounds must be >= 2 (round 1 builds the trainers and is not timed)")

    from duoguard.game import play_game

    if args.health:
        rows = []
        for size in [int(x) for x in args.sizes.split(",")]:
            out = Path(tempfile.mkdtemp(prefix="bench_health_"))
            common = common_overrides(args, size)
            try:
                rows += health(args, common, out)
            finally:
                shutil.rmtree(out, ignore_errors=True)
        cols = list(rows[0])
        print(markdown_table(cols, [[r[c] for c in cols] for r in rows], digits=3))
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
        return

    runtimes = args.runtimes.split(",")
    rows = []
    for size in [int(x) for x in args.sizes.split(",")]:
        out = Path(tempfile.mkdtemp(prefix="bench_game_"))
        common = common_overrides(args, size)
        try:
            histories, walls = {}, {}
            for runtime in runtimes:
                cfg = compose("game", [*common, f"runtime={runtime}", f"output_dir={out / runtime}"])
                histories[runtime] = play_game(cfg)["history"]
                walls[runtime] = round_walls(out / runtime)
            first = runtimes[0]
            timed = list(range(2, args.rounds + 1))
            parts = time_parts(
                compose("game", [*common, f"output_dir={out / 'parts'}"]), out / first, histories[first], timed
            )
        finally:
            shutil.rmtree(out, ignore_errors=True)
        for r in timed:
            h = histories[first][r - 1]
            tokens = h["generated"] * (h.get("gen/completion_tokens") or 0)
            row = {
                "prompts_per_step": size,
                "round": r,
                "samples": h["generated"],
                "parts_s": parts[r]["sum"],
                **{f"{k}_s": v for k, v in parts[r].items() if k != "sum"},
                "gen_tokens_per_s": tokens / h["seconds_rollout"],
            }
            for runtime in runtimes:
                row[f"{runtime}_s"] = walls[runtime][r]
                row[f"{runtime}_ratio"] = walls[runtime][r] / parts[r]["sum"]
                row[f"{runtime}_rounds_per_min"] = 60 / walls[runtime][r]
                row[f"{runtime}_phases"] = {
                    k: v for k, v in histories[runtime][r - 1].items() if k.startswith("seconds_")
                }
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if not k.endswith("_phases")}), flush=True)
    cols = [
        "samples",
        "round",
        *[f"{rt}_s" for rt in runtimes],
        "parts_s",
        "grpo_s",
        "scoring_s",
        "guardrail_s",
        "eval_s",
        *[f"{rt}_ratio" for rt in runtimes],
        *[f"{rt}_rounds_per_min" for rt in runtimes],
        "gen_tokens_per_s",
    ]
    print(markdown_table(cols, [[r[c] for c in cols] for r in rows], digits=2))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
