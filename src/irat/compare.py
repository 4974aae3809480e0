"""``irat.compare``: several methods under one budget, as one table (``irat compare``).

Every method trains from the same initial weights (same seed) on the same data, with the same
model, attack, schedule and epochs, in ``OUT/<method>``; its selected checkpoint is evaluated on
the same test images with the same attacks; the table goes to ``OUT/comparison.md`` and
``OUT/comparison.json``, and the analysis plots of each run to ``OUT/<method>/analysis``. A run
directory that already exists is resumed (a finished run is only evaluated, and only with the
attacks not yet run on its checkpoint: ``irat.bench.cell``). With
``eval.checkpoint: both`` every method gets two rows, its best checkpoint (by the validation
attack, PGD-20 by default) and its last one (METHODS.md §5.1, DECISION #27).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from irat import distributed
from irat.analysis.run import load_data
from irat.bench.cell import train_and_evaluate
from irat.config import Config, ConfigError, meta_size, resolve_config
from irat.training.checkpoint import atomic_write_text


@dataclass
class Comparison:
    """``results``: method → ``EvalResult`` of the checkpoint ``eval.checkpoint`` names (the best
    one for "both"); ``best_epoch``: method → that checkpoint's epoch. ``last`` and
    ``last_epoch``: the same for the last checkpoint, with ``eval.checkpoint: both`` (else empty)."""

    results: dict
    best_epoch: dict
    out: Path
    last: dict = field(default_factory=dict)
    last_epoch: dict = field(default_factory=dict)

    def to_markdown(self) -> str:
        first = next(iter(self.results.values()))
        attacks = list(first.accuracy)
        both = bool(self.last)
        lines = [
            first.title(),
            "",
            "| method | " + ("checkpoint | " if both else "") + " | ".join(attacks) + " | epoch |",
            "|---|" + "---|" * (len(attacks) + 1 + both),
        ]
        for method, res in self.results.items():
            rows = [("best", res, self.best_epoch[method])]
            if both:
                rows.append(("last", self.last[method], self.last_epoch[method]))
            for which, r, epoch in rows:
                cells = " | ".join(f"{100 * r.accuracy[a]:.2f}" for a in attacks)
                label = f"{method} | {which}" if both else method
                lines.append(f"| {label} | {cells} | {epoch} |")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        out = {}
        for m, r in self.results.items():
            out[m] = {**r.to_dict(), "best_epoch": self.best_epoch[m]}
            if m in self.last:
                out[m]["last"] = {**self.last[m].to_dict(), "epoch": self.last_epoch[m]}
        return out


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
    comparison = Comparison({}, {}, out)
    checkpoints = {}  # method → (run directory, checkpoint) to analyse once every cell is done
    for method, method_cfg in configs.items():
        cell = train_and_evaluate(method_cfg, data, out / method)
        names = list(cell.results)  # the selected checkpoint first, then "last" for both
        comparison.results[method] = cell.results[names[0]]
        comparison.best_epoch[method] = cell.epochs[names[0]]
        if len(names) > 1:
            comparison.last[method], comparison.last_epoch[method] = cell.results["last"], cell.epochs["last"]
        checkpoints[method] = (cell.run_dir, names[0])
    if distributed.is_main():  # torchrun: rank 0 writes
        atomic_write_text(out / "comparison.md", comparison.to_markdown())
        atomic_write_text(out / "comparison.json", json.dumps(comparison.to_dict(), indent=2) + "\n")
    distributed.barrier()
    if analyze and distributed.is_main():  # torchrun: rank 0 alone, the others are done
        from irat.analysis import analyze as analyze_run

        with distributed.alone():
            for run_dir, checkpoint in checkpoints.values():
                analyze_run(run_dir, limit=min(cfg.eval.limit or 1000, 1000), checkpoint=checkpoint)
    return comparison
