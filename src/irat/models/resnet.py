"""ResNet-18 for small images (He et al. 2016, the CIFAR variant used by the seeds' code).

3×3 stem convolution with 64 channels and no max-pool, four stages of two ``BasicBlock``s
(64, 128, 256, 512 channels, strides 1, 2, 2, 2), global average pooling (adaptive, so 28×28
grey-scale inputs work too) and one linear layer. Block:
``y = ReLU(BN(conv3×3(ReLU(BN(conv3×3(x))))) + shortcut(x))`` with a 1×1 conv + BN shortcut when
the shape changes.
"""

from __future__ import annotations

from torch import Tensor, nn

from irat.models._shapes import residual_stages


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, channels: int, num_classes: int, blocks=(2, 2, 2, 2), widths=(64, 128, 256, 512)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(channels, widths[0], 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        self.stages = residual_stages(BasicBlock, widths[0], widths, blocks, (1, 2, 2, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations [B, 512]: the pooled output of the last stage."""
        return self.pool(self.stages(self.stem(x))).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


def resnet18(channels: int, image_size: tuple[int, int], num_classes: int) -> nn.Module:
    return ResNet(channels, num_classes)
