"""Wide ResNet WRN-D-W (Zagoruyko & Komodakis 2016), the variant of the TRADES/MART/GAIRAT code.

``n`` pre-activation blocks per group, with the depth counted two ways:
* ``D = 6n + 4`` (Zagoruyko's count): WRN-28-10 has n = 4, WRN-34-10 has n = 5;
* ``D = 6n + 2`` (Madry et al.'s count: stem conv + 6n block convs + linear; used by the
  GAIRAT/MAIL code and BiLAW): WRN-32-10 has n = 5, i.e. it is the same network as WRN-34-10
  (METHODS.md §5.2: "Madry-style WideResNet with depth 32").
The two residues never collide, so ``wrn-D-W`` is unambiguous; any other depth is an error.
Group widths ``16·W, 32·W, 64·W`` with strides 1, 2, 2 after a 3×3 stem convolution with 16
channels; then BN → ReLU → global average pooling (adaptive) → linear. Block:
``a = ReLU(BN(x)); y = conv3×3(dropout(ReLU(BN(conv3×3(a))))) + shortcut`` where the shortcut
is ``x``, or a 1×1 conv of ``a`` when the width or stride changes.
Convolutions use He (fan-out) initialisation, BN weight 1 / bias 0, linear bias 0.
"""

from __future__ import annotations

import re

from torch import Tensor, nn

from irat.models._shapes import residual_stages
from irat.models.preact_resnet import PreActBlock

_NAME = re.compile(r"wrn-(\d+)-(\d+)")


def parse_wrn(name: str) -> tuple[int, int] | None:
    """``"wrn-34-10" → (5, 10)``: (blocks per group n, widen factor W); None when ``name`` does
    not have the form ``wrn-D-W``; ValueError when it does but D is neither 6n + 4 nor 6n + 2
    (n ≥ 1), or W < 1."""
    m = _NAME.fullmatch(name)
    if m is None:
        return None
    depth, widen = int(m.group(1)), int(m.group(2))
    if depth >= 10 and (depth - 4) % 6 == 0:
        n = (depth - 4) // 6
    elif depth >= 8 and (depth - 2) % 6 == 0:
        n = (depth - 2) // 6
    else:
        raise ValueError(
            f"{name!r}: a WideResNet depth D needs (D - 4) % 6 == 0 (e.g. wrn-28-10, wrn-34-10) or, in "
            f"Madry's count, (D - 2) % 6 == 0 (wrn-32-10); got D = {depth}"
        )
    if widen < 1:
        raise ValueError(f"{name!r}: the widen factor must be >= 1")
    return n, widen


class WideResNet(nn.Module):
    def __init__(self, channels: int, num_classes: int, blocks: int, widen: int, dropout: float = 0.0):
        super().__init__()
        n = blocks
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.stem = nn.Conv2d(channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.groups = residual_stages(
            PreActBlock, widths[0], widths[1:], (n, n, n), (1, 2, 2), dropout=dropout
        )
        self.bn = nn.BatchNorm2d(widths[-1])
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations [B, 64·widen]: the pooled, normalised output of the last group."""
        return self.pool(self.relu(self.bn(self.groups(self.stem(x))))).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


def wide_resnet(
    channels: int,
    image_size: tuple[int, int],
    num_classes: int,
    *,
    blocks: int,
    widen: int,
    dropout: float = 0.0,
) -> nn.Module:
    """``blocks`` per group (see ``parse_wrn``), widen factor ``widen``, dropout inside blocks."""
    return WideResNet(channels, num_classes, blocks, widen, dropout)
