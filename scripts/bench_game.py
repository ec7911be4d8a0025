"""Game overhead: a round's wall time in the local and Ray runtimes against the sum of its parts
run standalone, at three sizes, side by side in one run.

    python scripts/bench_game.py                  # tiny models on CPU (the default game config)
    python scripts/bench_game.py --sizes 2,4,8 --rounds 3

For each size (prompts per GRPO step; G candidates each, `steps_per_round` steps), the same game
config is played twice, `runtime=local` and `runtime=ray`, and the last round's wall time is
compared with the standalone parts on the same models and batch sizes:

- GRPO: TRL's GRPOTrainer steps (generation + update) with a trivial reward, same GRPOConfig;
- scoring: the judge's rules and the guardrail's `unsafe_scores` on as many candidates;
- guardrail: training on as many samples (seeds + pool) for `game.guardrail_epochs`;
- eval: the guardrail on the held-out seeds.

ratio = round wall time / sum of parts (1.0 = no overhead). Rounds/minute is 60 / round time.
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

from duoguard.report import markdown_table  # noqa: E402


def compose_game(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from duoguard.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("game", overrides=overrides)


def time_parts(cfg, last: dict) -> dict[str, float]:
    """The round's parts, standalone, on fresh roles of the same config."""
    from datasets import Dataset
    from trl import GRPOTrainer

    from duoguard.config import to_container
    from duoguard.game import build_generator, build_guardrail, build_judge
    from duoguard.prompts import ConditionSampler
    from duoguard.roles.judge import Candidate
    from duoguard.stages import build_taxonomy, load_training_samples, model_path, split_with_responses

    plain = to_container(cfg)
    taxonomy = build_taxonomy(cfg)
    seeds, heldout = split_with_responses(load_training_samples(cfg, taxonomy), cfg)
    work = Path(tempfile.mkdtemp(prefix="bench_parts_"))
    parts: dict[str, float] = {}
    try:
        gen_base = model_path(cfg.generator.model, cfg.cache_dir)
        gen = build_generator(plain, gen_base, gen_base, str(work / "gen"), "cpu")
        sampler = ConditionSampler(
            [s for s in seeds if s.response is None],
            taxonomy.names,
            list(cfg.data.languages),
            list(cfg.data.attack_styles),
            seed=0,
        )
        n_prompts = cfg.generator.grpo.prompts_per_step * cfg.generator.grpo.steps_per_round
        dataset = Dataset.from_list([{"prompt": gen.prompt(c)} for c in sampler.draw(n_prompts, 0)])
        rng = random.Random(0)
        trainer = GRPOTrainer(model=gen.model, reward_funcs=[lambda completions, **_: [rng.random() for _ in completions]],
                              args=gen.grpo_args(), train_dataset=dataset, processing_class=gen.tokenizer)  # fmt: skip
        from duoguard.training import quiet_trainer

        quiet_trainer(trainer)
        trainer.train()  # first call builds the optimizer, as the game's first round does
        trainer._step, trainer._buffered_inputs = 0, None
        start = time.perf_counter()
        trainer.train()
        parts["grpo"] = time.perf_counter() - start

        guard = build_guardrail(plain, taxonomy.names, model_path(cfg.guardrail.model, cfg.cache_dir), None, "cpu")
        judge = build_judge(plain, None, "cpu")
        texts = [rng.choice(seeds).text for _ in range(int(last["generated"]))]
        start = time.perf_counter()
        judge.judge([Candidate(t, rng.choice(seeds).text, True, "en", "Hate") for t in texts])
        guard.unsafe_scores(texts)
        parts["scoring"] = time.perf_counter() - start

        n_train = int(last["guardrail/train_examples"]) if "guardrail/train_examples" in last else len(seeds)
        train = (seeds * (n_train // len(seeds) + 1))[:n_train]
        start = time.perf_counter()
        guard.train(train, plain["guardrail"]["train"], output_dir=work / "trainer", progress=False,
                    epochs=float(cfg.game.guardrail_epochs))  # fmt: skip
        parts["guardrail"] = time.perf_counter() - start

        start = time.perf_counter()
        guard.unsafe_scores([s.text for s in heldout], [s.response for s in heldout])
        guard.unsafe_scores(texts[: int(last["accepted"])])
        parts["eval"] = time.perf_counter() - start
    finally:
        shutil.rmtree(work, ignore_errors=True)
    parts["sum"] = sum(parts.values())
    return parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="2,4,8", help="prompts per GRPO step, one game per value")
    ap.add_argument("--rounds", type=int, default=2, help="rounds per game; the last one is timed")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from duoguard.game import play_game

    rows = []
    for size in [int(x) for x in args.sizes.split(",")]:
        out = Path(tempfile.mkdtemp(prefix="bench_game_"))
        common = [
            "logger=none",
            "progress=false",
            f"game.rounds={args.rounds}",
            f"generator.grpo.prompts_per_step={size}",
        ]
        try:
            timed = {}
            for runtime in ("local", "ray"):
                cfg = compose_game([*common, f"runtime={runtime}", f"output_dir={out / runtime}"])
                timed[runtime] = play_game(cfg)["history"][-1]
            parts = time_parts(compose_game([*common, f"output_dir={out / 'parts'}"]), timed["local"])
        finally:
            shutil.rmtree(out, ignore_errors=True)
        local, ray = timed["local"]["seconds_round"], timed["ray"]["seconds_round"]
        rows.append({
            "prompts_per_step": size, "samples_per_round": timed["local"]["generated"],
            "local_s": local, "ray_s": ray, "parts_s": parts["sum"], "grpo_s": parts["grpo"], "scoring_s": parts["scoring"],
            "guardrail_s": parts["guardrail"], "eval_s": parts["eval"],
            "local_ratio": local / parts["sum"], "ray_ratio": ray / parts["sum"],
            "local_rounds_per_min": 60 / local, "ray_rounds_per_min": 60 / ray,
            "local_phases": {k: v for k, v in timed["local"].items() if k.startswith("seconds_")},
            "ray_phases": {k: v for k, v in timed["ray"].items() if k.startswith("seconds_")},
        })  # fmt: skip
    cols = ["samples_per_round", "local_s", "ray_s", "parts_s", "grpo_s", "scoring_s", "guardrail_s", "eval_s",
            "local_ratio", "ray_ratio", "local_rounds_per_min", "ray_rounds_per_min"]  # fmt: skip
    print(markdown_table(cols, [[r[c] for c in cols] for r in rows], digits=2))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
