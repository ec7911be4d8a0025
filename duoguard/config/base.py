"""What every config section is built from: the error type, documented settings, and checks.

Each field is declared with `setting(default, help)`, so its meaning, unit and the reason for its
default sit beside it (as in TRL's `GRPOConfig`, whose fields carry `metadata={"help": ...}`), and
`duoguard.config.describe()` can list them. Each section checks its own values in
`check(key)`, where `key` is the section's full dotted name: errors then name the full key
(`guardrail.train.learning_rate`), which a dataclass's `__post_init__` could not know.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing
from collections.abc import Callable
from enum import Enum
from typing import Any

from duoguard.errors import UserError


class ConfigError(UserError):
    """A configuration value that cannot work; the message names the full key."""


class Choice(str, Enum):
    """A closed set of strings (OmegaConf checks the value while Hydra composes)."""

    def __str__(self) -> str:
        return self.value


class Section:
    """Base of every config dataclass: a section built by hand (a test, a notebook) may give a
    choice as its string, e.g. `SafeDPOConfig(lr_scheduler="constant")`; it becomes the enum member
    here, so code can rely on the declared types whoever built the object."""

    def __post_init__(self) -> None:
        for name, enum in _choice_fields(type(self)).items():
            value = getattr(self, name)
            if isinstance(value, list):
                setattr(self, name, [_as_choice(enum, v) for v in value])
            elif value is not None:
                setattr(self, name, _as_choice(enum, value))


def _as_choice(enum: type[Enum], value: Any) -> Any:
    try:
        return enum(value)
    except ValueError:
        return value  # left for check() to report with its full key


@functools.cache
def _choice_fields(cls: type) -> dict[str, type[Enum]]:
    """Fields typed `Choice`, `Choice | None` or `list[Choice]`, with their enum."""
    out = {}
    for name, hint in typing.get_type_hints(cls).items():
        args = (
            typing.get_args(hint)
            if isinstance(hint, types.UnionType) or typing.get_origin(hint) in (list, typing.Union)
            else (hint,)
        )
        for arg in args:
            if isinstance(arg, type) and issubclass(arg, Choice):
                out[name] = arg
    return out


def setting(default: Any = dataclasses.MISSING, help: str = "", *, factory: Callable[[], Any] | None = None) -> Any:
    """A documented field: `setting(5e-5, "peak learning rate")` or `setting(factory=list, help=...)`."""
    if not help:
        raise TypeError("every setting needs its help text")
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def check_choice(value: object, choices: type[Choice], key: str) -> None:
    """A value that must be a member of `choices` (a section built by hand may hold anything)."""
    check(
        isinstance(value, choices),
        key,
        f"must be one of {', '.join(c.value for c in choices)}, got {value!r}",
    )


def compile_regex(pattern: str, key: str, flags: int = 0) -> re.Pattern:
    """A configured regular expression, or a ConfigError naming its key."""
    try:
        return re.compile(pattern, flags)
    except re.error as e:
        raise ConfigError(f"{key}: not a valid regular expression ({e}): {pattern!r}") from None
