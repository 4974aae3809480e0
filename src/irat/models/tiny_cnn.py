"""tiny-CNN (BiLAW appendix A.2.1, Table 4; the network of Wong & Kolter 2018).

``Conv(16, 4×4, stride 2) → ReLU → Conv(32, 4×4, stride 2) → ReLU → FC(100) → ReLU → FC(n_cls)``.
Padding 1 (Wong & Kolter's choice: 28 → 14 → 7 on MNIST); the flatten size is computed from
the image size.
"""

from __future__ import annotations

from torch import nn

from irat.models._shapes import conv_out
from irat.models.conv import Conv2d
from irat.models.flatten import Flatten


def tiny_cnn(channels: int, image_size: tuple[int, int], num_classes: int) -> nn.Module:
    h, w = image_size
    for _ in range(2):
        h, w = conv_out(h, 4, 2, 1), conv_out(w, 4, 2, 1)
    return nn.Sequential(
        Conv2d(channels, 16, 4, stride=2, padding=1),  # fast input gradient (models/conv.py)
        nn.ReLU(inplace=True),
        nn.Conv2d(16, 32, 4, stride=2, padding=1),
        nn.ReLU(inplace=True),
        Flatten(),  # keeps the gradient's memory format (models/flatten.py)
        nn.Linear(32 * h * w, 100),
        nn.ReLU(inplace=True),
        nn.Linear(100, num_classes),
    )
