"""One small tracking interface: a local metrics file always, Weights & Biases when configured.

W&B runs offline by default, so no account is needed (`wandb sync` uploads later);
`logger=none` turns it off. The W&B run id is exposed so a resumed job continues the same
run instead of starting a new one (verl users' top complaint).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from duoguard.atomic import jsonable, write_json_atomic, write_text_atomic
from duoguard.config import LoggerBackend, LoggerConfig, WandbMode

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
RUN_FILE = "wandb_run.json"


class Tracker:
    def __init__(
        self,
        logger_cfg: LoggerConfig,
        run_dir: str | os.PathLike,
        *,
        config: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        job_type: str = "train",
        step_name: str = "step",
    ):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / METRICS_FILE
        self.step_name = step_name
        self._wandb = None
        self._run = None
        if logger_cfg.backend == LoggerBackend.wandb and logger_cfg.mode != WandbMode.disabled:
            self._start_wandb(logger_cfg, logger_cfg.mode.value, config or {}, run_id, job_type)

    def _start_wandb(self, cfg: LoggerConfig, mode: str, config, run_id, job_type) -> None:
        import wandb

        self._wandb = wandb
        self._run = wandb.init(
            project=cfg.project,
            entity=cfg.entity,
            group=cfg.group,
            name=cfg.name,
            tags=list(cfg.tags),
            config=jsonable(dict(config)),
            dir=str(self.run_dir),
            mode=mode,
            id=run_id,
            resume="allow" if run_id else None,
            job_type=job_type,
            settings=wandb.Settings(console="off", silent=True, x_disable_stats=True),
        )
        self._run.define_metric(self.step_name)
        self._run.define_metric("*", step_metric=self.step_name)
        # which W&B run this folder logs to (e.g. to find a sweep's runs, or check a resume kept it)
        write_json_atomic(
            self.run_dir / RUN_FILE,
            {
                "id": self._run.id,
                "name": self._run.name,
                "group": self._run.group,
                "project": self._run.project,
                "mode": mode,
                "dir": self._run.dir,
            },
        )

    @property
    def run_id(self) -> str | None:
        return self._run.id if self._run is not None else None

    @property
    def wandb_dir(self) -> str | None:
        return self._run.dir if self._run is not None else None

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Append one line to metrics.jsonl and log the same numbers to W&B."""
        record = {self.step_name: step, "time": time.time(), **jsonable(dict(metrics))}
        if step is None:
            record.pop(self.step_name)
        with self.metrics_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        if self._run is not None:
            scalars = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "time"}
            self._run.log(scalars)

    def rewrite_history(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Replace metrics.jsonl with `records` (used on resume to drop a lost round's line)."""
        write_text_atomic(
            self.metrics_path, "".join(json.dumps(jsonable(dict(r)), ensure_ascii=False) + "\n" for r in records)
        )

    def log_table(
        self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], step: int | None = None
    ) -> None:
        if self._run is None:
            return
        table = self._wandb.Table(columns=list(columns), data=[list(map(jsonable, r)) for r in rows])
        payload = {name: table}
        if step is not None:
            payload[self.step_name] = step
        self._run.log(payload)

    def log_images(self, images: Mapping[str, str | os.PathLike], step: int | None = None) -> None:
        """PNG files (plots) as W&B images."""
        if self._run is None:
            return
        payload = {name: self._wandb.Image(str(path)) for name, path in images.items()}
        if step is not None:
            payload[self.step_name] = step
        self._run.log(payload)

    def log_artifact(self, path: str | os.PathLike, name: str, kind: str) -> None:
        if self._run is None:
            return
        artifact = self._wandb.Artifact(name=name, type=kind)
        if Path(path).is_dir():
            artifact.add_dir(str(path))
        else:
            artifact.add_file(str(path))
        self._run.log_artifact(artifact)

    def summary(self, metrics: Mapping[str, Any]) -> None:
        if self._run is not None:
            for k, v in jsonable(dict(metrics)).items():
                self._run.summary[k] = v

    def finish(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None
