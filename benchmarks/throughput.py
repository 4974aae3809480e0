"""Images per second of one adversarial-training epoch: irat's step next to a naive reference loop.

The naive loop is ``irat.training.reference.reference_step``, written the way the papers' public
code is (GAIRAT, MAIL, VIR, MART): stock layers, ``model.eval()`` / ``model.train()`` toggling,
and a PGD loop that calls ``loss.backward()`` on the model, so every attack step also computes
parameter gradients it never uses, fed by a ``DataLoader`` over numpy arrays (per-sample
indexing and collation). Both loops compute the same math (same network and initial weights,
attack, ε, step, K, objective); ``tests/test_reference.py`` checks that they agree on a batch.

irat's epoch is timed end to end through ``irat.training.train_step`` with the data resident as
one tensor on the device (``irat.data.Loader``), without any synchronisation inside the epoch.
Measurements are interleaved (peak, irat, naive, evaluation, peak, irat, ...) and medians are
reported; the fraction of peak is computed per round against the matrix-product peak measured
in that round, so a noisy shared machine affects both alike. One more instrumented epoch gives
the breakdown: attack forward, attack backward (input gradients and the projected step),
weights, BiLAW's meta step (pseudo update, validation attack and double backward), update
(adversarial/natural forward, objective, backward, optimizer step). The peak memory of a step is
the most memory that the tensors it allocates hold at once (the profiler's allocation events on
the CPU, ``max_memory_allocated`` on a GPU).

BiLAW (``--method bilaw``) learns from the validation images as its D_meta; the naive loop has no
BiLAW and is skipped for it.

    python benchmarks/throughput.py --model tiny-cnn --method at            # a table
    python benchmarks/throughput.py --model tiny-cnn,small-cnn --method at,bilaw --no-naive
    python benchmarks/throughput.py --model tiny-cnn --method at --json     # one JSON line
    python benchmarks/throughput.py --model preact-resnet18 --device cuda --batch-size 512 --bf16
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import platform
import statistics
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import irat
from irat import methods
from irat.config import resolve_config
from irat.data import Loader
from irat.evaluation.robust import correct_under
from irat.runtime import configure_cuda, keep_freed_memory
from irat.training.assemble import build_learned, build_step, instance_state
from irat.training.reference import covers, reference_step, stock_copy
from irat.training.step import train_step
from irat.types import Batch


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny-cnn", help="irat model names, comma-separated (default tiny-cnn)")
    p.add_argument("--method", default="at", help="training methods, comma-separated (default at)")
    p.add_argument("--images", type=int, default=3840, help="training images per timed epoch")
    p.add_argument("--eval-images", type=int, default=1000, help="validation images for PGD-10 evaluation")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--eval-batch-size", type=int, default=500)
    p.add_argument("--steps", type=int, default=10, help="PGD steps K")
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--repeats", type=int, default=3, help="interleaved measurements per loop (median)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument(
        "--data",
        default="fashion-mnist",
        help="fashion-mnist (real files) or 'synthetic'; CIFAR-shaped models (resnet18, "
        "preact-resnet18, wrn-*) always get synthetic 3x32x32 images",
    )
    p.add_argument("--channels-last", action="store_true", help="irat's loop in channels-last format")
    p.add_argument("--compile", action="store_true", help="torch.compile the irat model")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode (reduce-overhead: CUDA graphs)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast of irat's step (AT/TRADES only)")
    p.add_argument("--no-naive", action="store_true", help="skip the naive loop (slow models)")
    p.add_argument(
        "--default-malloc",
        action="store_true",
        help="leave glibc's allocator at its defaults (irat.runtime.keep_freed_memory not applied)",
    )
    p.add_argument(
        "--profile", action="store_true", help="also print the operators of 3 steps (torch.profiler)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# data and clocks


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


def now(device: torch.device) -> float:
    """Wall-clock seconds after the device has finished its queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


# ---------------------------------------------------------------------------------------------
# irat's epoch, its breakdown, and evaluation


def irat_epoch(model, train, parts, optimizer, args, device) -> float:
    """Seconds for one epoch of ``train_step`` (no synchronisation inside)."""
    loader = Loader(train, batch_size=args.batch_size, shuffle=True, seed=0)
    model.train()
    t0 = now(device)
    for batch in loader:
        if args.channels_last:
            batch = Batch(batch.idx, batch.x.contiguous(memory_format=torch.channels_last), batch.y)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            train_step(model, batch, parts, optimizer, epoch=0)
    return now(device) - t0


