"""Round-boundary checkpoints of the game, written whole or not at all.

    checkpoints/round_0003/generator/     policy, tokenizer, optimizer.pt
                          guardrail/      classifier checkpoint
                          state.json      round, metrics history, tracker run id, pool manifest
                          rng.pt          Python, NumPy and torch RNG states of the driver
    checkpoints/latest.json               {"round": 3, "dir": "round_0003"}, replaced atomically

A checkpoint folder is filled in a temp folder and renamed; `latest.json` moves only after
that, so a crash at any moment leaves the previous checkpoint as the one to resume from.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from duoguard.atomic import atomic_dir, write_json_atomic
from duoguard.errors import UserError

LATEST = "latest.json"


@dataclass
class GameState:
    round: int
    history: list[dict[str, Any]] = field(default_factory=list)
    run_id: str | None = None
    pool: dict[str, Any] = field(default_factory=dict)
    archive: dict[str, Any] = field(default_factory=dict)  # duoguard.archive.Archive.to_json(); {} before it


class Checkpoints:
    def __init__(self, root: str | Path, keep: int = 2):
        self.root = Path(root)
        self.keep = max(1, keep)

    def latest_dir(self) -> Path | None:
        path = self.root / LATEST
        if not path.is_file():
            return None
        return self.root / json.loads(path.read_text())["dir"]

    def resume_state(self, mode: str) -> GameState | None:
        """The state to continue from, per `game.resume` (auto | true | false)."""
        latest = self.latest_dir()
        if mode == "false":
            if latest is not None:
                raise UserError(
                    f"{self.root} already holds a game checkpoint ({latest.name}); continue it with "
                    "game.resume=true, or start in a new run dir (hydra.run.dir=...)"
                )
            return None
        if latest is None:
            if mode == "true":
                raise UserError(f"game.resume=true but {self.root} holds no checkpoint to continue from")
            return None
        return self.load(latest)

    @staticmethod
    def load(folder: Path) -> GameState:
        import numpy as np
        import torch

        data = json.loads((folder / "state.json").read_text())
        rng = torch.load(folder / "rng.pt", weights_only=False)  # our own file: Python's RNG state is a tuple
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        return GameState(
            round=data["round"],
            history=data["history"],
            run_id=data["run_id"],
            pool=data["pool"],
            archive=data.get("archive", {}),  # a checkpoint from before the archive: counts start afresh
        )

    def save(self, round_index: int, roles: Any, state: GameState) -> Path:
        import numpy as np
        import torch

        name = f"round_{round_index:04d}"

        def build(tmp: Path) -> None:
            roles.generator.save(str(tmp / "generator"))
            roles.guardrail.save_pretrained(str(tmp / "guardrail"))
            write_json_atomic(
                tmp / "state.json",
                {
                    "round": state.round,
                    "history": state.history,
                    "run_id": state.run_id,
                    "pool": state.pool,
                    "archive": state.archive,
                },
            )
            torch.save(
                {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
                tmp / "rng.pt",
            )

        folder = atomic_dir(self.root / name, build, replace=True)
        write_json_atomic(self.root / LATEST, {"round": round_index, "dir": name})
        self._prune(keep_name=name)
        return folder

    def _prune(self, keep_name: str) -> None:
        rounds = sorted(p for p in self.root.glob("round_*") if p.is_dir())
        for old in rounds[: -self.keep]:
            if old.name != keep_name:
                shutil.rmtree(old, ignore_errors=True)
