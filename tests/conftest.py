"""Shared fixtures: tiny offline models in a per-session cache, configs composed like the apps."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
FIXTURES = Path(__file__).parent / "fixtures"
SHARED_DATA = Path(os.environ.get("DUOGUARD_DATA", ROOT.parent / "shared" / "data"))
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One cache for the session: the tiny model is built once and loaded by path after."""
    path = tmp_path_factory.mktemp("duoguard_cache")
    os.environ["DUOGUARD_CACHE"] = str(path)
    return path


def compose(overrides: list[str] | None = None, config_name: str = "guardrail"):
    """Compose, type and check the config exactly as an app would (same search path, schema, defaults
    and checks of the app's sections)."""
    from duoguard.config import compose as compose_config

    return compose_config(config_name, overrides)


@pytest.fixture(scope="session")
def taxonomy():

    from duoguard.taxonomy import Taxonomy

    return Taxonomy.from_config(compose().taxonomy)  # conf/taxonomy/duoguard12.yaml, the default


@pytest.fixture(scope="session")
def tiny_base(cache_dir) -> str:
    """Path of the default tiny causal-LM checkpoint (as `name_or_path: tiny` resolves it)."""
    from duoguard.data.readers import builtin_seed_texts
    from duoguard.models import resolve_model_path

    model_cfg = compose(["output_dir=/tmp/x"]).guardrail.model  # conf/guardrail/model/tiny.yaml
    return resolve_model_path(model_cfg, cache_dir, builtin_seed_texts())


def run_app(name: str, *args: str, timeout: int = 600, env: dict | None = None, input: str | None = None):
    """Run an installed console script the way a user would; returns CompletedProcess."""
    import subprocess

    full_env = {**os.environ, "WANDB_SILENT": "true", **(env or {})}
    return subprocess.run(
        [str(BIN / name), *args], capture_output=True, text=True, timeout=timeout, env=full_env, cwd=ROOT, input=input
    )
