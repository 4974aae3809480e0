"""Images per second of adversarial training on 1, 2, ... processes (torchrun's DDP, issue 15).

For each process count K the script spawns K processes (gloo on the CPU, NCCL on GPUs, one GPU
per process), each of which joins the process group the way ``irat train`` does under torchrun
(``irat.distributed.setup``), wraps the model in DistributedDataParallel and runs
``irat.training.train_step`` on its shard of every global batch (``irat.data.Loader`` with
rank/world), exactly the code path of ``torchrun --nproc-per-node=K -m irat train``. The global
batch is fixed (``--batch-size``), so the work per step is the same for every K; what changes is
the share each process attacks and the all-reduce of the gradients. A few warm-up steps are not
timed; the timed steps end with a barrier. images/s = global batch × timed steps / seconds.

Data are random images of the model's dataset shape (speed does not depend on pixel values);
``--threads`` sets ``torch.set_num_threads`` in every process (on a CPU with C cores, K processes
× T threads ≤ C keeps the comparison fair).

    python benchmarks/ddp_scaling.py                                  # tiny-cnn, AT, 1 and 2 processes
    python benchmarks/ddp_scaling.py --model preact-resnet18 --procs 1,2 --batch-size 64 --steps 5
    python benchmarks/ddp_scaling.py --method mail-trades --json      # one JSON line
    python benchmarks/ddp_scaling.py --device cuda --procs 1,2,4,8 --model wrn-34-10 --batch-size 512
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import time

import torch
import torch.multiprocessing as mp

CIFAR_SHAPED = ("small-cnn", "resnet18", "preact-resnet18")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, args, queue) -> None:
    torch.set_num_threads(args.threads)
    import torch.distributed as dist

    import irat
    from irat import distributed

    os.environ.update(distributed.local_env(rank, world, port))
    from irat.config import resolve_config
    from irat.training.assemble import build_learned, build_step, fill_defaults, instance_state

    device = torch.device(args.device)
    if world > 1:
        device = distributed.setup(device)
    elif device.type == "cuda":
        device = torch.device("cuda", 0)
    cifar = args.model in CIFAR_SHAPED or args.model.startswith("wrn-")
    spec = irat.data.registry.get("cifar10" if cifar else "fashion-mnist").spec
    g = torch.Generator().manual_seed(0)
    n = args.batch_size * (args.steps + args.warmup)
    x = torch.rand(n, spec.channels, spec.image_size, spec.image_size, generator=g)
    y = torch.randint(0, spec.num_classes, (n,), generator=g)
    train = irat.data.Split(x, y, torch.arange(n)).to(device)
    cfg = resolve_config(
        method=args.method, eps=args.eps, steps=args.attack_steps, batch_size=args.batch_size
    )
    fill_defaults(cfg)
    distributed.check_batch(args.batch_size)
    torch.manual_seed(0)
    model = irat.models.create(args.model, dataset=spec).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    generator = torch.Generator(device=device).manual_seed(0)
    # BiLAW's weighting is learned on a D_meta (here one global batch of the same random images);
    # fast AT's cache and adaptive targets live in a per-instance state: built as irat.train does
    learned = build_learned(cfg, spec.num_classes, train.subset(args.batch_size))
    state = instance_state(cfg, train, spec, augment=False, generator=generator)
    if state is not None:
        state.begin_epoch(0, generator)
    parts = build_step(cfg, generator, 0, learned, state)
    loader = irat.data.Loader(
        train, batch_size=args.batch_size, shuffle=True, seed=0, rank=distributed.rank(), world=world
    )
    net.train()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        distributed.barrier()

    batches = list(loader)
    for batch in batches[: args.warmup]:
        irat.training.train_step(net, batch, parts, optimizer, 0)
    sync()
    t0 = time.perf_counter()
    for batch in batches[args.warmup :]:
        irat.training.train_step(net, batch, parts, optimizer, 0)
    sync()
    seconds = time.perf_counter() - t0
    if rank == 0:
        queue.put(seconds)
    if world > 1:
        dist.destroy_process_group()


def measure(args, world: int) -> float:
    """images/s of ``world`` processes."""
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.spawn(_worker, args=(world, _free_port(), args, queue), nprocs=world)
    return args.batch_size * args.steps / queue.get()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny-cnn")
    p.add_argument("--method", default="at")
    p.add_argument("--procs", default="1,2", help="comma-separated process counts")
    p.add_argument("--batch-size", type=int, default=128, help="the global batch")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--attack-steps", type=int, default=10, help="PGD steps")
    p.add_argument("--eps", type=float, default=8 / 255)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="one JSON line instead of a table")
    args = p.parse_args(argv)
    procs = [int(k) for k in args.procs.split(",")]
    rates = {k: measure(args, k) for k in procs}
    base = rates[procs[0]]
    rows = [
        {"procs": k, "images_per_s": r, "speedup": r / base, "efficiency": r / base / (k / procs[0])}
        for k, r in rates.items()
    ]
    info = {
        "model": args.model,
        "method": args.method,
        "global_batch": args.batch_size,
        "attack_steps": args.attack_steps,
        "threads_per_process": args.threads,
        "device": args.device,
        "backend": "nccl" if args.device.startswith("cuda") else "gloo",
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "rows": rows,
    }
    if args.json:
        print(json.dumps(info))
        return 0
    print(
        f"{args.model} {args.method}, global batch {args.batch_size}, PGD-{args.attack_steps}, "
        f"{args.threads} thread(s) per process, {info['backend']} on {args.device}"
    )
    print(f"{'procs':>5}  {'images/s':>10}  {'speedup':>7}  {'efficiency':>10}")
    for r in rows:
        print(f"{r['procs']:>5}  {r['images_per_s']:>10.1f}  {r['speedup']:>7.2f}  {r['efficiency']:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
