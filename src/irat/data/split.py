"""``Split`` (one part of a dataset as tensors) and ``stratified_split`` (seeded class-balanced
index sets), used for the validation split(s) and the ``limit`` subset."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from irat.data.errors import DataError


@dataclass
class Split:
    """Images, labels and their original indices.

    ``x`` [N, C, H, W] float32 in [0, 1]; ``y`` [N] int64; ``idx`` [N] int64: the index of each
    image in its file's split (training-file indices for ``train`` and ``val``, test-file indices
    for ``test``). ``idx`` identifies an instance in per-instance records and state.
    """

    x: Tensor
    y: Tensor
    idx: Tensor
    name: str = ""

    def __post_init__(self) -> None:
        n = self.x.shape[0]
        if self.x.dim() != 4 or self.y.shape != (n,) or self.idx.shape != (n,):
            raise ValueError(
                f"Split {self.name!r}: need x [N,C,H,W], y [N], idx [N]; got {tuple(self.x.shape)}, "
                f"{tuple(self.y.shape)}, {tuple(self.idx.shape)}"
            )

    def __len__(self) -> int:
        return self.y.shape[0]

    @property
    def device(self) -> torch.device:
        return self.x.device

    def to(self, device: torch.device | str) -> Split:
        """The same split on ``device`` (self when it is already there)."""
        device = torch.device(device)
        if self.x.device == device and self.y.device == device and self.idx.device == device:
            return self
        return Split(self.x.to(device), self.y.to(device), self.idx.to(device), self.name)

    def subset(self, which: int | Tensor) -> Split:
        """The first ``which`` images (an int), or the images at positions ``which`` (a long or bool
        tensor of positions within this split, not of ``idx`` values)."""
        if isinstance(which, int):
            if which < 0:
                raise ValueError(f"subset size must be >= 0, got {which}")
            return Split(self.x[:which], self.y[:which], self.idx[:which], self.name)
        pos = which.to(self.x.device)
        return Split(self.x[pos], self.y[pos], self.idx[pos], self.name)


def _largest_remainder(total: int, weights: Tensor) -> Tensor:
    """Integer counts summing to ``total``, proportional to ``weights`` (long, sum > 0), by
    largest-remainder rounding; ties go to the lower class index."""
    exact = weights.double() * total / weights.sum().double()
    counts = exact.floor().long()
    short = total - int(counts.sum())
    if short > 0:
        frac = exact - counts.double()
        # stable sort on -frac keeps ties in class order
        order = torch.sort(-frac, stable=True).indices
        counts[order[:short]] += 1
    return counts


def stratified_split(y: Tensor, sizes: Sequence[int], seed: int = 0) -> list[Tensor]:
    """Seeded, class-stratified, disjoint index sets of the given ``sizes``.

    Returns ``len(sizes) + 1`` sorted int64 tensors of positions into ``y``: one per size, then the
    complement (every position not chosen). Each set's per-class counts are proportional to the
    class frequencies among the positions still available when it is drawn (largest-remainder
    rounding), so sets are as class-balanced as the data allows. The result depends only on ``y``,
    ``sizes`` and ``seed``.
    """
    y = torch.as_tensor(y).detach().cpu().long()
    if y.dim() != 1:
        raise DataError(f"stratified_split: labels must be 1-D, got shape {tuple(y.shape)}")
    n = y.shape[0]
    sizes = [int(s) for s in sizes]
    if any(s < 0 for s in sizes) or sum(sizes) > n:
        raise DataError(f"stratified_split: cannot take sizes {sizes} (sum {sum(sizes)}) from {n} items")
    if n == 0:
        return [torch.zeros(0, dtype=torch.long) for _ in range(len(sizes) + 1)]
    if int(y.min()) < 0:
        raise DataError("stratified_split: labels must be >= 0")
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=g)
    # group positions by class, in random order within each class
    order = perm[torch.sort(y[perm], stable=True).indices]
    remaining = torch.bincount(y)
    starts = torch.cumsum(remaining, 0) - remaining  # where each class begins in `order`
    taken = torch.zeros_like(remaining)
    chosen = torch.zeros(n, dtype=torch.bool)
    out = []
    for size in sizes:
        if size == 0:
            out.append(torch.zeros(0, dtype=torch.long))
            continue
        counts = _largest_remainder(size, remaining)
        parts = [
            order[int(starts[c] + taken[c]) : int(starts[c] + taken[c] + counts[c])]
            for c in torch.nonzero(counts).flatten().tolist()
        ]
        sel = torch.sort(torch.cat(parts)).values
        chosen[sel] = True
        taken += counts
        remaining -= counts
        out.append(sel)
    out.append(torch.nonzero(~chosen).flatten())
    return out


def index_slots(idx: Tensor) -> Tensor:
    """``slot`` [max(idx) + 1] long: ``slot[idx[i]] = i`` and −1 elsewhere, so that per-instance
    state is stored densely (one row per instance) and looked up by dataset index."""
    size = int(idx.max()) + 1 if len(idx) else 0
    slot = torch.full((size,), -1, dtype=torch.long, device=idx.device)
    slot[idx] = torch.arange(len(idx), device=idx.device)
    return slot
