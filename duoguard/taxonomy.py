"""Safety taxonomy: the guardrail's label space, defined by configuration.

Llama Guard's lesson is that categories change per deployment, so nothing in the code
names a category. A `Taxonomy` maps the names, codes and aliases a data file may use to
one canonical category name and to the guardrail's output index.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from duoguard.config import TaxonomyConfig
from duoguard.errors import UserError


class TaxonomyError(UserError):
    """A label that the configured taxonomy does not know."""


@dataclass(frozen=True)
class Category:
    code: str
    name: str
    description: str = ""


@dataclass(frozen=True)
class Taxonomy:
    name: str
    categories: tuple[Category, ...]
    # Foreign label -> own category name, or "" to drop a label this taxonomy has no place for.
    aliases: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.categories:
            raise TaxonomyError(f"taxonomy '{self.name}' has no categories")
        seen: set[str] = set()
        for c in self.categories:
            for key in (c.code.casefold(), c.name.casefold()):
                if key in seen:
                    raise TaxonomyError(f"taxonomy '{self.name}': duplicate category code or name '{key}'")
                seen.add(key)
        for alias, target in self.aliases.items():
            if target and target.casefold() not in self._lookup_own:
                raise TaxonomyError(f"taxonomy '{self.name}': alias '{alias}' points to unknown category '{target}'")

    @cached_property
    def _lookup_own(self) -> dict[str, str]:
        table = {}
        for c in self.categories:
            table[c.code.casefold()] = c.name
            table[c.name.casefold()] = c.name
        return table

    @cached_property
    def _lookup_alias(self) -> dict[str, str | None]:
        return {a.casefold(): (self._lookup_own[t.casefold()] if t else None) for a, t in self.aliases.items()}

    @cached_property
    def names(self) -> list[str]:
        return [c.name for c in self.categories]

    def __len__(self) -> int:
        return len(self.categories)

    def resolve(self, label: str) -> str | None:
        """Canonical name of `label` (a name, a code or an alias, any case).

        Returns None when an alias deliberately drops the label; raises on an unknown label.
        """
        key = label.strip().casefold()
        own = self._lookup_own
        if key in own:
            return own[key]
        if key in self._lookup_alias:
            return self._lookup_alias[key]
        raise TaxonomyError(f"unknown category '{label}' for taxonomy '{self.name}' (known: {', '.join(self.names)})")

    def resolve_all(self, labels: Iterable[str]) -> list[str]:
        out: list[str] = []
        for label in labels:
            name = self.resolve(label)
            if name is not None and name not in out:
                out.append(name)
        return out

    def index(self, name: str) -> int:
        return self.names.index(self.resolve(name) or "")

    def encode(self, categories: Sequence[str]) -> np.ndarray:
        """Multi-hot vector over the taxonomy (all zeros = safe)."""
        vec = np.zeros(len(self), dtype=np.float32)
        for name in categories:
            vec[self.index(name)] = 1.0
        return vec

    def decode(self, vector: Sequence[float], threshold: float = 0.5) -> list[str]:
        return [n for n, v in zip(self.names, vector, strict=True) if v > threshold]

    @classmethod
    def from_config(cls, cfg: TaxonomyConfig) -> Taxonomy:
        """Build from the `taxonomy` config section."""
        cats = tuple(Category(code=c.code, name=c.name, description=c.description) for c in cfg.categories)
        return cls(name=cfg.name, categories=cats, aliases={k: v or "" for k, v in cfg.aliases.items()})
