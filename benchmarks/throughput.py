"""Images per second of one adversarial-training epoch: irat's step next to a naive reference loop.

The naive loop is written the way the papers' public code is (GAIRAT, MAIL, VIR, MART): a
``DataLoader`` over numpy arrays (per-sample indexing and collation), ``model.eval()`` /
``model.train()`` toggling, and a Python PGD loop that calls ``loss.backward()`` on the model, so
every attack step also computes parameter gradients it never uses. Both loops compute the same
math (same network and initial weights, attack, ε, step, K, objective); only the engineering
differs, including irat's own layers (``irat/models/conv.py``), which the naive copy replaces by
the stock ``nn.Conv2d`` the papers use.

irat's epoch is timed end to end through ``irat.training.train_step`` with the data resident as
one tensor (``irat.data.Loader``); the breakdown times the attack inside that same epoch
(``update = epoch − attack``: natural/adversarial forward, weights, objective, backward, step)
and PGD-10 evaluation on the validation images. Measurements are
interleaved (irat, naive, irat, naive, ...) and the medians are reported, so a noisy shared
machine affects both alike.

    python benchmarks/throughput.py --model tiny-cnn --method at            # a table
    python benchmarks/throughput.py --model tiny-cnn --method at --json     # one JSON line
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import irat
from irat import methods
from irat.data import Loader
from irat.evaluation.robust import correct_under
from irat.models.conv import Conv2d
from irat.training.loop import build_step, resolve_config
from irat.training.step import train_step
from irat.types import Batch, SampleStats


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny-cnn", help="irat model names, comma-separated (default tiny-cnn)")
    p.add_argument("--method", default="at", help="training methods, comma-separated (default at)")
    p.add_argument("--images", type=int, default=3840, help="training images per timed epoch")
    p.add_argument("--eval-images", type=int, default=1000, help="validation images for PGD-10 evaluation")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=10, help="PGD steps K")
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--repeats", type=int, default=3, help="interleaved measurements per loop (median)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument(
        "--data",
        default="fashion-mnist",
        help="fashion-mnist (real files) or 'synthetic'; CIFAR-shaped models (resnet18, "
        "preact-resnet18, wrn-*) always get synthetic 3x32x32 images",
    )
    p.add_argument("--channels-last", action="store_true", help="irat's loop in channels-last format")
    p.add_argument("--compile", action="store_true", help="torch.compile the irat model")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast of irat's step (AT/TRADES only)")
    p.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# data


CIFAR_SHAPED = ("resnet18", "preact-resnet18")


def load_data(args, model: str):
    """Training and validation tensors in [0, 1]: the real Fashion-MNIST, or random images of its
    shape with ``--data synthetic``, or random CIFAR-shaped images for the CIFAR networks (speed
    does not depend on pixel values)."""
    cifar = model in CIFAR_SHAPED or model.startswith("wrn-")
    if args.data == "synthetic" or cifar:
        spec = irat.data.registry.get("cifar10" if cifar else "fashion-mnist").spec
        g = torch.Generator().manual_seed(0)
        n = args.images + args.eval_images
        x = torch.rand(n, spec.channels, spec.image_size, spec.image_size, generator=g)
        y = torch.randint(0, spec.num_classes, (n,), generator=g)
        train = irat.data.Split(x[: args.images], y[: args.images], torch.arange(args.images))
        val = irat.data.Split(x[args.images :], y[args.images :], torch.arange(args.eval_images))
        return spec, train, val, "synthetic"
    data = irat.data.load(args.data, val_size=args.eval_images, limit=args.images)
    return data.spec, data.train, data.val, args.data


# ---------------------------------------------------------------------------------------------
# the two loops


def irat_epoch(
    model, train, parts, optimizer, batch_size, channels_last=False, bf16=False
) -> tuple[float, float]:
    """Seconds for one epoch of ``train_step`` and, within it, seconds spent in the attack."""
    attack_time = [0.0]

    def timed_attack(m, x, y):
        t = time.perf_counter()
        out = parts.attack(m, x, y)
        attack_time[0] += time.perf_counter() - t
        return out

    timed = dataclasses.replace(parts, attack=timed_attack)
    loader = Loader(train, batch_size=batch_size, shuffle=True, seed=0)
    model.train()
    t0 = time.perf_counter()
    for batch in loader:
        if channels_last:
            batch = Batch(batch.idx, batch.x.contiguous(memory_format=torch.channels_last), batch.y)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            train_step(model, batch, timed, optimizer, epoch=0)
    return time.perf_counter() - t0, attack_time[0]


def irat_eval(model, val, eps, steps) -> float:
    attack = irat.attacks.build(f"pgd-{steps}", eps=eps)
    t0 = time.perf_counter()
    correct_under(model, val.x, val.y, attack, batch_size=500)
    return time.perf_counter() - t0


def stock_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` built from stock layers only, as the papers' code defines its networks:
    irat's ``Conv2d`` (native input-gradient kernel, ``irat/models/conv.py``) becomes ``nn.Conv2d``
    with the same weights."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv2d):
                stock = torch.nn.Conv2d(
                    child.in_channels,
                    child.out_channels,
                    child.kernel_size,
                    stride=child.stride,
                    padding=child.padding,
                    bias=child.bias is not None,
                )
                stock.load_state_dict(child.state_dict())
                setattr(parent, name, stock)
    return model


def naive_pgd(model, x, y, eps, step, steps, loss_name, start, x_nat_logits=None, record_path=False):
    """A PGD loop as the papers' code writes it: ``loss.backward()`` through the model. With
    ``record_path`` it also counts GAIRAT's κ (correct iterates before each step)."""
    model.eval()
    if start == "gauss_small":
        x_adv = x + 0.001 * torch.randn_like(x)
    else:
        x_adv = x + torch.empty_like(x).uniform_(-eps, eps)
    x_adv = torch.clamp(x_adv, 0.0, 1.0).detach()
    kappa = torch.zeros(len(y), dtype=torch.long)
    for _ in range(steps):
        x_adv.requires_grad_()
        model.zero_grad()
        out = model(x_adv)
        if record_path:
            kappa += (out.argmax(1) == y).long()
        if loss_name == "kl":
            loss = F.kl_div(F.log_softmax(out, 1), F.softmax(x_nat_logits, 1), reduction="sum")
        else:
            loss = F.cross_entropy(out, y)
        loss.backward()
        x_adv = x_adv.detach() + step * torch.sign(x_adv.grad.detach())
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
        x_adv = torch.clamp(x_adv, 0.0, 1.0)
    model.train()
    return x_adv.detach(), kappa


