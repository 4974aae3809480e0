"""Milliseconds for the input gradient of a convolution, stock (autograd → oneDNN on CPU) against
the native kernel that ``irat.models.conv.Conv2d`` uses for few-channel strided layers.

Each call gets a freshly allocated output gradient, as in a PGD loop. Medians of ``--repeats``.

    python benchmarks/conv_input_grad.py            # a table
    python benchmarks/conv_input_grad.py --json     # one JSON line per layer
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from irat.models.conv import input_grad

LAYERS = [  # (name, C_in, C_out, size, kernel, stride, padding)
    ("tiny-cnn conv1", 1, 16, 28, 4, 2, 1),
    ("tiny-cnn conv2", 16, 32, 14, 4, 2, 1),
    ("cifar 3-channel stride-2", 3, 16, 32, 4, 2, 1),
]


def median_ms(fn, repeats: int) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def measure(name, c_in, c_out, size, k, s, pad, *, batch_size: int, repeats: int) -> dict:
    x = torch.rand(batch_size, c_in, size, size, requires_grad=True)
    w = torch.randn(c_out, c_in, k, k)
    g = torch.randn(torch.nn.functional.conv2d(x, w, stride=s, padding=pad).shape)

    def stock():
        return torch.ops.aten.convolution_backward(
            g.clone(), x, w, None, [s, s], [pad, pad], [1, 1], False, [0, 0], 1, [True, False, False]
        )

    def native():
        return input_grad(g.clone(), w, s, pad, (size, size))

    row = {
        "layer": name,
        "batch_size": batch_size,
        "stock_ms": median_ms(stock, repeats),
        "native_ms": median_ms(native, repeats),
    }
    row["speedup"] = row["stock_ms"] / row["native_ms"]
    return row


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=100)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    for layer in LAYERS:
        row = measure(*layer, batch_size=args.batch_size, repeats=args.repeats)
        if args.json:
            print(json.dumps(row))
        else:
            print(
                f"{row['layer']:<26} stock {row['stock_ms']:6.2f} ms   native {row['native_ms']:6.2f} ms   "
                f"x{row['speedup']:.2f}"
            )


if __name__ == "__main__":
    main()
