"""``MixedLoader``: batches drawn half from the training split and half from extra data (the
hard-instance paper's adversarial fine-tuning, Section 6.2; METHODS.md §4.12).

An epoch is one pass over the extra split (each extra image once, as in the paper's "1 or 5
epochs"), ``B // 2`` extra images per batch and ``B − B // 2`` training images (the last batch
keeps the same proportion with what is left of the extra split). The training images come from
permutations of the training split, a fresh one whenever the previous is used up. Both orders
and the augmentation draws depend only on ``(seed, epoch)``, as in ``Loader``; each batch is the
training part followed by the extra part, augmented together (``batch.crop``/``batch.flip``).
Under torchrun (``rank``/``world``) every process builds the same global batch and keeps its
contiguous shard, as ``Loader`` does, so K processes train on one process's batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from irat.data.augmentation import augment_with_draws
from irat.data.loader import derive_seed, shard_batch
from irat.data.spec import DatasetSpec
from irat.data.split import Split
from irat.types import Batch


class MixedLoader:
    """Iterates over ``extra`` in halves of ``batch_size``, each joined by as many (or one more)
    images of ``train``; ``set_epoch``, ``augment``, ``spec`` and ``rank``/``world`` as in
    ``Loader`` (``batch_size`` is the global batch)."""

    def __init__(
        self,
        train: Split,
        extra: Split,
        batch_size: int,
        seed: int = 0,
        augment: bool = False,
        spec: DatasetSpec | None = None,
        rank: int = 0,
        world: int = 1,
    ):
        if batch_size < 2:
            raise ValueError(f"a mixed batch needs batch_size >= 2 (half of each source), got {batch_size}")
        if not len(train) or not len(extra):
            raise ValueError("a mixed loader needs training and extra images")
        if augment and spec is None:
            raise ValueError("MixedLoader(augment=True) needs spec= (its crop_padding and flip)")
        self.train, self.extra = train, extra
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.half = self.batch_size // 2
        self.augment = bool(augment) and (spec.crop_padding > 0 or spec.flip)
        self.spec = spec
        self.rank, self.world = int(rank), int(world)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return math.ceil(len(self.extra) / self.half)

    def _perm(self, n: int, stream: int, device) -> torch.Tensor:
        g = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, stream))
        return torch.randperm(n, generator=g).to(device)

    def __iter__(self) -> Iterator[Batch]:
        train, extra = self.train, self.extra
        extra_order = self._perm(len(extra), 10, extra.device)
        counts = [min(self.half, len(extra) - i * self.half) for i in range(len(self))]
        need = sum(c + self.batch_size % 2 for c in counts)
        passes = math.ceil(need / len(train))
        train_order = torch.cat([self._perm(len(train), 11 + p, train.device) for p in range(passes)])
        gen = None
        if self.augment:
            gen = torch.Generator(device=train.device).manual_seed(derive_seed(self.seed, self.epoch, 1))
        t = e = 0
        for c in counts:
            tp = train_order[t : t + c + self.batch_size % 2]
            ep = extra_order[e : e + c]
            t, e = t + len(tp), e + c
            x = torch.cat([train.x[tp], extra.x[ep].to(train.device)])
            idx = torch.cat([train.idx[tp], extra.idx[ep].to(train.device)])
            y = torch.cat([train.y[tp], extra.y[ep].to(train.device)])
            crop = flip = None
            if gen is not None:
                x, crop, flip = augment_with_draws(x, self.spec.crop_padding, self.spec.flip, generator=gen)
            yield shard_batch(Batch(idx, x, y, crop, flip), self.rank, self.world)
