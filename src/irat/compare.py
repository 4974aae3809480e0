"""``irat.compare``: several methods under one budget, as one table (``irat compare``).

Every method trains from the same initial weights (same seed) on the same data, with the same
model, attack, schedule and epochs, in ``OUT/<method>``; its selected checkpoint is evaluated on
the same test images with the same attacks; the table goes to ``OUT/comparison.md`` and
``OUT/comparison.json``, and the analysis plots of each run to ``OUT/<method>/analysis``. A run
directory that already exists is resumed (a finished run is only evaluated again).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

import irat
from irat.analysis.run import checkpoint_path, evaluate_run, load_data
from irat.config import Config, ConfigError, meta_size, resolve_config
from irat.training import checkpoint
from irat.training.checkpoint import atomic_write_text
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
    configs = {m: resolve_config(cfg, method=m) for m in methods}  # a bad name fails before training
    if data is None:
        data = load_data(cfg)
    for method, method_cfg in configs.items():  # BiLAW's D_meta must fit before anything trains
        held = meta_size(method_cfg)
        if held and held >= len(data.train):
            raise ConfigError(
                f"{method}: a D_meta of data.meta_size={held} images does not fit in the {len(data.train)} "
                "training images; "
                "choose a smaller --data.meta_size or a larger --data.limit"
            )
    out = Path(out)
    results, best = {}, {}
    for method, method_cfg in configs.items():
        torch.manual_seed(cfg.train.seed)
        model = irat.models.create(cfg.model.name, dataset=data.spec)
        run_dir = RunDir(out / method)
        irat.train(model, data, out=run_dir.path, resume=run_dir.exists(), config=method_cfg)
        state = checkpoint.load(checkpoint_path(run_dir.path, None, method_cfg), map_location="cpu")
        model.load_state_dict(state["model"])
        best[method] = state["epoch"]
        res = evaluate_run(model, data, cfg)
        res.save(run_dir.path)
        results[method] = res
        if analyze:
            from irat.analysis import analyze as analyze_run

            analyze_run(run_dir.path, limit=min(cfg.eval.limit or 1000, 1000), checkpoint=cfg.eval.checkpoint)
    comparison = Comparison(results, best, out)
    atomic_write_text(out / "comparison.md", comparison.to_markdown())
    atomic_write_text(out / "comparison.json", json.dumps(comparison.to_dict(), indent=2) + "\n")
    return comparison
