"""Stage manifests: how one stage tells the next what it produced.

Each stage (guardrail training, the game, SafeDPO, target evaluation) ends by writing
`manifest.json` in its output folder: what it produced (paths relative to that folder, so a run
folder can be moved or copied whole), what it consumed (paths as given), and the config it ran
with. The next stage reads it through `read_manifest`, never a human-facing report. The manifest
is written last and atomically, so its presence means the stage finished: the pipeline skips a
stage whose manifest is there.

    {"stage": "safedpo", "version": 1, "created": "...",
     "outputs": {"target": "target", "pairs": "pairs", "heldout_attacks": "attacks_heldout.jsonl", ...},
     "inputs": {"target_base": "/abs/model", "guardrail": "/abs/game/guardrail", "pool": "/abs/game/pool"},
     "facts": {"delta": 10.0, ...}, "config": {...}}
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from duoguard.atomic import jsonable, write_json_atomic
from duoguard.errors import UserError

MANIFEST = "manifest.json"
VERSION = 1
STAGES = ("guardrail", "game", "safedpo", "target_eval")


class ManifestError(UserError):
    """A stage folder without the manifest the next stage needs; the message names the file."""


@dataclass
class StageManifest:
    stage: str  # one of STAGES
    outputs: dict[str, str]  # name -> path relative to the stage folder
    inputs: dict[str, str | None] = field(default_factory=dict)  # name -> path as the stage was given it
    facts: dict[str, Any] = field(default_factory=dict)  # small values the next stage or a report needs
    config: dict[str, Any] = field(default_factory=dict)  # the config the stage ran with
    version: int = VERSION
    created: str = ""
    folder: Path | None = field(default=None, compare=False)  # where it was read from (not written)

    def output(self, name: str) -> Path:
        """Absolute path of one of the stage's outputs."""
        if name not in self.outputs:
            raise ManifestError(f"{self.folder / MANIFEST}: the {self.stage} stage lists no output '{name}'")
        return Path(self.folder or ".") / self.outputs[name]

    def input(self, name: str) -> str | None:
        return self.inputs.get(name)


def write_manifest(folder: str | os.PathLike, manifest: StageManifest) -> Path:
    """Write `<folder>/manifest.json` (last, atomically: its presence means the stage finished)."""
    if manifest.stage not in STAGES:
        raise ValueError(f"unknown stage {manifest.stage!r} (known: {', '.join(STAGES)})")
    data = asdict(manifest)
    data.pop("folder")
    data["created"] = data["created"] or time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return write_json_atomic(Path(folder) / MANIFEST, jsonable(data))


def has_manifest(folder: str | os.PathLike, stage: str) -> bool:
    """Whether `folder` holds a finished stage of this kind."""
    try:
        read_manifest(folder, stage)
    except ManifestError:
        return False
    return True


def read_manifest(folder: str | os.PathLike, stage: str, *, key: str | None = None) -> StageManifest:
    """The manifest of a finished `stage` in `folder`; every problem is a ManifestError naming the
    file (and `key`, the config key that pointed there, when given)."""
    path = Path(folder).expanduser() / MANIFEST
    where = f"{key}={folder}: " if key else ""
    if not path.is_file():
        raise ManifestError(
            f"{where}no {MANIFEST} in {path.parent}: not a finished duoguard {stage} run "
            "(a stage writes its manifest last, when it has written everything else)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ManifestError(f"{where}{path}: unreadable manifest ({e})") from None
    if data.get("stage") != stage:
        raise ManifestError(f"{where}{path}: a manifest of the {data.get('stage')!r} stage, expected {stage!r}")
    if data.get("version") != VERSION:
        raise ManifestError(f"{where}{path}: manifest version {data.get('version')!r}, this duoguard reads {VERSION}")
    known = {f for f in StageManifest.__dataclass_fields__ if f != "folder"}
    return StageManifest(**{k: v for k, v in data.items() if k in known}, folder=path.parent)
