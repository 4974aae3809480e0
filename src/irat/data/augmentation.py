"""Batched data augmentation on the device: random crop with zero padding and random horizontal
flip, both per sample, as one gather (no Python loop over samples).

The draws are exposed (``draw``) and the view is applied to any canvas (``view``) and written
back (``paste``), so that ATTA's perturbation cache (``irat.attacks.atta``) sees the same
crop/flip as the natural image and stores its result un-augmented (METHODS.md §3.7):

    view(pad(x), crop, flip) == augment(x) with the same draws
    paste(canvas, view(canvas, crop, flip), crop, flip) == canvas
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def draw(
    b: int, padding: int, flip: bool, device: torch.device, generator: torch.Generator | None = None
) -> tuple[Tensor | None, Tensor | None]:
    """Per-sample draws for ``b`` images: ``crop`` [B, 2] long row and column offsets, uniform in
    [0, 2·padding] (None without padding), and ``flip`` [B] bool, True with probability 0.5
    (None without flips)."""
    crop = mirror = None
    if padding:
        crop = torch.randint(0, 2 * padding + 1, (2, b, 1), device=device, generator=generator)
        crop = crop[:, :, 0].T
    if flip:
        mirror = torch.rand(b, 1, device=device, generator=generator)[:, 0] < 0.5
    return crop, mirror


def _grid(canvas: Tensor, size: tuple[int, int], crop: Tensor | None, flip: Tensor | None):
    """Gather indices of the H×W windows of ``canvas`` [B, C, H', W'] at ``crop``, mirrored
    where ``flip``."""
    b, c = canvas.shape[:2]
    h, w = size
    dev = canvas.device
    rows = torch.arange(h, device=dev).expand(b, h)
    cols = torch.arange(w, device=dev).expand(b, w)
    if crop is not None:
        rows = rows + crop[:, :1]
        cols = cols + crop[:, 1:]
    if flip is not None:
        cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=dev)[:, None, None, None]
    chan = torch.arange(c, device=dev)[None, :, None, None]
    return batch, chan, rows[:, None, :, None], cols[:, None, None, :]


def view(canvas: Tensor, size: tuple[int, int], crop: Tensor | None, flip: Tensor | None) -> Tensor:
    """The H×W window [B, C, H, W] of each ``canvas`` [B, C, H', W'] at ``crop`` (None: the top
    left corner), mirrored left-right where ``flip`` (None: nowhere)."""
    if crop is None and flip is None and tuple(canvas.shape[2:]) == tuple(size):
        return canvas
    return canvas[_grid(canvas, size, crop, flip)]


def paste(canvas: Tensor, values: Tensor, crop: Tensor | None, flip: Tensor | None) -> Tensor:
    """``canvas`` [B, C, H', W'] with the window ``view`` reads replaced by ``values`` [B, C, H, W]
    (un-flipped, at its crop offset); a new tensor, ``canvas`` is not modified."""
    if crop is None and flip is None and canvas.shape == values.shape:
        return values.clone()
    out = canvas.clone()
    out[_grid(canvas, tuple(values.shape[2:]), crop, flip)] = values
    return out


def pad(x: Tensor, padding: int) -> Tensor:
    """``x`` [B, C, H, W] zero-padded by ``padding`` pixels on every side (the crop's canvas)."""
    return F.pad(x, (padding,) * 4) if padding else x


def augment(x: Tensor, padding: int, flip: bool, generator: torch.Generator | None = None) -> Tensor:
    """Randomly crop and/or flip each image of ``x`` [B, C, H, W].

    Crop: ``x`` is zero-padded by ``padding`` pixels on every side and each sample keeps an
    H×W window at its own random offset (row and column offsets uniform in [0, 2·padding]).
    Flip: each sample is mirrored left-right with probability 0.5. ``generator`` (on ``x``'s
    device) makes the draws reproducible. ``padding=0, flip=False`` returns ``x`` itself.
    """
    return augment_with_draws(x, padding, flip, generator)[0]


def augment_with_draws(
    x: Tensor, padding: int, flip: bool, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """``(augment(x, ...), crop, flip)``: the augmented batch and the draws of ``draw``."""
    padding = int(padding)
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if padding == 0 and not flip:
        return x, None, None
    crop, mirror = draw(x.shape[0], padding, flip, x.device, generator)
    return view(pad(x, padding), tuple(x.shape[2:]), crop, mirror), crop, mirror
