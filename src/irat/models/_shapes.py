"""Shape helpers shared by the architectures: sizes come from the dataset spec, never hard-coded."""

from __future__ import annotations

from torch import nn


def hw(image_size) -> tuple[int, int]:
    """``image_size`` as ``(H, W)``; an int means a square image."""
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = image_size
    return int(h), int(w)


def conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a convolution or pooling along one axis."""
    return (size + 2 * padding - kernel) // stride + 1


def residual_stages(block, c_in: int, widths, depths, strides, **kw) -> nn.Sequential:
    """Stages of residual ``block(c_in, c_out, stride, **kw)``: stage i has ``depths[i]`` blocks of
    width ``widths[i]``; its first block takes the stride ``strides[i]`` (and the width change)."""
    stages = []
    for c, n, s in zip(widths, depths, strides):
        stages.append(nn.Sequential(*[block(c if j else c_in, c, 1 if j else s, **kw) for j in range(n)]))
        c_in = c
    return nn.Sequential(*stages)
