"""A run is a directory:

    config.yaml          the resolved configuration (+ irat version)
    metrics.jsonl        one JSON object per epoch
    last.pt / best.pt    checkpoints (best = highest validation robust accuracy)
    records/epoch_XXX.npz  per-instance record of each epoch
    eval.json / eval.md  evaluation results, when evaluated

Creating a run in a folder that already holds one is refused (nothing is overwritten); resuming
needs one.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from irat.training.checkpoint import WriteError, atomic_write_text, check_writable, remove_temporaries


class RunDirError(ValueError):
    """The run directory cannot be created or resumed."""


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    config_path = property(lambda self: self.path / "config.yaml")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    last = property(lambda self: self.path / "last.pt")
    best = property(lambda self: self.path / "best.pt")

    def record_path(self, epoch: int) -> Path:
        return self.path / "records" / f"epoch_{epoch:03d}.npz"

    def exists(self) -> bool:
        return self.config_path.exists()

    def create(self, config: dict) -> None:
        if self.exists():
            raise RunDirError(
                f"{self.path} already holds a run; pass --resume (resume=True) to continue it, "
                "or choose another --out"
            )
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"{self.path} exists and is not a directory; choose another --out")
        made = [p for p in (*reversed(self.path.parents), self.path, self.path / "records") if not p.exists()]
        try:
            (self.path / "records").mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.config_path, yaml.safe_dump(config, sort_keys=False))
            atomic_write_text(self.metrics_path, "")
        except OSError as e:  # disk full, read-only: leave nothing behind
            self.config_path.unlink(missing_ok=True)
            for p in reversed(made):
                if p.is_dir() and not any(p.iterdir()):
                    p.rmdir()
            if isinstance(e, WriteError):
                raise
            raise WriteError(self.path / "records", e) from e

    def prepare_resume(self) -> None:
        """Before resuming: ``WriteError`` now if the folder cannot take a file (full disk,
        read-only), and no temporary file of a killed write left behind."""
        check_writable(self.path)
        for folder in (self.path, self.path / "records"):
            remove_temporaries(folder)

    def read_config(self) -> dict:
        if not self.exists():
            raise RunDirError(
                f"{self.path} is not a run directory (no config.yaml); give the folder that "
                "'irat train --out' wrote"
            )
        try:
            values = yaml.safe_load(self.config_path.read_text())
        except yaml.YAMLError as e:
            from irat.config import yaml_problem

            raise RunDirError(
                f"{self.config_path} is not valid YAML ({yaml_problem(e)}); it was not written by irat: "
                "restore it, or use another run directory"
            ) from None
        if not isinstance(values, dict):
            raise RunDirError(
                f"{self.config_path} is not an irat run config (a {type(values).__name__}, not a mapping of "
                "sections); restore it, or use another run directory"
            )
        return values

    def metrics(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        rows = []
        for i, line in enumerate(self.metrics_path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
                raise RunDirError(
                    f"{self.metrics_path} line {i} is not JSON with an epoch (not written by irat); delete "
                    "that line, or the whole file to resume from last.pt"
                )
            rows.append(row)
        return rows

    def append_metrics(self, row: dict) -> None:
        rows = self.metrics() + [row]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows))

    def keep_metrics_through(self, epoch: int) -> list[dict]:
        """Drop rows of epochs after ``epoch`` (written before a kill, checkpoint missing)."""
        rows = [r for r in self.metrics() if r["epoch"] <= epoch]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows))
        return rows
