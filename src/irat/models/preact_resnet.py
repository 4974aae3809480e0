"""Pre-activation ResNet-18 (He et al. 2016b), the CIFAR variant.

3×3 stem convolution with 64 channels (no BN/ReLU, no max-pool), four stages of two
pre-activation blocks (64, 128, 256, 512 channels, strides 1, 2, 2, 2), a final BN → ReLU,
global average pooling (adaptive) and one linear layer. Block:
``a = ReLU(BN(x)); y = conv3×3(ReLU(BN(conv3×3(a)))) + shortcut``, where the shortcut is ``x``
or, when the shape changes, a 1×1 conv of ``a``.
"""

from __future__ import annotations

from torch import Tensor, nn

from irat.models._shapes import residual_stages


class PreActBlock(nn.Module):
    """The pre-activation block, shared with the WideResNet (which adds dropout between the two
    convolutions: ``conv3×3(dropout(ReLU(BN(conv3×3(a)))))``)."""

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        a = self.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(a)
        out = self.conv2(self.dropout(self.relu(self.bn2(self.conv1(a)))))
        return out + skip


class PreActResNet(nn.Module):
    def __init__(self, channels: int, num_classes: int, blocks=(2, 2, 2, 2), widths=(64, 128, 256, 512)):
        super().__init__()
        self.stem = nn.Conv2d(channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.stages = residual_stages(PreActBlock, widths[0], widths, blocks, (1, 2, 2, 2))
        self.bn = nn.BatchNorm2d(widths[-1])
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations [B, 512]: the pooled, normalised output of the last stage."""
        return self.pool(self.relu(self.bn(self.stages(self.stem(x))))).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


def preact_resnet18(channels: int, image_size: tuple[int, int], num_classes: int) -> nn.Module:
    return PreActResNet(channels, num_classes)
