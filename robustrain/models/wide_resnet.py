"""WideResNet-depth-k (Zagoruyko & Komodakis 2016) for 32x32 inputs, the Madry / TRADES layout (28-10, 34-10)."""

import torch
import torch.nn.functional as F
from torch import nn

from robustrain.core.validation import check_in_range, check_positive_int, check_that
from robustrain.models.antialias import check_filt_size, strided_conv
from robustrain.models.normalize import Normalize, dataset_stats


class WideBlock(nn.Module):
    """BN-ReLU-conv3x3(stride)-BN-ReLU-(dropout)-conv3x3 with a 1x1 conv shortcut on the pre-activated input."""

    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float, antialias: int | None) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = strided_conv(in_planes, planes, 3, stride=stride, padding=1, bias=False, antialias=antialias)
        self.bn2 = nn.BatchNorm2d(planes)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = strided_conv(
                in_planes, planes, 1, stride=stride, padding=0, bias=False, antialias=antialias
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + shortcut


class WideResNet(nn.Module):
    """WideResNet with (depth - 4) / 6 blocks per stage, widths 16k-32k-64k, 32 -> 32 -> 16 -> 8.

    Args:
        depth: Total depth, 6n + 4 (28, 34, ...).
        widen_factor: Width multiplier k.
        num_classes: Output classes.
        in_channels: Input channels.
        dropout: Dropout probability inside each block.
        normalization: Dataset whose channel statistics form the first layer.
        antialias: None, or a BlurPool filt_size in 1..7 for every downsampling conv.
    """

    def __init__(
        self,
        depth: int = 34,
        widen_factor: int = 10,
        num_classes: int = 10,
        in_channels: int = 3,
        dropout: float = 0.0,
        normalization: str = "cifar10",
        antialias: int | None = None,
    ) -> None:
        super().__init__()
        check_that(depth >= 10 and (depth - 4) % 6 == 0, "depth", depth, "6n + 4 with n >= 1 (e.g. 28 or 34)")
        check_positive_int("widen_factor", widen_factor)
        check_in_range("dropout", dropout, 0.0, 1.0, high_open=True)
        check_filt_size(antialias)
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        mean, std = dataset_stats(normalization)
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        stages, in_planes = [], widths[0]
        for planes, stride in zip(widths[1:], (1, 2, 2)):
            blocks = [
                WideBlock(in_planes if i == 0 else planes, planes, stride if i == 0 else 1, dropout, antialias)
                for i in range(n)
            ]
            stages.append(nn.Sequential(*blocks))
            in_planes = planes
        self.block1, self.block2, self.block3 = stages
        self.bn = nn.BatchNorm2d(widths[-1])
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.normalize(x))
        out = self.block3(self.block2(self.block1(out)))
        out = F.relu(self.bn(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)  # (B, C, h, w) -> (B, C)
        return self.fc(out)
