"""Images per second of robust evaluation (PGD-k, CW-k, AutoAttack components) at several batch
sizes, on a trained model.

The model is a run's checkpoint (``--run DIR``, from ``irat train``) or, by default, tiny-cnn
after one quick epoch of PGD-10 AT on 5000 Fashion-MNIST images: an untrained model is wrong
almost everywhere, and AutoAttack skips the points that are already misclassified, so its speed
would say nothing.

    python benchmarks/evaluation.py                                   # a table
    python benchmarks/evaluation.py --attacks pgd-20 --batch-sizes 128,500,1000,2000 --json
    python benchmarks/evaluation.py --run runs/demo/at --device cuda --batch-sizes 1000,5000,10000
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch

import irat
from irat.evaluation.robust import correct_under
from irat.runtime import keep_freed_memory


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", help="an irat run directory (default: train tiny-cnn for one epoch)")
    p.add_argument("--attacks", default="pgd-20,apgd-ce", help="attack names, comma-separated")
    p.add_argument("--batch-sizes", default="128,500,1000,2000", help="comma-separated")
    p.add_argument("--images", type=int, default=2000, help="test images for PGD/CW/FGSM")
    p.add_argument("--aa-images", type=int, default=200, help="test images for AutoAttack components")
    p.add_argument("--eps", type=float, default=0.1, help="ε for the default model (a run uses its own)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def model_and_data(args, device):
    """A trained model, its test split and ε."""
    if args.run:
        from irat.analysis.run import load_run

        run = load_run(args.run)
        return run.model.to(device), run.data.test, run.config.attack.eps
    data = irat.data.load("fashion-mnist", val_size=0, limit=5000)
    torch.manual_seed(0)
    model = irat.models.create("tiny-cnn", dataset=data.spec)
    with tempfile.TemporaryDirectory() as out:
        irat.train(
            model,
            data,
            method="at",
            epochs=1,
            eps=args.eps,
            out=f"{out}/run",
            progress=False,
            device=str(device),
        )
    return model.to(device), data.test, args.eps


def seconds(model, x, y, attack, batch_size, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    correct_under(model, x, y, attack, batch_size=batch_size)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        keep_freed_memory()
    model, test, eps = model_and_data(args, device)
    model.eval()
    rows = []
    for name in [a.strip() for a in args.attacks.split(",") if a.strip()]:
        attack = irat.attacks.build(name, eps=eps)
        n = args.images if name.startswith(("pgd", "cw", "fgsm", "clean")) else args.aa_images
        x, y = test.x[:n].to(device), test.y[:n].to(device)
        for bs in [int(b) for b in args.batch_sizes.split(",")]:
            seconds(model, x[: min(n, bs)], y[: min(n, bs)], attack, bs, device)  # warm-up
            times = [seconds(model, x, y, attack, bs, device) for _ in range(args.repeats)]
            row = {
                "attack": name,
                "batch_size": bs,
                "images": n,
                "images_per_s": n / statistics.median(times),
                "device": device.type,
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
            }
            rows.append(row)
            if args.json:
                print(json.dumps(row), flush=True)
    if not args.json:
        print(f"eps {eps}, {device}, {torch.get_num_threads()} threads, median of {args.repeats}")
        print("| attack | images | batch | img/s |")
        print("|---|---|---|---|")
        for r in rows:
            print(f"| {r['attack']} | {r['images']} | {r['batch_size']} | {r['images_per_s']:.0f} |")
    return rows


if __name__ == "__main__":
    main()
