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

import irat
from irat.config import Config
from irat.data import Loader
from irat.evaluation.robust import correct_under
from irat.models.conv import Conv2d
from irat.training.loop import build_step
from irat.training.step import train_step


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny-cnn", help="an irat model name (default tiny-cnn)")
    p.add_argument("--method", default="at", choices=["at", "trades", "mart"], help="training method")
    p.add_argument("--images", type=int, default=3840, help="training images per timed epoch")
    p.add_argument("--eval-images", type=int, default=1000, help="validation images for PGD-10 evaluation")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=10, help="PGD steps K")
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--repeats", type=int, default=3, help="interleaved measurements per loop (median)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--data", default="fashion-mnist", help="fashion-mnist (real files) or 'synthetic'")
    p.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# data


def load_data(args):
    """Training and validation tensors in [0, 1]: the real Fashion-MNIST, or random images of
    its shape when ``--data synthetic`` (speed does not depend on pixel values)."""
    if args.data == "synthetic":
        g = torch.Generator().manual_seed(0)
        spec = irat.data.registry.get("fashion-mnist").spec
        n = args.images + args.eval_images
        x = torch.rand(n, 1, 28, 28, generator=g)
        y = torch.randint(0, 10, (n,), generator=g)
        train = irat.data.Split(x[: args.images], y[: args.images], torch.arange(args.images))
        val = irat.data.Split(x[args.images :], y[args.images :], torch.arange(args.eval_images))
        return spec, train, val
    data = irat.data.load(args.data, val_size=args.eval_images, limit=args.images)
    return data.spec, data.train, data.val


# ---------------------------------------------------------------------------------------------
# the two loops


def irat_epoch(model, train, parts, optimizer, batch_size) -> tuple[float, float]:
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


def naive_pgd(model, x, y, eps, step, steps, loss_name, x_nat_logits=None):
    """A PGD loop as the papers' code writes it: ``loss.backward()`` through the model."""
    model.eval()
    if loss_name == "kl":
        x_adv = x + 0.001 * torch.randn_like(x)
    else:
        x_adv = x + torch.empty_like(x).uniform_(-eps, eps)
    x_adv = torch.clamp(x_adv, 0.0, 1.0).detach()
    for _ in range(steps):
        x_adv.requires_grad_()
        model.zero_grad()
        out = model(x_adv)
        if loss_name == "kl":
            loss = F.kl_div(F.log_softmax(out, 1), F.softmax(x_nat_logits, 1), reduction="sum")
        else:
            loss = F.cross_entropy(out, y)
        loss.backward()
        x_adv = x_adv.detach() + step * torch.sign(x_adv.grad.detach())
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
        x_adv = torch.clamp(x_adv, 0.0, 1.0)
    model.train()
    return x_adv.detach()


def naive_epoch(model, train_np, optimizer, args, objective) -> float:
    x_np, y_np = train_np
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(x_np), torch.from_numpy(y_np))
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=0)
    loss_name = {"at": "ce", "trades": "kl", "mart": "ce"}[args.method]
    model.train()
    t0 = time.perf_counter()
    for x, y in loader:
        nat = None
        if loss_name == "kl":
            model.eval()
            with torch.no_grad():
                nat = model(x)
        x_adv = naive_pgd(model, x, y, args.eps, args.eps / 4, args.steps, loss_name, nat)
        optimizer.zero_grad()
        logits_adv = model(x_adv)
        logits_nat = model(x) if args.method != "at" else None
        loss, _ = objective(logits_nat, logits_adv, y, torch.ones(len(y)))
        loss.backward()
        optimizer.step()
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec, train, val = load_data(args)
    n = len(train)

    cfg = Config()
    cfg.train.method, cfg.attack.eps, cfg.attack.steps = args.method, args.eps, args.steps
    parts = build_step(cfg, torch.Generator().manual_seed(0))
    objective = parts.objective

    base = irat.models.create(args.model, dataset=spec)
    fast_model, naive_model = copy.deepcopy(base), stock_copy(base)
    fast_opt = torch.optim.SGD(fast_model.parameters(), lr=0.01, momentum=0.9)
    naive_opt = torch.optim.SGD(naive_model.parameters(), lr=0.01, momentum=0.9)
    train_np = (train.x.numpy(), train.y.numpy())

    fast, naive, attack, evals = [], [], [], []
    irat_epoch(fast_model, train.subset(args.batch_size * 2), parts, fast_opt, args.batch_size)  # warm-up
    for _ in range(args.repeats):
        epoch_s, attack_s = irat_epoch(fast_model, train, parts, fast_opt, args.batch_size)
        fast.append(epoch_s)
        attack.append(attack_s)
        naive.append(naive_epoch(naive_model, train_np, naive_opt, args, objective))
        evals.append(irat_eval(fast_model, val, args.eps, args.steps))

    t_fast, t_naive, t_attack, t_eval = (statistics.median(v) for v in (fast, naive, attack, evals))
    result = {
        "model": args.model,
        "method": args.method,
        "batch_size": args.batch_size,
        "pgd_steps": args.steps,
        "images": n,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "images_per_s": n / t_fast,
        "naive_images_per_s": n / t_naive,
        "speedup_vs_naive": t_naive / t_fast,
        "attack_s_per_epoch": t_attack,
        "update_s_per_epoch": statistics.median(e - a for e, a in zip(fast, attack)),
        "attack_fraction": t_attack / t_fast,
        "eval_pgd_images_per_s": len(val) / t_eval,
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "data": args.data,
    }
    if args.json:
        print(json.dumps(result))
    else:
        rows = [
            ("irat images/s", f"{result['images_per_s']:.0f}"),
            ("naive images/s", f"{result['naive_images_per_s']:.0f}"),
            ("speed-up vs naive", f"{result['speedup_vs_naive']:.2f}x"),
            ("attack s / epoch", f"{t_attack:.2f} ({100 * result['attack_fraction']:.0f}%)"),
            ("update s / epoch", f"{result['update_s_per_epoch']:.2f}"),
            (f"PGD-{args.steps} eval images/s", f"{result['eval_pgd_images_per_s']:.0f}"),
        ]
        print(
            f"{args.model} {args.method} PGD-{args.steps} batch {args.batch_size}, {n} images, "
            f"{result['threads']} threads, median of {args.repeats}"
        )
        for k, v in rows:
            print(f"  {k:<24} {v}")
    return result


if __name__ == "__main__":
    main()
