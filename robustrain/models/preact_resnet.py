"""PreActResNet18 (He et al. 2016) for 32x32 inputs, as used by Wong et al. 2020 and Rice et al. 2020."""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from robustrain.core.validation import check_int
from robustrain.models.antialias import resolve_downsample, strided_conv
from robustrain.models.normalize import Normalize, dataset_stats


class PreActBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3x3(stride)-BN-ReLU-conv3x3, plus a 1x1 conv shortcut when shapes change.

    Args:
        preact_shortcut: Feed the shortcut conv the pre-activated input relu(bn1(x)) (robust_overfitting) instead of
            the raw block input x (fast_adversarial).
    """

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int,
        preact_shortcut: bool,
        antialias: int | None,
        downsample: str | None = None,
    ) -> None:
        super().__init__()
        self.preact_shortcut = preact_shortcut
        self.bn1 = nn.BatchNorm2d(in_planes)
        down = {"antialias": antialias, "downsample": downsample}
        self.conv1 = strided_conv(in_planes, planes, 3, stride=stride, padding=1, bias=False, **down)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = strided_conv(in_planes, planes, 1, stride=stride, padding=0, bias=False, **down)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        if self.shortcut is None:
            shortcut = x
        else:
            shortcut = self.shortcut(out if self.preact_shortcut else x)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """PreActResNet18: 64-128-256-512 channels, 32 -> 32 -> 16 -> 8 -> 4, global average pool, linear.

    The downsampling layers are `layer2.0`, `layer3.0`, `layer4.0` (main conv `conv1` and shortcut conv `shortcut`);
    Grabinski et al. monitor `layer2` (32 -> 16).

    Args:
        num_classes: Output classes.
        in_channels: Input channels.
        normalization: Dataset whose channel statistics form the first layer.
        preact_shortcut: False (default) = fast_adversarial's block, whose shortcut sees the raw input; True =
            robust_overfitting's, whose shortcut sees relu(bn1(x)).
        antialias: BlurPool's filt_size in 1..7 with downsample "blurpool" (default 4); alone (downsample None) it
            means "blurpool", as before `downsample` existed.
        downsample: How every downsampling conv (main and shortcut) halves the map: "strided" (the default with no
            antialias), "blurpool" (stride-1 conv + BlurPool) or "flc" (FrequencyLowCut pooling, then the stride-1
            conv: GeJulia/flc_pooling's PreActResNet).
        width: Channels of the first stage (64 in the paper); the stages have width x (1, 2, 4, 8). Reduced widths
            (e.g. 16) make the network cheap enough for CPU studies, e.g. on 28 x 28 digits (28 -> 28 -> 14 -> 7 -> 4,
            the global pool takes any size).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        normalization: str = "cifar10",
        preact_shortcut: bool = False,
        antialias: int | None = None,
        width: int = 64,
        downsample: Literal["strided", "blurpool", "flc"] | None = None,
    ) -> None:
        super().__init__()
        resolve_downsample(downsample, antialias)  # validates both
        check_int("width", width, 1, note="(channels of the first stage; the paper: 64)")
        mean, std = dataset_stats(normalization)
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        layers, in_planes = [], width
        for planes, stride in ((width, 1), (2 * width, 2), (4 * width, 2), (8 * width, 2)):
            blocks = [
                PreActBlock(in_planes, planes, stride, preact_shortcut, antialias, downsample),
                PreActBlock(planes, planes, 1, preact_shortcut, antialias, downsample),
            ]
            layers.append(nn.Sequential(*blocks))
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.bn = nn.BatchNorm2d(8 * width)
        self.linear = nn.Linear(8 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.normalize(x))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.relu(self.bn(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)  # (B, 8 * width, h, w) -> (B, 8 * width)
        return self.linear(out)
