"""Entry points. The Hydra apps only compose and check config, then call a stage.

    duoguard-guardrail   train, evaluate and save a guardrail          (conf/guardrail.yaml)
    duoguard-eval        score a guardrail on benchmarks, or a target  (conf/eval.yaml)
                         before/after SafeDPO (eval.mode=target)
    duoguard-game        the generator and the guardrail co-evolve     (conf/game.yaml)
    duoguard-safedpo     preference pairs from a game, SafeDPO         (conf/safedpo.yaml)
    duoguard-pipeline    game -> SafeDPO -> evaluation (main job)      (conf/pipeline.yaml)
    duoguard-classify    classify texts from a file or stdin to jsonl  (argparse, no Hydra)
    duoguard-plan        the memory plan of an app's config: one table, exit 2 when it cannot fit

Every app checks the memory plan (duoguard/plan.py) before any model loads when `hardware` states GPUs.

Heavy libraries (torch, transformers) are imported inside the stages, so `--help` and config
errors answer in about a second.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from duoguard.config import APP_SECTIONS, Config, EvalMode, conf_dir, load, register_configs, require
from duoguard.errors import GameStopped, UserError

log = logging.getLogger("duoguard")


CONF_DIR = conf_dir()
register_configs()


def group_sweep_runs(cfg: Config) -> None:
    """In a Hydra multirun, every job's W&B run joins one group named after the sweep, and is
    named by its overrides (unless logger.group / logger.name are set)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    hc = HydraConfig.get()
    if not cfg.logger.group:
        cfg.logger.group = f"{hc.job.name}-{Path(hc.sweep.dir).name}"
    if not cfg.logger.name:
        cfg.logger.name = f"{hc.job.name}-{hc.job.num}" + (
            f" {hc.job.override_dirname}" if hc.job.override_dirname else ""
        )


def app(name: str):
    """A Hydra app (conf/<name>.yaml) whose body receives its config composed, typed and checked
    (`duoguard.config.load`) for the sections it uses. Bad input ends the app with one clear line
    and exit code 2 (Hydra's own composition errors too: unknown keys, wrong types, bad choices),
    a fault policy stopping a game with exit code 3; neither prints a traceback (bugs still do).
    The returned console function keeps the typed body as `.body` (it takes Hydra's DictConfig)."""

    def decorate(fn):
        entered: list[bool] = []

        @functools.wraps(fn)
        def body(raw: DictConfig):
            from duoguard.runtime import RoleError

            entered.append(True)
            try:
                cfg = load(raw, APP_SECTIONS[name])
                group_sweep_runs(cfg)
                if cfg.hardware.gpus_per_node:  # a CPU run has nothing to plan against
                    from duoguard.plan import check_plan

                    check_plan(name, cfg)
                return fn(cfg)
            except (UserError, FileNotFoundError) as e:
                log.error("%s", e)
                print(f"error: {e}", file=sys.stderr)
                raise SystemExit(2) from None
            except (RoleError, GameStopped) as e:  # RoleError includes out-of-memory errors naming the batch-size key
                log.error("%s", e)
                print(f"error: {e}", file=sys.stderr)
                raise SystemExit(3) from None

        hydra_main = hydra.main(version_base="1.3", config_path=CONF_DIR, config_name=name)(body)

        @functools.wraps(fn)
        def main():
            entered.clear()
            try:
                return hydra_main()
            except SystemExit as e:
                if e.code == 1 and not entered:  # Hydra could not compose the config: bad input
                    raise SystemExit(2) from None
                raise

        main.body = body
        return main

    return decorate


@app("guardrail")
def guardrail_main(cfg: Config) -> None:
    from duoguard.stages.guardrail import run_guardrail_stage

    run_guardrail_stage(cfg)


@app("eval")
def eval_main(cfg: Config) -> None:
    if cfg.eval.mode == EvalMode.target:
        from duoguard.stages.target_eval import run_target_eval

        run_target_eval(cfg)
        return
    require(cfg, "eval.guardrail_path")
    from duoguard.stages.guardrail import run_eval_stage

    run_eval_stage(cfg)


@app("safedpo")
def safedpo_main(cfg: Config) -> None:
    from duoguard.stages.safedpo import run_safedpo_stage

    run_safedpo_stage(cfg)


@app("pipeline")
def pipeline_main(cfg: Config) -> None:
    from duoguard.pipeline import run_pipeline

    report = run_pipeline(cfg)
    return report["objective"]  # for sweepers: ASR + weighted over-refusal after SafeDPO (search.*)


@app("game")
def game_main(cfg: Config) -> None:
    from duoguard.game import play_game

    history = play_game(cfg)["history"]
    return objective(history[-1] if history else {}, cfg.game.objective)


def objective(metrics: dict, name: str) -> float | None:
    """The number an app hands back to Hydra (sweepers such as Optuna optimise it)."""
    value = metrics.get(name)
    return float(value) if value is not None else None


def classify_main(argv: list[str] | None = None) -> int:
    from duoguard.classify import main

    return main(argv)


def _cluster_hardware(address: str) -> dict[str, float]:
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise UserError("duoguard-plan --from-cluster needs Ray (pip install 'ray[default]')")
    from duoguard.runtime.ray_actors import cluster_hardware

    try:
        return cluster_hardware(address)
    except ConnectionError as e:
        raise UserError(f"duoguard-plan --from-cluster: no Ray cluster at ray.address={address} ({e})") from None


def plan_main(argv: list[str] | None = None) -> int:
    """`duoguard-plan <app> [--from-cluster] [overrides...]`: the app's config composed as the app does, its
    memory plan printed as one table; exit code 2 when a role cannot fit the hardware (or the config is bad).
    By default it plans for the hardware the config states; `--from-cluster` reads nodes, GPUs per node and
    GPU memory from the running Ray cluster at `ray.address` (default: auto), over the config's."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from duoguard.config import compose
    from duoguard.plan import APP_STAGES, make_plan

    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in APP_STAGES:
        print(f"usage: duoguard-plan {{{','.join(APP_STAGES)}}} [overrides...]", file=sys.stderr)
        return 2
    app, overrides = argv[0], [a for a in argv[1:] if a != "--from-cluster"]
    try:
        cfg = compose(app, overrides)
        if "--from-cluster" in argv:
            found = _cluster_hardware(cfg.ray.address or "auto")
            print("hardware from the cluster: " + ", ".join(f"hardware.{k}={v:g}" for k, v in found.items()))
            cfg = compose(app, [*overrides, *(f"hardware.{k}={v:g}" for k, v in found.items())])
        plan = make_plan(app, cfg)
    except (UserError, FileNotFoundError, HydraException, OmegaConfBaseException) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(plan.table())
    problems = plan.problems()
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 2 if problems else 0
