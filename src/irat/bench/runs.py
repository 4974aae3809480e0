"""Read finished run directories (of ``irat train``, ``irat compare`` or ``irat bench``) into
``RunRecord``s: config, evaluations per checkpoint, metrics, and where the run sits in a table
(group, row label, seed).

Which evaluation belongs to which checkpoint: ``eval_best.json`` / ``eval_last.json``, and
``eval.json`` for the run's ``eval.checkpoint`` (``irat eval``, ``irat train --eval``, and
``irat compare``/``irat bench`` with one checkpoint write it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from irat.config import Config, ConfigError

BENCH_FILE = "bench.yaml"
"""What ``irat bench`` writes at the top of its output folder: the spec and the command."""


@dataclass
class RunRecord:
    """``evals``: checkpoint ("best", "last") → ``EvalResult.to_dict()``; ``epochs``: checkpoint →
    its epoch (from metrics.jsonl: the first epoch of highest validation robust accuracy, as the
    training loop keeps it; the last epoch without validation)."""

    path: Path
    config: Config
    group: str
    label: str
    seed: int
    evals: dict = field(default_factory=dict)
    epochs: dict = field(default_factory=dict)
    metrics: list = field(default_factory=list)
    raw: dict = field(default_factory=dict)  # config.yaml as stored (irat version, data files)

    @property
    def method(self) -> str:
        return self.config.train.method

    def setting_key(self) -> tuple:
        """What makes two runs' numbers comparable in one table."""
        c = self.config
        return (c.data.dataset, c.model.name, c.attack.norm, round(c.attack.eps, 8))


def setting_text(key: tuple) -> str:
    dataset, model, norm, eps = key
    return f"{dataset}, {model}, {norm} ε = {eps:g}"


def find_runs(paths) -> list[Path]:
    """Run directories (holding config.yaml) at or below each of ``paths``, in a stable order;
    ``FileNotFoundError``/``ConfigError`` for a path that is missing or holds no run."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"{p} does not exist")
        if (p / "config.yaml").is_file():
            hits = [p]
        else:
            hits = sorted(c.parent for c in p.rglob("config.yaml") if c.parent.name != "export")
        if not hits:
            raise ConfigError(f"{p} holds no run directory (no config.yaml at or below it)")
        found += [h for h in hits if h not in found]
    return found


def best_epoch(metrics: list[dict]) -> int | None:
    """The epoch ``irat.train`` keeps as best.pt: the first of the highest validation robust
    accuracy; the last epoch when there was no validation split."""
    scored = [(r["val_robust_acc"], -r["epoch"]) for r in metrics if "val_robust_acc" in r]
    if scored:
        return -max(scored)[1]
    return metrics[-1]["epoch"] if metrics else None


def read_run(path: str | Path, *, group: str | None = None, label: str | None = None) -> RunRecord:
    """The run in ``path``; ``group`` and ``label`` default to its setting and method."""
    from irat.training.loop import config_from_run
    from irat.training.rundir import RunDir

    run = RunDir(path)
    cfg = config_from_run(run.path)
    metrics = run.metrics()
    evals, epochs = {}, {}
    for which in ("best", "last"):
        stems = [f"eval_{which}"] + (["eval"] if cfg.eval.checkpoint == which else [])
        for stem in stems:
            f = run.path / f"{stem}.json"
            if f.is_file():
                evals[which] = json.loads(f.read_text())
                break
    if metrics:
        epochs = {"best": best_epoch(metrics), "last": metrics[-1]["epoch"]}
    return RunRecord(
        path=run.path,
        config=cfg,
        group=group if group is not None else setting_text(_key(cfg)),
        label=label if label is not None else cfg.train.method,
        seed=cfg.train.seed,
        evals=evals,
        epochs=epochs,
        metrics=metrics,
        raw=run.read_config(),
    )


def _key(cfg: Config) -> tuple:
    return (cfg.data.dataset, cfg.model.name, cfg.attack.norm, round(cfg.attack.eps, 8))


def bench_root(path: Path) -> Path | None:
    """The ``irat bench`` output folder ``path`` is or lies in (it holds ``bench.yaml``), or None."""
    for p in (path, *path.parents):
        if (p / BENCH_FILE).is_file():
            return p
    return None
