"""The process group and the reductions over the global batch (issue 15, DESIGN.md "Scale").

``irat train`` under ``torchrun --nproc-per-node=K`` runs K copies of the same loop; each process
takes a contiguous shard of every global batch (``train.batch_size`` is the global batch, so a
result does not depend on K). This module is the one place that knows about the other processes:

* ``setup(device)``: joins the process group from torchrun's environment (``WORLD_SIZE``,
  ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``), NCCL on CUDA and gloo on the CPU;
  without ``WORLD_SIZE`` > 1 nothing is initialised and every helper here is the identity;
* ``global_sums(*values)``: the sums over all processes of a few scalars, packed in one tensor, so a
  weighting that normalises over the batch (Σw and B, LRAT's Σc and B) costs one all-reduce;
* ``shard(n, rank, world)``: the rows of a global batch of ``n`` a process takes;
* ``global_draws(...)``: while active, random starts are drawn for the whole global batch on every
  process and each keeps its own rows, so K processes see the noise one process would;
* ``merge_rows(values, touched)``: per-instance tensors indexed by dataset index, each index
  updated by one process in an epoch, combined (one all-reduce);
* ``alone()``: rank 0 works as a single process (the analyses), the others need not wait.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import torch
import torch.distributed as dist
from torch import Tensor

_alone = [False]  # inside ``alone()``: this process acts as the only one


def world_size() -> int:
    if _alone[0]:
        return 1
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    if _alone[0]:
        return 0
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """While active, this process works as if it were the only one: ``world_size()`` is 1,
    ``rank()`` 0, ``setup`` joins nothing, so every helper here is the identity and nothing
    waits for the other processes. Rank 0 runs what only one process should do inside it
    (``irat compare``'s and ``irat analyze``'s analyses), while the others have moved on."""
    previous = _alone[0]
    _alone[0] = True
    try:
        yield
    finally:
        _alone[0] = previous


def is_main() -> bool:
    """True on the process that writes files (rank 0; the only one without torchrun)."""
    return rank() == 0


def requested() -> bool:
    """torchrun (or the user) asks for more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def local_env(rank: int, world: int, port: int) -> dict[str, str]:
    """The environment torchrun gives process ``rank`` of ``world`` on this machine (master on
    127.0.0.1:``port``): what a process spawned without torchrun sets before ``setup``."""
    return {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world),
    }


def setup(device: torch.device) -> torch.device:
    """Join the process group when torchrun started several processes; returns the device this
    process trains on (``cuda:LOCAL_RANK`` on GPUs). Idempotent; inside ``alone()`` it joins
    nothing."""
    if not requested() or _alone[0]:
        return device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def check_batch(batch_size: int) -> None:
    """A ValueError when the global batch does not split evenly over the processes."""
    k = world_size()
    if batch_size % k:
        raise ValueError(
            f"train.batch_size={batch_size} (the global batch) does not divide by the {k} processes; "
            f"use a multiple of {k}, e.g. --train.batch_size={max(k, batch_size - batch_size % k)}"
        )


