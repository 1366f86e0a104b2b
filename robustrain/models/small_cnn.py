"""SmallCNN: the 28x28 network of Wong et al. 2020 (two stride-2 convs, two dense layers)."""

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from robustrain.core.validation import check_that
from robustrain.models.antialias import resolve_downsample, strided_conv
from robustrain.models.normalize import Normalize, dataset_stats


class SmallCNN(nn.Module):
    """conv k4 s2 p1 -> ReLU -> conv k4 s2 p1 -> ReLU -> fc -> ReLU -> fc, on [0, 1] inputs.

    With the defaults this is fast_adversarial's MNIST net: 1->16->32 channels, 28 -> 14 -> 7, fc 1568 -> 100 -> 10.

    Args:
        num_classes: Output classes.
        in_channels: Input channels.
        image_size: Input height and width in pixels (sizes the first dense layer).
        channels: Output channels of the two strided convs (scale them to study model width).
        hidden: Width of the hidden dense layer.
        normalization: Dataset whose channel statistics form the first layer (see `DATASET_STATS`). The default
            "none" feeds raw [0, 1] pixels, as Wong et al.'s MNIST net does: on MNIST5k, FGSM-RS at eps 0.3 with
            "mnist" statistics (x 3.2 input gain) overfits catastrophically from the start (PGD accuracy ~5%), and
            without them reaches a robust model.
        antialias: BlurPool's filt_size in 1..7 with downsample "blurpool" (default 4); alone (downsample None) it
            means "blurpool", as before `downsample` existed.
        downsample: How the two convs halve the map: "strided" (the default with no antialias), "blurpool" (stride-1
            conv + BlurPool, Zhang 2019) or "flc" (stride-1 conv + FrequencyLowCut pooling, Grabinski et al. 2022;
            the 4 x 4 conv comes before the pooling here, see robustrain.models.antialias.strided_conv).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
        channels: Sequence[int] = (16, 32),
        hidden: int = 100,
        normalization: str = "none",
        antialias: int | None = None,
        downsample: Literal["strided", "blurpool", "flc"] | None = None,
    ) -> None:
        super().__init__()
        two_positive = len(channels) == 2 and min(channels) >= 1
        check_that(two_positive, "channels", tuple(channels), "two positive integers, e.g. (16, 32)")
        check_that(image_size % 4 == 0, "image_size", image_size, "a multiple of 4 (two stride-2 convs)")
        resolve_downsample(downsample, antialias)  # validates both
        mean, std = dataset_stats(normalization)
        c1, c2 = channels
        self.normalize = Normalize(mean, std)
        self.conv1 = strided_conv(in_channels, c1, 4, stride=2, padding=1, antialias=antialias, downsample=downsample)
        self.conv2 = strided_conv(c1, c2, 4, stride=2, padding=1, antialias=antialias, downsample=downsample)
        self.fc1 = nn.Linear(c2 * (image_size // 4) ** 2, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv1(self.normalize(x)))
        x = self.relu(self.conv2(x))
        x = self.relu(self.fc1(x.flatten(1)))  # (B, C, H/4, W/4) -> (B, C*H*W/16)
        return self.fc2(x)
