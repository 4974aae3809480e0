"""One epoch of ``irat.train`` with every named method, end to end (step, validation, records,
checkpoints), on synthetic data of a real dataset's shape: a learnable pattern (one bright row
per class over noise), so that a short run learns something and robust accuracy is not zero.

Prints one JSON line per method: training images per second over the whole epoch (validation
and file writes included), the epoch's training loss and robust accuracy, the validation
accuracies.

    python benchmarks/methods_epoch.py --device cuda --model preact-resnet18 --images 5120
    python benchmarks/methods_epoch.py --model tiny-cnn --shape fashion-mnist --images 1024 --methods at
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

import irat


def synthetic(shape: str, n_train: int, n_test: int, root: Path, val_size: int) -> irat.data.Dataset:
    """An npz dataset with ``shape``'s image size and channels and a learnable class pattern;
    ``n_train`` images in the training file, of which ``val_size`` are held out."""
    spec = irat.data.registry.get(shape).spec
    rng = np.random.default_rng(0)
    n = n_train + n_test
    y = rng.integers(0, spec.num_classes, n)
    x = rng.integers(0, 160, (n, spec.image_size, spec.image_size, spec.channels)).astype(np.uint8)
    x[np.arange(n), 2 * (y % (spec.image_size // 2)), :, :] = 255
    path = root / "synthetic.npz"
    squeeze = (lambda a: a[..., 0]) if spec.channels == 1 else (lambda a: a)  # noqa: E731
    np.savez(
        path,
        x_train=squeeze(x[:n_train]),
        y_train=y[:n_train],
        x_test=squeeze(x[n_train:]),
        y_test=y[n_train:],
    )
    return irat.data.load("npz", root=path, val_size=val_size)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", default=",".join(irat.methods.names()), help="comma-separated (default: all)")
    p.add_argument("--model", default="preact-resnet18")
    p.add_argument("--shape", default="cifar10", help="dataset whose image shape is used (default cifar10)")
    p.add_argument("--images", type=int, default=5120, help="training images")
    p.add_argument("--test-images", type=int, default=1000, help="test images (for a later irat eval)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--eps", type=float, default=8 / 255)
    p.add_argument("--device", default="auto")
    p.add_argument("--keep", help="keep the runs in this folder (default: a temporary one)")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        val = min(1000, max(100, args.images // 5))
        data = synthetic(args.shape, args.images + val, args.test_images, root, val)
        for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
            torch.manual_seed(0)
            model = irat.models.create(args.model, dataset=data.spec)
            run = irat.train(
                model,
                data,
                method=method,
                epochs=1,
                eps=args.eps,
                out=root / method,
                batch_size=args.batch_size,
                device=args.device,
                burn_in=0,
                progress=False,
            )
            h = run.history[-1]
            row = {
                "method": method,
                "model": args.model,
                "images": len(data.train),
                "images_per_s": len(data.train) / h["time_s"],
                **{
                    k: h[k]
                    for k in ("train_loss", "train_robust_acc", "val_robust_acc", "val_clean_acc")
                    if k in h
                },
                "device": str(next(model.parameters()).device),
                "torch": torch.__version__,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


if __name__ == "__main__":
    main()
