"""Anti-aliased downsampling (Zhang 2019): a strided op becomes the stride-1 op, then antialiased_cnns.BlurPool."""

import antialiased_cnns
import torch
import torch.nn.functional as F
from torch import nn

from robustrain.core.validation import check_choice, check_int, check_that
from robustrain.models.flc import FLCPool

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


DOWNSAMPLING = ("strided", "blurpool", "flc")
DEFAULT_BLUR_FILTER = 4  # antialiased_cnns' default filt_size


def resolve_downsample(downsample: str | None, antialias: int | None) -> tuple[str, int | None]:
    """(kind, BlurPool filt_size) from a network's `downsample` and `antialias` arguments.

    `downsample` None keeps the older spelling: "blurpool" when `antialias` (a filt_size) is given, else "strided".
    "blurpool" takes `antialias` as its filter size (default 4, as antialiased_cnns); "strided" and "flc" refuse one.
    """
    if downsample is None:
        downsample = "strided" if antialias is None else "blurpool"
    check_choice("downsample", downsample, DOWNSAMPLING)
    check_filt_size(antialias)
    if downsample != "blurpool" and antialias is not None:
        raise ValueError(
            f"antialias={antialias} is BlurPool's filter size, but downsample={downsample!r}: set "
            "downsample: blurpool, or antialias: null"
        )
    return downsample, (antialias or DEFAULT_BLUR_FILTER) if downsample == "blurpool" else None


def strided_conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int,
    padding: int,
    bias: bool = True,
    antialias: int | None = None,
    downsample: str | None = None,
) -> nn.Module:
    """A conv that downsamples by `stride`, in one of three ways (`downsample`, see resolve_downsample):

    - "strided": nn.Conv2d with the stride;
    - "blurpool" (Zhang 2019): the stride-1 conv, then BlurPool(filt_size=antialias);
    - "flc" (Grabinski et al. 2022, stride 2 only): FLCPool, then the stride-1 conv, as GeJulia/flc_pooling's
      PreActResNet does; when the stride-1 conv would change the map's size (an even kernel such as SmallCNN's 4 x 4,
      whose strided output is ceil(H / 2) only with stride 2), the conv comes first and FLCPool after it, so the
      output keeps the strided conv's size.
    """
    kind, filt_size = resolve_downsample(downsample, antialias)
    if stride == 1 or kind == "strided":
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=padding, bias=bias)
    if kind == "blurpool":
        return nn.Sequential(conv, BlurPool(out_channels, filt_size=filt_size, stride=stride))
    check_that(stride == 2, "stride", stride, "2 with downsample='flc' (FLC pooling halves the map)")
    if kernel_size == 2 * padding + 1:  # the stride-1 conv keeps the size: pool first, as the reference
        return nn.Sequential(FLCPool(), conv)
    return nn.Sequential(conv, FLCPool())
