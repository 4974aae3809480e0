"""Figures and tables of the hard-instance evidence in docs/results.md, from finished run
directories (no training here; the commands that make the runs are in docs/results.md).

    python benchmarks/hard_evidence.py curves OUT.png LABEL=RUN ...   # Figure 1: robust error over epochs
    python benchmarks/hard_evidence.py distance RUN_A RUN_B            # D-distance of two runs' difficulty
    python benchmarks/hard_evidence.py table RUN ...                   # eval.json of each run as one table
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from irat.analysis import plots
from irat.analysis.difficulty import common_difficulty, d_distance
from irat.training.rundir import RunDir


def curves(out: str, *pairs: str) -> None:
    data = {}
    for pair in pairs:
        label, run = pair.split("=", 1)
        rows = RunDir(run).metrics()
        epochs = np.array([r["epoch"] for r in rows])
        data[label] = (
            epochs,
            1 - np.array([r["train_robust_acc"] for r in rows]),
            1 - np.array([r["val_robust_acc"] for r in rows]),
        )
        print(label, "held-out robust error per epoch:", " ".join(f"{v:.3f}" for v in data[label][2]))
    plots.error_curves(data, out, title="Robust error (training: dashed; validation PGD-10: solid)")


def distance(a: str, b: str) -> None:
    idx, d_a, d_b = common_difficulty(a, b)
    print(f"D({a}, {b}) = {float(d_distance(d_a, d_b)):.4f} on {len(idx)} instances")


def table(*runs: str) -> None:
    for run in runs:
        res = json.loads((Path(run) / "eval.json").read_text())
        print(run, json.dumps(res.get("accuracy", res)))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"curves": curves, "distance": distance, "table": table}[command](*args)
