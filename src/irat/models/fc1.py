"""FC1 (BiLAW appendix A.2.1, Table 4): one hidden layer of 1024 units.

``flatten → FC(1024) → ReLU → FC(n_cls)``.
"""

from __future__ import annotations

from torch import nn


def fc1(channels: int, image_size: tuple[int, int], num_classes: int, hidden: int = 1024) -> nn.Module:
    h, w = image_size
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(channels * h * w, hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, num_classes),
    )
