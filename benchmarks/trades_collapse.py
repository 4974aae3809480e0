"""Why does TRADES collapse at lr 0.1 on Fashion-MNIST tiny-cnn? (issue 18)

TRADES on the full training set, three epochs at a constant learning rate (the three lr-0.1
epochs of BiLAW's 10-epoch schedule), once per variant that isolates one suspect:

* ``lr=0.1``: the failing setting; ``lr=0.01``: the TRADES code's own small-network rate;
* ``momentum=0``: is it momentum accumulating the KL term's gradient?
* ``trade_off=1``: the KL term at weight 1 instead of 1/λ = 6 (is it the KL term's scale?);
* ``attack.steps=0``: no adversarial example (x' = x + the small Gaussian start), so the KL term is
  near zero: is it the attack?

Each variant prints its validation clean accuracy per epoch, the training loss per epoch and
whether the collapse check warned (``irat/training/health.py``).

    python benchmarks/trades_collapse.py --seed 1 --json
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time

import torch

import irat
from irat.training.loop import NonFiniteLossError

VARIANTS = {
    "lr=0.1": {"lr": 0.1},
    "lr=0.01": {"lr": 0.01},
    "lr=0.1 momentum=0": {"lr": 0.1, "momentum": 0.0},
    "lr=0.1 trade_off=1": {"lr": 0.1, "trade_off": 1.0},
    "lr=0.1 attack.steps=0": {"lr": 0.1, "steps": 0},
}


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--limit", type=int, default=0, help="training images (0: all)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names of VARIANTS")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    data = irat.data.load("fashion-mnist", val_size=1000, seed=0, limit=args.limit or None)
    rows = []
    for name in args.variants.split(","):
        torch.manual_seed(args.seed)
        model = irat.models.create("tiny-cnn", dataset=data.spec)
        row = {"variant": name, "seed": args.seed}
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as out:
            try:
                run = irat.train(
                    model,
                    data,
                    method="trades",
                    epochs=args.epochs,
                    eps=0.1,
                    out=out,
                    schedule="constant",
                    seed=args.seed,
                    progress=False,
                    **VARIANTS[name],
                )
                history = run.history
                row["status"] = "ok"
            except NonFiniteLossError as e:
                history = []
                row["status"] = f"diverged: {str(e).split(';')[0]}"
        row["val_clean"] = [round(r["val_clean_acc"], 3) for r in history]
        row["train_loss"] = [round(r["train_loss"], 3) for r in history]
        row["warned"] = [r["epoch"] for r in history if "warning" in r]
        row["time_s"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            clean = " ".join(f"{v:.3f}" for v in row["val_clean"]) or "-"
            loss = " ".join(f"{v:.3g}" for v in row["train_loss"] if math.isfinite(v)) or "-"
            print(f"| {name} | {clean} | {loss} | {row['status']} | {row['warned'] or ''} |", flush=True)
    return rows


if __name__ == "__main__":
    main()