def breakdown(model, train, parts, optimizer, args, device) -> dict:
    """Seconds per epoch in each part of the step, from one instrumented epoch (a clock read
    around every forward inside the attack, around the attack and around the weights)."""
    spent = {"attack": 0.0, "attack_forward": 0.0, "weights": 0.0, "meta": 0.0}
    state = {"in_attack": False, "t0": 0.0}

    def before_forward(_module, _inputs):
        if state["in_attack"]:
            state["t0"] = now(device)

    def after_forward(_module, _inputs, _output):
        if state["in_attack"]:
            spent["attack_forward"] += now(device) - state["t0"]

    def attack(m, x, y, **kw):  # kw: ATTA's x_start (fast AT)
        state["in_attack"], t0 = True, now(device)
        out = parts.attack(m, x, y, **kw)
        spent["attack"] += now(device) - t0
        state["in_attack"] = False
        return out

    def weights(stats):
        t0 = now(device)
        w = parts.weights(stats)
        spent["weights"] += now(device) - t0
        return w

    def meta_step(*a, **kw):
        t0 = now(device)
        parts.meta_step(*a, **kw)
        spent["meta"] += now(device) - t0

    timed = dataclasses.replace(
        parts, attack=attack, weights=weights, meta_step=meta_step if parts.meta_step is not None else None
    )
    eager = getattr(model, "_orig_mod", model)  # hooks on the eager module under --compile
    hooks = [eager.register_forward_pre_hook(before_forward), eager.register_forward_hook(after_forward)]
    try:
        epoch_s = irat_epoch(eager, train, timed, optimizer, args, device)
    finally:
        for h in hooks:
            h.remove()
    return {
        "attack_forward_s": spent["attack_forward"],
        "attack_backward_s": spent["attack"] - spent["attack_forward"],
        "weights_s": spent["weights"],
        "meta_s": spent["meta"],
        "update_s": epoch_s - spent["attack"] - spent["weights"] - spent["meta"],
    }


def peak_step_memory(model, train, parts, optimizer, args, device, steps: int = 2) -> int:
    """Bytes: the most memory that the tensors a training step allocates hold at once (the
    largest over ``steps`` steps). On the CPU from the allocation and free events that
    ``torch.profiler`` records (``profile_memory=True``: the allocator's own events, so the figure
    depends neither on glibc nor on the machine's load; tensors from before the step, such as the
    previous gradients it frees, are not counted), on a GPU from ``torch.cuda.max_memory_allocated``
    above what was allocated before the step."""
    loader = Loader(train.subset(min(len(train), args.batch_size * steps)), batch_size=args.batch_size)
    model.train()
    peak = 0
    for batch in loader:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            base = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            train_step(model, batch, parts, optimizer, epoch=0)
            peak = max(peak, torch.cuda.max_memory_allocated(device) - base)
            continue
        with torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True
        ) as prof:
            train_step(model, batch, parts, optimizer, epoch=0)
        events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
        live = 0
        for e in sorted(events, key=lambda e: e.start_ns()):
            live += e.nbytes()
            peak = max(peak, live)
    return peak


def profile_steps(model, train, parts, optimizer, args, device, steps: int = 3) -> str:
    """torch.profiler's operator table (self time, top 15) over ``steps`` training steps."""
    loader = Loader(train.subset(min(len(train), args.batch_size * steps)), batch_size=args.batch_size)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    model.train()
    with torch.profiler.profile(activities=activities) as prof:
        for batch in loader:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
                train_step(model, batch, parts, optimizer, epoch=0)
        now(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=15)


def irat_eval(model, val, args, device) -> float:
    attack = irat.attacks.build(f"pgd-{args.steps}", eps=args.eps)
    t0 = now(device)
    correct_under(model, val.x, val.y, attack, batch_size=args.eval_batch_size)
    return now(device) - t0


# ---------------------------------------------------------------------------------------------
# the naive loop


def naive_epoch(model, train_np, optimizer, args, parts, device) -> float:
    """The same method as ``parts``, engineered like the papers' code (fp32, stock layers)."""
    x_np, y_np = train_np
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(x_np), torch.from_numpy(y_np))
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=0)
    model.train()
    t0 = now(device)
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        reference_step(model, Batch(torch.arange(len(y), device=device), x, y), parts, optimizer, epoch=0)
    return now(device) - t0


# ---------------------------------------------------------------------------------------------
# FLOPs and the peak


