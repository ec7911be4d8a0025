"""Entry points. The Hydra apps only compose and check config, then call a stage.

    duoguard-guardrail   train, evaluate and save a guardrail          (conf/guardrail.yaml)
    duoguard-eval        score a guardrail on benchmarks, or a target  (conf/eval.yaml)
                         before/after SafeDPO (eval.mode=target)
    duoguard-game        the generator and the guardrail co-evolve     (conf/game.yaml)
    duoguard-safedpo     preference pairs from a game, SafeDPO         (conf/safedpo.yaml)
    duoguard-pipeline    game -> SafeDPO -> evaluation (main job)      (conf/pipeline.yaml)
    duoguard-classify    classify texts from a file or stdin to jsonl  (argparse, no Hydra)

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

from duoguard.config import conf_dir, register_configs, require, validate
from duoguard.errors import GameStopped, UserError

log = logging.getLogger("duoguard")
GAME_SECTIONS = ("taxonomy", "data", "guardrail", "generator", "judge", "game", "logger", "runtime")
ALL_SECTIONS = (*GAME_SECTIONS, "target", "safedpo", "eval")


CONF_DIR = conf_dir()
register_configs()


def group_sweep_runs(cfg: DictConfig) -> None:
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


def _user_errors(fn):
    """Bad input ends the app with one clear line and exit code 2, a fault policy stopping a game
    with exit code 3; neither prints a traceback (bugs still do)."""

    @functools.wraps(fn)
    def wrapper(cfg: DictConfig):
        from duoguard.runtime import RoleError

        try:
            group_sweep_runs(cfg)
            return fn(cfg)
        except (UserError, FileNotFoundError) as e:
            log.error("%s", e)
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        except (RoleError, GameStopped) as e:  # RoleError includes out-of-memory errors naming the batch-size key
            log.error("%s", e)
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(3) from None

    return wrapper


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="guardrail")
@_user_errors
def guardrail_main(cfg: DictConfig) -> None:
    validate(cfg, ("taxonomy", "data", "guardrail", "eval", "logger", "runtime"))
    from duoguard.stages import run_guardrail_stage

    run_guardrail_stage(cfg)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
@_user_errors
def eval_main(cfg: DictConfig) -> None:
    validate(cfg, ("eval", "logger", "runtime"))
    if cfg.eval.mode == "target":
        from duoguard.pipeline import run_target_eval

        run_target_eval(cfg)
        return
    require(cfg, "eval.guardrail_path")
    from duoguard.stages import run_eval_stage

    run_eval_stage(cfg)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="safedpo")
@_user_errors
def safedpo_main(cfg: DictConfig) -> None:
    validate(cfg, ("target", "safedpo", "logger", "runtime"))
    from duoguard.pipeline import run_safedpo_stage

    run_safedpo_stage(cfg)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="pipeline")
@_user_errors
def pipeline_main(cfg: DictConfig) -> None:
    validate(cfg, ALL_SECTIONS)
    from duoguard.pipeline import run_pipeline

    report = run_pipeline(cfg)
    return report["after"]["asr"]["overall"]["asr"]  # for sweepers: attack success rate after SafeDPO


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="game")
@_user_errors
def game_main(cfg: DictConfig) -> None:
    validate(cfg, GAME_SECTIONS)
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
