"""Batched data augmentation on the device: random crop with zero padding and random horizontal
flip, both per sample, as one gather (no Python loop over samples)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def augment(x: Tensor, padding: int, flip: bool, generator: torch.Generator | None = None) -> Tensor:
    """Randomly crop and/or flip each image of ``x`` [B, C, H, W].

    Crop: ``x`` is zero-padded by ``padding`` pixels on every side and each sample keeps an
    H×W window at its own random offset (row and column offsets uniform in [0, 2·padding]).
    Flip: each sample is mirrored left-right with probability 0.5. ``generator`` (on ``x``'s
    device) makes the draws reproducible. ``padding=0, flip=False`` returns ``x`` itself.
    """
    padding = int(padding)
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if padding == 0 and not flip:
        return x
    b, c, h, w = x.shape
    dev = x.device
    rows = torch.arange(h, device=dev).expand(b, h)
    cols = torch.arange(w, device=dev).expand(b, w)
    if padding:
        x = F.pad(x, (padding, padding, padding, padding))
        offsets = torch.randint(0, 2 * padding + 1, (2, b, 1), device=dev, generator=generator)
        rows = rows + offsets[0]
        cols = cols + offsets[1]
    if flip:
        mirror = torch.rand(b, 1, device=dev, generator=generator) < 0.5
        cols = torch.where(mirror, cols.flip(1), cols)
    batch = torch.arange(b, device=dev)[:, None, None, None]
    chan = torch.arange(c, device=dev)[None, :, None, None]
    return x[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]