CARD_PEAKS = {
    # dense (no sparsity) tensor-core peaks of the SXM parts, from NVIDIA's data sheets, FLOP/s
    "H100": {"bf16": 989.4e12, "tf32": 494.7e12},
    "H200": {"bf16": 989.4e12, "tf32": 494.7e12},
    "A100": {"bf16": 312e12, "tf32": 156e12},
}


def card_peak(device: torch.device, bf16: bool) -> float | None:
    """The card's data-sheet peak for this run's arithmetic: bf16 tensor cores with ``--bf16``,
    else TF32 (PyTorch runs fp32 convolutions on TF32 tensor cores by default,
    ``torch.backends.cudnn.allow_tf32``); None for the CPU or an unlisted card."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for card, peaks in CARD_PEAKS.items():
        if card in name:
            return peaks["bf16" if bf16 else "tf32"]
    return None


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


def flops_per_image(model, batch, parts, images: int = 16) -> float:
    """FLOPs of one training step (attack + update) per image, counted by
    ``torch.utils.flop_counter`` on a stock-layer copy on the CPU over the batch's first
    ``images`` images (every kernel has a FLOP formula there; the count per image depends on
    neither the device nor the batch size). BiLAW's meta step attacks a whole validation batch
    whatever the training batch is, so its step is counted over the whole ``batch`` (the same size
    as the validation batch in the benchmark) on the model's device (where D_meta is)."""
    if parts.meta_step is None:
        model = stock_copy(model).cpu()
        batch = Batch(batch.idx[:images].cpu(), batch.x[:images].cpu(), batch.y[:images].cpu())
    else:
        model = stock_copy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with GlobalFlopCounter(display=False) as counter:
        train_step(model, batch, parts, opt, epoch=0)
    return counter.get_total_flops() / len(batch)


