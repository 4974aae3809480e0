"""small-CNN (BiLAW appendix A.2.1, Tables 4 and 5).

``BLOCK(64) → BLOCK(128) → BLOCK(196) → FC(256) → ReLU → FC(n_cls)`` with
``BLOCK(c) = Conv(c, 3×3, 1) → BN → ReLU → Conv(c, 3×3, 1) → BN → ReLU → MaxPool(2×2)``.
The appendix gives no padding; we use padding 1 (size-preserving 3×3 convolutions), so each
block halves H and W (28 → 14 → 7 → 3, 32 → 16 → 8 → 4); the flatten size is computed from the
image size.
"""

from __future__ import annotations

from torch import nn

from irat.models.flatten import Flatten

WIDTHS = (64, 128, 196)


def _block(c_in: int, c: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c, 3, stride=1, padding=1),
        nn.BatchNorm2d(c),
        nn.ReLU(inplace=True),
        nn.Conv2d(c, c, 3, stride=1, padding=1),
        nn.BatchNorm2d(c),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


def small_cnn(channels: int, image_size: tuple[int, int], num_classes: int) -> nn.Module:
    h, w = image_size
    layers: list[nn.Module] = []
    c_in = channels
    for c in WIDTHS:
        layers.append(_block(c_in, c))
        c_in, h, w = c, h // 2, w // 2
    if h < 1 or w < 1:
        raise ValueError(f"small-cnn needs images of at least 8×8 pixels, got {image_size}")
    return nn.Sequential(
        *layers,
        Flatten(),  # keeps the gradient's memory format (models/flatten.py)
        nn.Linear(c_in * h * w, 256),
        nn.ReLU(inplace=True),
        nn.Linear(256, num_classes),
    )
