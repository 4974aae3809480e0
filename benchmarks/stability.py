"""Does every named method train at its defaults? (issue 18)

Each method × model × seed trains on real Fashion-MNIST with nothing but the method's own defaults
(learning rate, schedule shares, momentum, batch 128, PGD-10 with ε = 0.1 and step ε/4; the run's
epochs and training images are the fixed short budget below), then its last checkpoint is
evaluated: clean and PGD-20 accuracy on the first test images, whether a non-finite loss stopped
it ("diverged at epoch e") and whether the collapse check warned (``irat/training/health.py``).

    python benchmarks/stability.py                                   # every method, fc1 + tiny-cnn, seeds 0 1
    python benchmarks/stability.py --methods trades,at --models tiny-cnn --seeds 0 --json
    python benchmarks/stability.py --lr 0.1 --methods trades            # the user's lr instead of the default

Budget (default, small because the development machine is two shared cores): 3 epochs on a
class-balanced 5000-image subset (40 steps per epoch; the default schedule divides the lr by 10
at epochs 1 and 2), 1000 validation images, evaluation on the first 500 test images. It shows
that a method trains; it is too short to reproduce TRADES' collapse at lr 0.1, which took about
800 steps on the full training set (docs/results.md, issue 18): ``--limit 0 --epochs 10`` runs
the issue's setting.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time

import torch
import yaml

import irat
from irat.training.loop import NonFiniteLossError


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", default=",".join(irat.methods.names()), help="comma-separated")
    p.add_argument("--models", default="fc1,tiny-cnn", help="comma-separated")
    p.add_argument("--seeds", default="0,1", help="comma-separated")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--limit", type=int, default=5000, help="training images (0: all)")
    p.add_argument("--eval-images", type=int, default=500)
    p.add_argument("--lr", type=float, help="override the methods' default learning rate")
    p.add_argument("--warmup", type=int, help="override the methods' default warm-up epochs")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any config key, e.g. burn_in=1 (repeatable)",
    )
    p.add_argument("--data-dir", help="folder holding Fashion-MNIST (default: irat's search path)")
    p.add_argument("--json", action="store_true", help="one JSON line per run instead of a table")
    return p.parse_args(argv)


def run_one(data, method: str, model_name: str, seed: int, args) -> dict:
    """Train one method at its defaults and evaluate its last epoch."""
    torch.manual_seed(seed)
    model = irat.models.create(model_name, dataset=data.spec)
    overrides = {"seed": seed, "progress": False}
    if args.lr is not None:
        overrides["lr"] = args.lr
    if args.warmup is not None:
        overrides["warmup"] = args.warmup
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    row = {"method": method, "model": model_name, "seed": seed}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        try:
            run = irat.train(
                model, data, method=method, epochs=args.epochs, eps=0.1, out=f"{out}/run", **overrides
            )
        except NonFiniteLossError as e:
            row.update(status=f"diverged: {str(e).split(';')[0]}", clean=math.nan, pgd20=math.nan)
            row["time_s"] = time.perf_counter() - t0
            return row
    res = irat.evaluate(
        run.model,
        data.test,
        ["clean", "pgd-20"],
        eps=0.1,
        limit=args.eval_images,
        progress=False,
        sanity=False,
    )
    warned = [r["epoch"] for r in run.history if "warning" in r]
    row.update(
        status=f"collapse warning at epoch {warned[0]}" if warned else "ok",
        lr=run.config.train.lr,
        warmup=run.config.train.warmup,
        clean=res.accuracy["clean"],
        pgd20=res.accuracy["pgd-20"],
        val_clean=[round(r["val_clean_acc"], 3) for r in run.history],
        time_s=time.perf_counter() - t0,
    )
    return row


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    data = irat.data.load(
        "fashion-mnist", root=args.data_dir, val_size=1000, seed=0, limit=args.limit or None
    )
    rows = []
    if not args.json:
        n, k = len(data.train), args.eval_images
        print(f"{n} training images, {args.epochs} epochs, evaluation on the first {k} test images")
        print("| method | model | seed | lr | warm-up | clean | PGD-20 | status | val clean per epoch |")
        print("|---|---|---|---|---|---|---|---|---|")
    for method in args.methods.split(","):
        for model_name in args.models.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                row = run_one(data, method, model_name, seed, args)
                rows.append(row)
                if args.json:
                    print(json.dumps(row), flush=True)
                else:
                    cells = [
                        row["method"],
                        row["model"],
                        str(row["seed"]),
                        f"{row.get('lr', float('nan')):g}",
                        str(row.get("warmup", "")),
                        f"{100 * row['clean']:.1f}",
                        f"{100 * row['pgd20']:.1f}",
                        row["status"],
                        " ".join(f"{v:.2f}" for v in row.get("val_clean", [])),
                    ]
                    print("| " + " | ".join(cells) + " |", flush=True)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
