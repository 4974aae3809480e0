"""Shape helpers shared by the architectures: sizes come from the dataset spec, never hard-coded."""

from __future__ import annotations


def hw(image_size) -> tuple[int, int]:
    """``image_size`` as ``(H, W)``; an int means a square image."""
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = image_size
    return int(h), int(w)


def conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a convolution or pooling along one axis."""
    return (size + 2 * padding - kernel) // stride + 1
