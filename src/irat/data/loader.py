"""``Loader``: mini-batches from a split that stays on its device as one tensor.

The permutation of each epoch depends only on ``(seed, epoch)`` (``set_epoch``), so an epoch can
be replayed or resumed exactly; augmentation runs batched on the device with a generator seeded
the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

from irat.data.augmentation import augment_with_draws
from irat.data.spec import DatasetSpec
from irat.data.split import Split
from irat.distributed import shard
from irat.types import Batch


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (e.g. ``(seed, epoch, stream)``)."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFFFFFFFFFF for p in parts]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class Loader:
    """Iterates over ``split`` in batches of ``batch_size``, yielding ``Batch(idx, x, y)``.

    ``shuffle``: a new permutation each epoch, set by ``set_epoch(e)`` (epoch 0 until called);
    ``augment``: apply ``augment(x, spec.crop_padding, spec.flip)`` to each batch (needs ``spec``);
    ``drop_last``: skip the final incomplete batch. ``batch.idx`` holds the split's ``idx`` values;
    with augmentation ``batch.crop`` and ``batch.flip`` hold the draws.

    ``rank``/``world`` (torchrun, ``irat.distributed``): ``batch_size`` is the global batch; every
    process draws the same permutation and augmentation of the global batch and yields its
    contiguous shard of it (``Batch.total`` = the global batch's size), so K processes together
    visit the images in one process's order, each image once per epoch.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        augment: bool = False,
        spec: DatasetSpec | None = None,
        drop_last: bool = False,
        rank: int = 0,
        world: int = 1,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if augment and spec is None:
            raise ValueError("Loader(augment=True) needs spec= (its crop_padding and flip)")
        self.split = split
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.augment = bool(augment) and (spec.crop_padding > 0 or spec.flip)
        self.spec = spec
        self.drop_last = drop_last
        self.rank, self.world = int(rank), int(world)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation and augmentation draws of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def order(self) -> torch.Tensor:
        """The positions of this epoch's samples, in visiting order (on the split's device; drawn
        on the CPU, so the order does not depend on the device; copied without a host
        synchronisation, as BiLAW draws a new pass of its meta split inside a training step)."""
        n = len(self.split)
        if not self.shuffle:
            return torch.arange(n, device=self.split.device)
        g = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, 0))
        order = torch.randperm(n, generator=g)
        if self.split.device.type == "cuda":  # pinned and asynchronous: no host synchronisation
            return order.pin_memory().to(self.split.device, non_blocking=True)
        return order.to(self.split.device)

    def __iter__(self) -> Iterator[Batch]:
        split, bs = self.split, self.batch_size
        order = self.order()
        gen = None
        if self.augment:
            gen = torch.Generator(device=split.device).manual_seed(derive_seed(self.seed, self.epoch, 1))
        for i in range(len(self)):
            pos = order[i * bs : (i + 1) * bs]
            x, crop, flip = split.x[pos], None, None
            if gen is not None:  # the global batch's draws on every process (same generator state)
                x, crop, flip = augment_with_draws(x, self.spec.crop_padding, self.spec.flip, generator=gen)
            yield shard_batch(Batch(split.idx[pos], x, split.y[pos], crop, flip), self.rank, self.world)


def shard_batch(batch: Batch, rank: int, world: int) -> Batch:
    """Process ``rank``'s contiguous rows of the global ``batch`` over ``world`` processes, with
    ``total`` = the global batch's size (``batch`` itself when ``world`` is 1)."""
    if world == 1:
        return batch
    n = len(batch)
    mine = shard(n, rank, world)
    crop, flip = (None if t is None else t[mine] for t in (batch.crop, batch.flip))
    return Batch(batch.idx[mine], batch.x[mine], batch.y[mine], crop, flip, total=n)