def peak_flops(
    device: torch.device, dtype: torch.dtype, repeats: int = 5, onednn: bool = False
) -> float | None:
    """FLOP/s the device sustains on a large matrix product (n = 2048 on the CPU, 8192 on a GPU)
    in ``dtype``, median of ``repeats``: ``torch.mm`` (MKL on the CPU), or with ``onednn`` the
    oneDNN matrix product that PyTorch's compiler uses on the CPU (a private operator: None
    where it is missing). On this project's CPU oneDNN's product runs about 15 % faster than
    MKL's, and oneDNN's ResNet convolutions exceed the ``torch.mm`` figure."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    product = lambda: a @ b  # noqa: E731
    if onednn:
        linear = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
        if device.type != "cpu" or linear is None:
            return None
        product = lambda: linear(a, b, None, "none", [], "")  # noqa: E731
    product()
    times = []
    for _ in range(repeats):
        t0 = now(device)
        product()
        times.append(now(device) - t0)
    return 2 * n**3 / statistics.median(times)


# ---------------------------------------------------------------------------------------------


def measure(model_name: str, method: str, args, device: torch.device) -> dict:
    """One configuration: irat's epoch and the naive one, interleaved, medians."""
    torch.manual_seed(0)
    spec, train, val, data_name = load_data(args, model_name)
    train, val = train.to(device), val.to(device)
    n = len(train)
    cached = irat.methods.get(method).cached  # fast AT: one step from ATTA's cache
    steps = 1 if cached else args.steps
    cfg = resolve_config(None, method=method, eps=args.eps, steps=steps, **{"weighting.burn_in": 0})
    generator = torch.Generator(device=device).manual_seed(0)
    learned = build_learned(cfg, spec.num_classes, val)  # BiLAW: the validation images as D_meta
    state = instance_state(cfg, train, spec, augment=False, generator=generator)  # fast AT
    parts = build_step(cfg, generator, learned=learned, state=state)
    naive_ok = not args.no_naive and covers(parts)  # none for FAT's early stop, SAA, BiLAW, fast AT

    base = irat.models.create(model_name, dataset=spec).to(device)
    fast_model, naive_model = copy.deepcopy(base), stock_copy(base)
    if args.channels_last:
        fast_model = fast_model.to(memory_format=torch.channels_last)
    optimizer_of = lambda m: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)  # noqa: E731
    fast_opt, naive_opt = optimizer_of(fast_model), optimizer_of(naive_model)
    if args.compile:
        fast_model = torch.compile(fast_model, mode=args.compile_mode)
    train_np = (train.x.cpu().numpy(), train.y.cpu().numpy())
    first = next(iter(Loader(train, batch_size=args.batch_size, shuffle=False)))
    per_image = flops_per_image(base, first, parts)
    dtype = torch.bfloat16 if args.bf16 else torch.float32

    # every timed loop once before the rounds: cuDNN's autotuning, compilation and lazy
    # initialisations would otherwise land in the first round (on an H200 they halved the naive
    # loop's median of 2)
    warm = train.subset(min(n, args.batch_size * 2))
    irat_epoch(fast_model, warm, parts, fast_opt, args, device)
    if naive_ok:
        naive_epoch(
            naive_model, (train_np[0][: len(warm)], train_np[1][: len(warm)]), naive_opt, args, parts, device
        )
    irat_eval(fast_model, val, args, device)
    rounds = []
    for _ in range(args.repeats):
        r = {"peak": peak_flops(device, dtype), "peak_onednn": peak_flops(device, dtype, onednn=True)}
        r["irat"] = irat_epoch(fast_model, train, parts, fast_opt, args, device)
        r["naive"] = naive_epoch(naive_model, train_np, naive_opt, args, parts, device) if naive_ok else None
        r["eval"] = irat_eval(fast_model, val, args, device)
        r["fraction"] = per_image * n / r["irat"] / r["peak"]
        rounds.append(r)
    parts_s = breakdown(fast_model, train, parts, fast_opt, args, device)
    peak_memory = peak_step_memory(fast_model, train, parts, fast_opt, args, device)
    if args.profile:
        print(f"{model_name} {method}: operators of 3 steps", file=sys.stderr)
        print(profile_steps(fast_model, train, parts, fast_opt, args, device), file=sys.stderr)

    def med(key):
        return statistics.median(r[key] for r in rounds)

    t_fast = med("irat")
    t_naive = med("naive") if naive_ok else None
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
        **parts_s,
        "attack_fraction": (parts_s["attack_forward_s"] + parts_s["attack_backward_s"])
        / sum(parts_s.values()),
        "peak_step_memory_bytes": peak_memory,
        "eval_pgd_images_per_s": len(val) / med("eval"),
        "flops_per_image": per_image,
        "achieved_flops": per_image * n / t_fast,
        "peak_flops": med("peak"),
        "peak_flops_onednn": med("peak_onednn") if rounds[0]["peak_onednn"] else None,
        "fraction_of_peak": med("fraction"),
        "card_peak_flops": card_peak(device, args.bf16),
        "mfu": per_image * n / t_fast / card_peak(device, args.bf16)
        if card_peak(device, args.bf16)
        else None,
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "data": data_name,
        "channels_last": args.channels_last,
        "compile": args.compile,
        "bf16": args.bf16,
        "kept_freed_memory": not args.default_malloc and device.type == "cpu",
    }


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.default_malloc and device.type == "cpu":
        keep_freed_memory()  # what irat.train does on the CPU (irat/runtime.py); both loops share it
    configure_cuda(device)  # what irat.train does on a GPU (cuDNN autotuning); both loops share it
    models = [m.strip() for m in args.model.split(",") if m.strip()]
    chosen = [m.strip() for m in args.method.split(",") if m.strip()]
    for m in chosen:
        methods.get(m)  # a clear error for an unknown name before any measurement
    results = []
    for model_name in models:
        for method in chosen:
            row = measure(model_name, method, args, device)
            results.append(row)
            if args.json:
                print(json.dumps(row), flush=True)
    if not args.json:
        print_table(results, args)
    return results


def print_table(results: list[dict], args) -> None:
    print(
        f"PGD-{args.steps} epoch, batch {args.batch_size}, {results[0]['device_name']}, "
        f"{torch.get_num_threads()} threads, median of {args.repeats}"
    )
    print(
        "| model | method | irat img/s | naive img/s | speed-up | attack fwd / bwd / weights / meta / update "
        "(s per epoch) | step memory MiB | MFLOP/img | GFLOP/s | peak GFLOP/s | of peak |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        naive = f"{r['naive_images_per_s']:.0f}" if r["naive_images_per_s"] else "n/a"
        speed = f"{r['speedup_vs_naive']:.2f}x" if r["speedup_vs_naive"] else "n/a"
        split = " / ".join(
            f"{r[k]:.2f}"
            for k in ("attack_forward_s", "attack_backward_s", "weights_s", "meta_s", "update_s")
        )
        print(
            f"| {r['model']} | {r['method']} | {r['images_per_s']:.0f} | {naive} | {speed} | {split} | "
            f"{r['peak_step_memory_bytes'] / 2**20:.1f} | "
            f"{r['flops_per_image'] / 1e6:.1f} | {r['achieved_flops'] / 1e9:.1f} | "
            f"{r['peak_flops'] / 1e9:.0f} | {100 * r['fraction_of_peak']:.0f}% |"
        )


if __name__ == "__main__":
    main()