def naive_epoch(model, train_np, optimizer, args, parts) -> float:
    """The same method as ``parts`` (attack loss and start, natural forward, weights, objective),
    engineered like the papers' code."""
    x_np, y_np = train_np
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(x_np), torch.from_numpy(y_np))
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=0)
    kw = parts.attack.keywords
    model.train()
    t0 = time.perf_counter()
    for x, y in loader:
        nat = None
        if kw["loss"] == "kl":
            model.eval()
            with torch.no_grad():
                nat = model(x)
        x_adv, kappa = naive_pgd(
            model, x, y, args.eps, args.eps / 4, args.steps, kw["loss"], kw["start"], nat, kw["record_path"]
        )
        optimizer.zero_grad()
        logits_adv = model(x_adv)
        logits_nat = model(x) if parts.needs_nat or parts.stats_nat else None
        stats = SampleStats(
            torch.arange(len(y)),
            y,
            logits_adv.detach(),
            None if logits_nat is None else logits_nat.detach(),
            kappa if kw["record_path"] else None,
            epoch=0,
        )
        w = parts.weights(stats)
        loss, _ = parts.objective(logits_nat if parts.needs_nat else None, logits_adv, y, w)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------
# FLOPs


class GlobalFlopCounter(FlopCounterMode):
    """``FlopCounterMode`` without its per-module tracker: the tracker's backward hooks refuse
    ``torch.autograd.grad`` on a leaf (the attack's input gradient), and only the total is needed
    here. Uses torch's private ``_FlopCounterMode`` (checked with torch 2.13)."""

    def __enter__(self):
        self.flop_counts.clear()
        self.mode = torch.utils.flop_counter._FlopCounterMode(self)
        self.mode.__enter__()
        return self

    def __exit__(self, *args):
        done, self.mode = self.mode.__exit__(*args), None
        return done


def flops_per_image(model, batch, parts) -> float:
    """FLOPs of one training step (attack + update) per image, counted by
    ``torch.utils.flop_counter`` on a stock-layer copy (every kernel has a FLOP formula there)."""
    model = stock_copy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with GlobalFlopCounter(display=False) as counter:
        train_step(model, batch, parts, opt, epoch=0)
    return counter.get_total_flops() / len(batch)


