"""From YAML and command-line overrides to one checked `Config` object.

The schema dataclasses are registered in Hydra's ConfigStore as `duoguard_schema`;
`conf/config.yaml` lists it first in its defaults, so every group file and override is merged
into typed nodes: an unknown key, a wrong type or a bad enum value fails while Hydra composes,
with the key's full name. `load` then turns the composed DictConfig into the dataclass tree
(`OmegaConf.to_object`) and runs the sections' own checks (ranges, paths, consistency). From
there on every stage and role receives typed sections, never a DictConfig.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from enum import Enum
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from duoguard import toy_world
from duoguard.config.base import ConfigError
from duoguard.config.paths import conf_dir
from duoguard.config.root import ALL_SECTIONS, APP_SECTIONS, Config

SCHEMA_NAME = "duoguard_schema"


def register_configs() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=SCHEMA_NAME, node=Config)
    # ${toy_world:<cache_dir>,<name>}: a file of the toy world, built into the cache on first use
    OmegaConf.register_new_resolver("toy_world", toy_world.resolve, replace=True)


def load(cfg: DictConfig, sections: tuple[str, ...] = ALL_SECTIONS) -> Config:
    """The composed config as a checked `Config`: missing values, then each section's checks."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"missing required value(s): {', '.join(missing)} (set them, e.g. {missing[0]}=...)")
    try:
        typed = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(f"{getattr(e, 'full_key', '') or 'config'}: {e.msg if hasattr(e, 'msg') else e}") from None
    if not isinstance(typed, Config):
        raise ConfigError(f"the config was not composed on duoguard's schema ({SCHEMA_NAME} missing from defaults)")
    typed.check(sections)
    return typed


def compose_raw(config_name: str, overrides: list[str] | None = None) -> DictConfig:
    """An app's config (conf/<config_name>.yaml + overrides) as Hydra hands it to the app."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides or []))


def compose(config_name: str, overrides: list[str] | None = None) -> Config:
    """An app's config composed and checked exactly as the app does it: for scripts, notebooks and tests.
    Without an `output_dir=` override the output dir is where the app would put its run
    (runs/<app>/<time>; nothing is created until a stage writes there)."""
    import time

    overrides = list(overrides or [])
    if not any(o.split("=", 1)[0].lstrip("+~") == "output_dir" for o in overrides):
        overrides.append(f"output_dir=runs/{config_name}/{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    return load(compose_raw(config_name, overrides), APP_SECTIONS.get(config_name, ALL_SECTIONS))


def require(cfg: Any, *keys: str) -> None:
    """Fail when any of `keys` (full dotted names) is null."""
    for key in keys:
        value = cfg
        for part in key.split("."):
            value = getattr(value, part, None)
        if value is None:
            raise ConfigError(f"missing required value '{key}': set it on the command line, e.g. {key}=...")


def to_container(section: Any) -> Any:
    """A section as plain data (enums as their values): for trackers, reports and manifests."""
    if dataclasses.is_dataclass(section):
        return {f.name: to_container(getattr(section, f.name)) for f in dataclasses.fields(section)}
    if isinstance(section, DictConfig):
        return OmegaConf.to_container(section, resolve=True, enum_to_str=True)
    if isinstance(section, Enum):
        return section.value
    if isinstance(section, (list, tuple)):
        return [to_container(v) for v in section]
    if isinstance(section, dict):
        return {k: to_container(v) for k, v in section.items()}
    return section


def settings(section: Any = Config, prefix: str = "") -> Iterator[tuple[str, str, Any, str]]:
    """Every setting under a section class: (full key, type, default, help), for docs and checks."""
    for f in dataclasses.fields(section):
        key = f"{prefix}{f.name}"
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        )
        yield key, str(f.type), default, f.metadata.get("help", "")
        kind = default if dataclasses.is_dataclass(default) else None
        if kind is not None:
            yield from settings(type(kind), f"{key}.")


def with_overrides(cfg: Config, updates: dict[str, Any]) -> Config:
    """A copy of `cfg` with dotted keys set (e.g. {"safedpo.game_dir": "..."}): one stage's config."""
    import copy

    out = copy.deepcopy(cfg)
    for key, value in updates.items():
        *path, last = key.split(".")
        node = out
        for part in path:
            node = getattr(node, part)
        if not hasattr(node, last):
            raise ConfigError(f"unknown key '{key}'")
        setattr(node, last, value)
    return out
