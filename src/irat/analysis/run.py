"""Load what a run directory describes: its resolved config, its dataset and its model with a
checkpoint's weights. Shared by ``irat eval`` and ``irat analyze``."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from irat.config import Config


@dataclass
class LoadedRun:
    """A run's ``config``, ``data`` (``irat.data.Dataset``), ``model`` (on ``device``, with the
    weights of ``checkpoint``)."""

    config: Config
    data: object
    model: torch.nn.Module
    checkpoint: Path
    device: torch.device


def checkpoint_path(run_dir: str | Path, which: str | None, config: Config) -> Path:
    """The checkpoint file for ``which`` ("best", "last"; None: the run's ``eval.checkpoint``);
    ``best`` falls back to ``last.pt`` with a note on stderr when the run has no ``best.pt``."""
    from irat.training.rundir import RunDir

    run = RunDir(run_dir)
    which = which or config.eval.checkpoint
    if which not in ("best", "last"):
        raise ValueError(f"checkpoint={which!r}; choose best or last")
    path = run.best if which == "best" else run.last
    if which == "best" and not path.exists():
        print(f"irat: {path} missing (no validation split?); using last.pt", file=sys.stderr)
        path = run.last
    return path


def load_run(run_dir: str | Path, checkpoint: str | None = None, data_dir: str | None = None) -> LoadedRun:
    """Load the run in ``run_dir``: its config, its dataset (from ``data_dir`` or the stored
    ``data.root``, same split seed and sizes as in training) and its model with the weights of
    ``checkpoint`` ("best" or "last"; default: the run's ``eval.checkpoint``)."""
    import irat
    from irat.training import checkpoint as ckpt
    from irat.training.loop import config_from_run, pick_device

    cfg = config_from_run(run_dir)
    path = checkpoint_path(run_dir, checkpoint, cfg)
    data = irat.data.load(
        cfg.data.dataset,
        root=data_dir or cfg.data.root,
        val_size=cfg.data.val_size,
        seed=cfg.train.seed,
        limit=cfg.data.limit,
    )
    device = pick_device(cfg.train.device)
    model = irat.models.create(cfg.model.name, dataset=data.spec).to(device)
    model.load_state_dict(ckpt.load(path, map_location=device)["model"])
    return LoadedRun(config=cfg, data=data, model=model, checkpoint=path, device=device)
