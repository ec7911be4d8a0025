"""Where the shipped configuration lives, and files named in configuration."""

from __future__ import annotations

from pathlib import Path

from duoguard.config.base import ConfigError


def conf_dir() -> str:
    """`conf/` beside the package in a checkout or editable install, inside it in a wheel."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"duoguard's conf/ folder was not found next to {package}")


def config_file(path: str) -> str:
    """A file named in config (e.g. a DeepSpeed JSON): as given, else relative to `conf/`."""
    p = Path(path).expanduser()
    if p.is_file():
        return str(p)
    shipped = Path(conf_dir()) / str(path).removeprefix("conf/")
    if shipped.is_file():
        return str(shipped)
    raise ConfigError(f"file not found: {path} (looked in the working directory and in {conf_dir()})")


def zero_stage(path: str | None) -> int:
    """The ZeRO stage of a DeepSpeed JSON config (0 without one)."""
    import json

    if not path:
        return 0
    return int(json.loads(Path(config_file(path)).read_text()).get("zero_optimization", {}).get("stage", 0))
