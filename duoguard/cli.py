"""Entry points. The Hydra apps only compose and check config, then call a stage.

    duoguard-guardrail   train, evaluate and save a guardrail          (conf/guardrail.yaml)
    duoguard-eval        score a guardrail checkpoint on benchmarks    (conf/eval.yaml)
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

from duoguard.config import register_configs, require, validate
from duoguard.errors import UserError

log = logging.getLogger("duoguard")


def _conf_dir() -> str:
    """`conf/` beside the package in a checkout or editable install, inside it in a wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"duoguard's conf/ folder was not found next to {here}")


CONF_DIR = _conf_dir()
register_configs()


def _user_errors(fn):
    """Bad input ends the app with one clear line and exit code 2, not a traceback."""
    expected = (UserError, FileNotFoundError)

    @functools.wraps(fn)
    def wrapper(cfg: DictConfig):
        try:
            return fn(cfg)
        except expected as e:
            log.error("%s", e)
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None

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
    require(cfg, "eval.guardrail_path")
    validate(cfg, ("eval", "logger", "runtime"))
    from duoguard.stages import run_eval_stage

    run_eval_stage(cfg)


def classify_main(argv: list[str] | None = None) -> int:
    from duoguard.classify import main

    return main(argv)