def peak_flops(n: int = 2048, repeats: int = 5) -> float:
    """fp32 FLOP/s this CPU sustains on an n×n matrix product (median of ``repeats``)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times)


# ---------------------------------------------------------------------------------------------


def measure(model_name: str, method: str, args, peak: float) -> dict:
    """One configuration: irat's epoch and the naive one, interleaved, medians."""
    torch.manual_seed(0)
    spec, train, val, data_name = load_data(args, model_name)
    n = len(train)
    cfg = resolve_config(None, method=method, eps=args.eps, steps=args.steps, **{"weighting.burn_in": 0})
    parts = build_step(cfg, torch.Generator().manual_seed(0))
    naive_ok = parts.attack is not None and parts.attack.keywords.get("tau") is None

    base = irat.models.create(model_name, dataset=spec)
    fast_model, naive_model = copy.deepcopy(base), stock_copy(base)
    if args.channels_last:
        fast_model = fast_model.to(memory_format=torch.channels_last)
    if args.compile:
        fast_model = torch.compile(fast_model)
    fast_opt = torch.optim.SGD(fast_model.parameters(), lr=0.01, momentum=0.9)
    naive_opt = torch.optim.SGD(naive_model.parameters(), lr=0.01, momentum=0.9)
    train_np = (train.x.numpy(), train.y.numpy())
    first = next(iter(Loader(train, batch_size=args.batch_size, shuffle=False)))
    per_image = flops_per_image(base, first, parts)

    fast, naive, attack, evals = [], [], [], []
    irat_epoch(fast_model, train.subset(args.batch_size * 2), parts, fast_opt, args.batch_size)  # warm-up
    for _ in range(args.repeats):
        epoch_s, attack_s = irat_epoch(
            fast_model, train, parts, fast_opt, args.batch_size, args.channels_last
        )
        fast.append(epoch_s)
        attack.append(attack_s)
        if naive_ok:
            naive.append(naive_epoch(naive_model, train_np, naive_opt, args, parts))
        evals.append(irat_eval(fast_model, val, args.eps, args.steps))

    t_fast, t_attack, t_eval = (statistics.median(v) for v in (fast, attack, evals))
    t_naive = statistics.median(naive) if naive else None
    return {
        "model": model_name,
        "method": method,
        "batch_size": args.batch_size,
        "pgd_steps": args.steps,
        "images": n,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "images_per_s": n / t_fast,
        "naive_images_per_s": n / t_naive if t_naive else None,
        "speedup_vs_naive": t_naive / t_fast if t_naive else None,
        "attack_s_per_epoch": t_attack,
        "update_s_per_epoch": statistics.median(e - a for e, a in zip(fast, attack)),
        "attack_fraction": t_attack / t_fast,
        "eval_pgd_images_per_s": len(val) / t_eval,
        "flops_per_image": per_image,
        "achieved_flops": per_image * n / t_fast,
        "peak_flops": peak,
        "fraction_of_peak": per_image * n / t_fast / peak,
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "data": data_name,
        "channels_last": args.channels_last,
        "compile": args.compile,
        "bf16": args.bf16,
    }


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    models = [m.strip() for m in args.model.split(",") if m.strip()]
    chosen = [m.strip() for m in args.method.split(",") if m.strip()]
    for m in chosen:
        methods.get(m)  # a clear error for an unknown name before any measurement
    peak = peak_flops()
    results = []
    for model_name in models:
        for method in chosen:
            row = measure(model_name, method, args, peak)
            results.append(row)
            if args.json:
                print(json.dumps(row), flush=True)
    if not args.json:
        print(
            f"PGD-{args.steps} AT-style epoch, batch {args.batch_size}, {torch.get_num_threads()} threads, "
            f"median of {args.repeats}; peak fp32 matmul {peak / 1e9:.1f} GFLOP/s"
        )
        print(
            "| model | method | irat img/s | naive img/s | speed-up | attack | MFLOP/img | GFLOP/s | peak |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for r in results:
            naive = f"{r['naive_images_per_s']:.0f}" if r["naive_images_per_s"] else "n/a"
            speed = f"{r['speedup_vs_naive']:.2f}x" if r["speedup_vs_naive"] else "n/a"
            print(
                f"| {r['model']} | {r['method']} | {r['images_per_s']:.0f} | {naive} | {speed} | "
                f"{100 * r['attack_fraction']:.0f}% | {r['flops_per_image'] / 1e6:.1f} | "
                f"{r['achieved_flops'] / 1e9:.1f} | {100 * r['fraction_of_peak']:.0f}% |"
            )
    return results


if __name__ == "__main__":
    main()
