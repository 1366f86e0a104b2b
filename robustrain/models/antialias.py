"""Anti-aliased downsampling (Zhang 2019): a strided op becomes the stride-1 op, then antialiased_cnns.BlurPool."""

import antialiased_cnns
import torch
import torch.nn.functional as F
from torch import nn

from robustrain.validation import check_int

FILTER_SIZES = range(1, 8)  # antialiased_cnns: 1 = identity, 2 = rect [1,1], 3 = triangle [1,2,1], 5 = binomial ...


def check_filt_size(filt_size: int | None) -> None:
    """Raises ValueError unless filt_size is None (no anti-aliasing) or in 1..7."""
    if filt_size is not None:  # None: no anti-aliasing
        check_int("filt_size", filt_size, FILTER_SIZES[0], FILTER_SIZES[-1], note="(antialias), or None (off)")


class BlurPool(antialiased_cnns.BlurPool):
    """antialiased_cnns.BlurPool that also runs on maps too small for its reflect padding.

    antialiased_cnns pads with reflection, which PyTorch refuses when the pad is not smaller than the map
    (filt_size >= 4 on 2x2 maps, the last stage of a 32x32 ResNet). There we pad by replication instead, the
    closest border rule that exists for every map size; larger maps keep the library's exact behaviour.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reflect = isinstance(self.pad, nn.ReflectionPad2d)
        if reflect and max(self.pad_sizes) >= min(x.shape[-2:]) and self.filt_size > 1:
            padded = F.pad(x, self.pad_sizes, mode="replicate")
            return F.conv2d(padded, self.filt, stride=self.stride, groups=x.shape[1])
        return super().forward(x)


def strided_conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int,
    padding: int,
    bias: bool = True,
    antialias: int | None = None,
) -> nn.Module:
    """A Conv2d with the given stride, or, with `antialias` = filt_size, the stride-1 conv followed by BlurPool."""
    check_filt_size(antialias)
    if stride == 1 or antialias is None:
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=padding, bias=bias),
        BlurPool(out_channels, filt_size=antialias, stride=stride),
    )