def shard(n: int, r: int | None = None, k: int | None = None) -> slice:
    """Rows ``[r·n/k, (r+1)·n/k)`` of a global batch of ``n``: contiguous, sizes differ by at most one."""
    r = rank() if r is None else r
    k = world_size() if k is None else k
    return slice(r * n // k, (r + 1) * n // k)


def global_sums(*values: Tensor | float) -> tuple[Tensor, ...]:
    """The sums over all processes of scalar ``values`` (tensors or numbers), one all-reduce;
    on one process the values themselves (as tensors)."""
    ref = next((v for v in values if isinstance(v, Tensor)), None)
    if world_size() == 1:
        return tuple(v if isinstance(v, Tensor) else torch.as_tensor(v) for v in values)
    dtype = torch.float64 if ref is None else ref.dtype
    device = None if ref is None else ref.device
    packed = torch.stack([torch.as_tensor(v, dtype=dtype, device=device).reshape(()) for v in values])
    packed = _all_reduce_with_grad(packed)
    return tuple(packed.unbind())


def _all_reduce_with_grad(t: Tensor) -> Tensor:
    """Sum over processes; differentiable: BiLAW's meta step differentiates the normalised
    weights, and the gradient with respect to each process's terms of a global sum gathers the
    uses of that sum on every process (the backward is an all-reduce too)."""
    if t.requires_grad:  # backward: the gradients of every process's use of the sum, summed
        import torch.distributed.nn.functional as dnn

        return dnn.all_reduce(t)
    t = t.clone()
    dist.all_reduce(t)
    return t


def all_reduce_(t: Tensor, op: str = "sum") -> Tensor:
    """In-place all-reduce (sum or mean) of ``t``; identity on one process."""
    k = world_size()
    if k > 1:
        dist.all_reduce(t)
        if op == "mean":
            t /= k
    return t


def share(n: int, total: int | None) -> float:
    """``K · n / total`` for this process's ``n`` rows of a global batch of ``total`` (1.0 when
    ``total`` is None, on one process, and whenever the shards are equal)."""
    return 1.0 if total is None else n * world_size() / total


def mean_over_processes(tensors, weight: float = 1.0) -> list:
    """``Σ_r weight_r · t_r / K`` for each tensor (None kept), one all-reduce; on one process the
    tensors themselves. With ``weight = share(...)`` the mean of K local batch means is the
    global batch's mean."""
    k = world_size()
    if k == 1:
        return list(tensors)
    present = [t for t in tensors if t is not None]
    flat = torch.cat([t.detach().reshape(-1) * weight for t in present])
    all_reduce_(flat, "mean")
    out, i = [], 0
    for t in tensors:
        if t is None:
            out.append(None)
            continue
        out.append(flat[i : i + t.numel()].view_as(t))
        i += t.numel()
    return out


def gather_rows(local: Tensor, n: int) -> Tensor:
    """The rows ``[n, ...]`` of which this process holds its ``shard(n)``, on every process (one
    all-gather; shards are padded to the same length). On one process ``local`` itself."""
    k = world_size()
    if k == 1:
        return local
    size = -(-n // k)
    dtype = local.dtype
    wire = local.to(torch.uint8) if dtype == torch.bool else local  # gloo has no bool
    padded = wire.new_zeros((size, *wire.shape[1:]))
    padded[: len(wire)] = wire
    parts = [torch.empty_like(padded) for _ in range(k)]
    dist.all_gather(parts, padded)
    sizes = [shard(n, r, k).stop - shard(n, r, k).start for r in range(k)]
    return torch.cat([part[:rows] for part, rows in zip(parts, sizes)]).to(dtype)


def any_true(flag: bool) -> bool:
    """Whether ``flag`` is true on any process (one all-reduce; ``flag`` itself on one process):
    an error on rank 0 stops every process instead of leaving the others at a collective."""
    if world_size() == 1:
        return bool(flag)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    t = torch.tensor([1.0 if flag else 0.0], device=device)  # NCCL reduces CUDA tensors only
    dist.all_reduce(t)
    return bool(t.item() > 0)


def barrier() -> None:
    """Wait for every process (nothing on one process)."""
    if world_size() > 1:
        dist.barrier()


def average_grads(params) -> None:
    """Average ``.grad`` of ``params`` over the processes (one all-reduce), so parameters that DDP
    does not own (BiLAW's weight network) stay identical on every process."""
    if world_size() == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    all_reduce_(flat, "mean")
    i = 0
    for g in grads:
        g.copy_(flat[i : i + g.numel()].view_as(g))
        i += g.numel()


def merge_rows(values: Tensor, touched: Tensor) -> Tensor:
    """``values`` [N, ...] indexed by dataset index, of which this process updated the rows
    ``touched`` [N] (bool) this epoch, each row by at most one process → every process's updated
    rows, untouched rows as they were (identical everywhere). One all-reduce."""
    if world_size() == 1:
        return values
    mask = touched.to(values.dtype).view(-1, *([1] * (values.dim() - 1)))
    own = torch.nan_to_num(values * mask, nan=0.0) if values.is_floating_point() else values * mask
    both = torch.cat([own.reshape(len(values), -1), touched.to(values.dtype)[:, None]], 1)
    dist.all_reduce(both)
    merged, hit = both[:, :-1].view_as(values), both[:, -1] > 0
    hit = hit.view(-1, *([1] * (values.dim() - 1)))
    mine = touched.view_as(hit)
    # own rows as they are (NaN kept), another process's rows from the sum, the rest unchanged
    return torch.where(mine, values, torch.where(hit, merged, values))


# ------------------------------------------------------------------------------------------------
# random draws of the global batch

_global_batch: list[int | None] = [None]


@contextlib.contextmanager
def global_draws(global_batch: int | None) -> Iterator[None]:
    """While active (with several processes), ``draw`` makes noise for ``global_batch`` rows and
    returns this process's shard, so the random starts equal one process's on the same batch."""
    previous = _global_batch[0]
    _global_batch[0] = global_batch if world_size() > 1 else None
    try:
        yield
    finally:
        _global_batch[0] = previous


def draw(fn: Callable[..., Tensor], shape, **kw) -> Tensor:
    """``fn(shape, **kw)`` (torch.rand/randn), or inside ``global_draws`` the shard of a draw for
    the global batch when ``shape[0]`` is this process's share of it."""
    n = _global_batch[0]
    shape = tuple(shape)
    if n is None or not shape:
        return fn(shape, **kw)
    rows = shard(n)
    if shape[0] != rows.stop - rows.start:
        return fn(shape, **kw)
    return fn((n, *shape[1:]), **kw)[rows]
