"""Load what a config or a run directory describes: its dataset, its model with a checkpoint's
weights, and its evaluation. Shared by ``irat train | eval | analyze | compare``."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from irat.config import Config

PROGRESS_FOLDER = ".eval_progress"
"""Where a run's unfinished evaluation keeps its per-batch progress."""


@dataclass
class LoadedRun:
    """A run's ``config``, ``data`` (``irat.data.Dataset``), ``model`` (on ``device``, with the
    weights of ``checkpoint``)."""

    config: Config
    data: object
    model: torch.nn.Module
    checkpoint: Path
    device: torch.device


def checkpoint_names(which: str | None, config: Config) -> list[str]:
    """The checkpoints to report for ``which`` ("best", "last", "both"; None: the config's
    ``eval.checkpoint``): ``["best", "last"]`` for both."""
    which = which or config.eval.checkpoint
    if which not in ("best", "last", "both"):
        raise ValueError(f"checkpoint={which!r}; choose best, last or both")
    return ["best", "last"] if which == "both" else [which]


def checkpoint_path(run_dir: str | Path, which: str | None, config: Config) -> Path:
    """The checkpoint file for ``which`` ("best", "last"; None: the run's ``eval.checkpoint``, the
    best one for "both"); ``best`` falls back to ``last.pt`` with a note on stderr when the run has
    no ``best.pt``."""
    from irat.training.rundir import RunDir

    run = RunDir(run_dir)
    which = checkpoint_names(which, config)[0]
    path = run.best if which == "best" else run.last
    if which == "best" and not path.exists():
        print(f"irat: {path} missing (no validation split?); using last.pt", file=sys.stderr)
        path = run.last
    return path


def load_data(config: Config, data_dir: str | None = None):
    """The dataset ``config`` describes (``irat.data.load``), from ``data_dir`` or ``data.root``,
    with the split seed of ``data.seed`` (``train.seed`` when unset) and the D_meta of
    ``data.meta_size`` (a run stores the size it held out; unset: none, ``irat.train`` takes it)."""
    import irat

    d = config.data
    seed = d.seed if d.seed is not None else config.train.seed
    return irat.data.load(
        d.dataset,
        root=data_dir or d.root,
        val_size=d.val_size,
        seed=seed,
        limit=d.limit,
        meta_size=d.meta_size or 0,
    )


def evaluate_run(
    model: torch.nn.Module,
    data,
    config: Config,
    *,
    attacks=None,
    limit=None,
    batch_size=None,
    bpda=None,
    run_dir: str | Path | None = None,
    keep_progress: bool = False,
):
    """``irat.evaluate`` of ``model`` on ``data.test`` with the evaluation ``config`` describes;
    ``attacks``, ``limit``, ``batch_size`` and ``bpda`` override its ``eval`` section when given.
    ``run_dir``: the evaluation keeps its progress in ``run_dir/.eval_progress`` after every
    finished batch, so a killed evaluation resumes (``irat.evaluation.progress``); with
    ``keep_progress`` the files stay once finished (a finished attack is not run again)."""
    import irat

    e = config.eval
    return irat.evaluate(
        model,
        data.test,
        attacks=attacks if attacks is not None else e.attacks,
        eps=config.attack.eps,
        norm=config.attack.norm,
        limit=limit if limit is not None else e.limit,
        batch_size=batch_size if batch_size is not None else e.batch_size,
        seed=config.train.seed,
        progress=config.train.progress,
        spec=data.spec,
        step_size=e.step_size,
        bpda=bpda if bpda is not None else e.bpda,
        resume_dir=Path(run_dir) / PROGRESS_FOLDER if run_dir is not None else None,
        keep_progress=keep_progress,
    )


def load_run(run_dir: str | Path, checkpoint: str | None = None, data_dir: str | None = None) -> LoadedRun:
    """Load the run in ``run_dir``: its config, its dataset (from ``data_dir`` or the stored
    ``data.root``, same split seed and sizes as in training) and its model with the weights of
    ``checkpoint`` ("best" or "last"; default: the run's ``eval.checkpoint``, "best" for "both")."""
    import irat
    from irat import distributed
    from irat.runtime import pick_device
    from irat.training import checkpoint as ckpt
    from irat.training.loop import config_from_run

    cfg = config_from_run(run_dir)
    path = checkpoint_path(run_dir, checkpoint, cfg)
    data = load_data(cfg, data_dir)
    device = distributed.setup(pick_device(cfg.train.device))  # torchrun: irat eval shards the images
    model = irat.models.create(cfg.model.name, dataset=data.spec, preprocess=cfg.model.preprocess)
    model = model.to(device)
    ckpt.restore(model, ckpt.load(path, map_location=device), path, cfg)
    return LoadedRun(config=cfg, data=data, model=model, checkpoint=path, device=device)
