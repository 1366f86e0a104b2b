"""FrequencyLowCut pooling (Grabinski, Jung, Keuper & Keuper, ECCV 2022): alias-free downsampling by 2 in Fourier space.

The map's 2-D spectrum is cut to its low band (the frequencies a half-size grid can hold) and transformed back:
no frequency folds onto another, so the output has no aliasing at all (robustrain.aliasing measures ~0 on it, up to
the real part taken at the end). The reference (GeJulia/flc_pooling, flc_pooling.py, MIT) is

    low = fftshift(fft2(x, norm="forward"))[..., H//4 : 3H//4, W//4 : 3W//4]   (int(H/4) : int(H/4*3))
    out = ifft2(ifftshift(low), norm="forward").real

`flc_pool` equals it bit for bit when H and W are multiples of 4 (tested). Other sizes, which SmallCNN's 27 x 27 and
13 x 13 maps have, are where it deviates:
- a map of size 2 (mod 4): the reference's crop keeps frequencies -(N + 1)/2 .. (N - 3)/2 of the odd output size N,
  but `ifftshift` then takes the crop's middle bin as frequency 0, which shifts the whole spectrum by one bin (a
  modulation of the output, not a low-pass). Here the crop is centred on frequency 0 for every size: an output axis of
  N = ceil(H / 2) keeps the frequencies -(N // 2) .. N - N // 2 - 1, the aliasing measure's low band;
- an odd map: zero-padded to 2N first (the reference crops int(H/4) .. int(3H/4) of the odd-size spectrum).
"""

import torch
from torch import Tensor, nn


def flc_pool(x: Tensor) -> Tensor:
    """Downsample (..., H, W) -> (..., ceil(H / 2), ceil(W / 2)) by keeping the low half of the spectrum.

    An odd axis is zero-padded at its end to 2 * ceil(H / 2) first, as the aliasing measure pads a stride-1 map
    (robustrain.aliasing.measure): the output's spectrum is then exactly the measure's alias-free reference, up to the
    real part taken at the end. Computed in float32 (complex64) also for half-precision inputs, returned in x's dtype.
    """
    if x.dim() < 2:
        raise ValueError(f"x must have shape (..., H, W), got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    nh, nw = -(-h // 2), -(-w // 2)
    with torch.autocast(device_type=x.device.type, enabled=False):
        f = x.float()
        if (2 * nh, 2 * nw) != (h, w):
            f = torch.nn.functional.pad(f, (0, 2 * nw - w, 0, 2 * nh - h))  # (..., 2*Nh, 2*Nw)
        spectrum = torch.fft.fftshift(torch.fft.fft2(f, norm="forward"), dim=(-2, -1))  # frequency 0 at (Nh, Nw)
        r0, c0 = nh - nh // 2, nw - nw // 2  # the low band: frequencies -(N // 2) .. N - N // 2 - 1
        low = spectrum[..., r0 : r0 + nh, c0 : c0 + nw]  # (..., 2*Nh, 2*Nw) -> (..., Nh, Nw)
        out = torch.fft.ifft2(torch.fft.ifftshift(low, dim=(-2, -1)), norm="forward").real
    return out.to(x.dtype)


class FLCPool(nn.Module):
    """FrequencyLowCut pooling by 2 (see `flc_pool`); no parameters. Its `stride` (2) is what the aliasing measure
    and the layer discovery read."""

    stride = 2

    def forward(self, x: Tensor) -> Tensor:
        return flc_pool(x)
