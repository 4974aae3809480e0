"""``irat.compare``: several methods under one budget, as one table (``irat compare``).

Every method trains from the same initial weights (same seed) on the same data, with the same
model, attack, schedule and epochs, in ``OUT/<method>``; its selected checkpoint is evaluated on
the same test images with the same attacks; the table goes to ``OUT/comparison.md`` and
``OUT/comparison.json``, and the analysis plots of each run to ``OUT/<method>/analysis``. A run
directory that already exists is resumed (a finished run is only evaluated again).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

import irat
from irat.config import Config
from irat.training import checkpoint
from irat.training.checkpoint import atomic_write_text
from irat.training.loop import resolve_config
from irat.training.rundir import RunDir


@dataclass
class Comparison:
    """``results``: method → ``EvalResult``; ``best_epoch``: method → selected epoch."""

    results: dict
    best_epoch: dict
    out: Path

    def to_markdown(self) -> str:
        first = next(iter(self.results.values()))
        attacks = list(first.accuracy)
        lines = [
            f"Accuracy (%) on {first.n} test images, {first.norm} eps={first.eps:g}",
            "",
            "| method | " + " | ".join(attacks) + " | epoch |",
            "|---|" + "---|" * (len(attacks) + 1),
        ]
        for method, res in self.results.items():
            cells = " | ".join(f"{100 * res.accuracy[a]:.2f}" for a in attacks)
            lines.append(f"| {method} | {cells} | {self.best_epoch[method]} |")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        return {m: {**r.to_dict(), "best_epoch": self.best_epoch[m]} for m, r in self.results.items()}


def compare(
    methods: list[str],
    config: Config | None = None,
    out: str | Path = "runs/compare",
    *,
    data=None,
    analyze: bool = True,
    **overrides,
) -> Comparison:
    """Train and evaluate each of ``methods`` with ``config`` (plus ``overrides``, as in
    ``irat.train``); ``data`` from ``irat.data.load`` (loaded from the config when None)."""
    cfg = resolve_config(config, **overrides)
    for method in methods:  # fail on a bad name before hours of training
        resolve_config(cfg, method=method)
    if data is None:
        d = cfg.data
        data = irat.data.load(d.dataset, root=d.root, val_size=d.val_size, seed=cfg.train.seed, limit=d.limit)
    out = Path(out)
    results, best = {}, {}
    for method in methods:
        method_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, method=method))
        torch.manual_seed(cfg.train.seed)
        model = irat.models.create(cfg.model.name, dataset=data.spec)
        run_dir = RunDir(out / method)
        run = irat.train(model, data, out=run_dir.path, resume=run_dir.exists(), config=method_cfg)
        if cfg.eval.checkpoint == "best" and run_dir.best.exists():
            model.load_state_dict(checkpoint.load(run_dir.best, map_location="cpu")["model"])
        best[method] = run.best_epoch if cfg.eval.checkpoint == "best" else cfg.train.epochs - 1
        res = irat.evaluate(
            model,
            data.test,
            cfg.eval.attacks,
            eps=cfg.attack.eps,
            norm=cfg.attack.norm,
            limit=cfg.eval.limit,
            batch_size=cfg.eval.batch_size,
            seed=cfg.train.seed,
            progress=cfg.train.progress,
            spec=data.spec,
            step_size=cfg.eval.step_size,
        )
        res.save(run_dir.path)
        results[method] = res
        if analyze:
            from irat.analysis import analyze as analyze_run

            analyze_run(run_dir.path, limit=min(cfg.eval.limit or 1000, 1000), checkpoint=cfg.eval.checkpoint)
    comparison = Comparison(results, best, out)
    atomic_write_text(out / "comparison.md", comparison.to_markdown())
    atomic_write_text(out / "comparison.json", json.dumps(comparison.to_dict(), indent=2) + "\n")
    return comparison
