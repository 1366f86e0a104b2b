"""FrequencyLowCut pooling (Grabinski, Jung, Keuper & Keuper, ECCV 2022): alias-free downsampling by 2 in Fourier space.

The map's 2-D spectrum is cut to its low band (the frequencies a half-size grid can hold) and transformed back:
no frequency folds onto another, so the output has no aliasing at all (robustrain.aliasing measures ~0 on it, up to
the real part taken at the end). The reference (GeJulia/flc_pooling, flc_pooling.py, MIT) is

    low = fftshift(fft2(x, norm="forward"))[..., H//4 : 3H//4, W//4 : 3W//4]   (int(H/4) : int(H/4*3))
    out = ifft2(ifftshift(low), norm="forward").real

Here the output always has ceil(H / 2) x ceil(W / 2) pixels (a stride-2 conv's size) and keeps the frequencies
-(N // 2) .. N - N // 2 - 1 of each axis (the aliasing measure's low band), cut from the unshifted spectrum. That is
the reference's crop, bit for bit, where the reference's crop has N bins centred on frequency 0: sides that are
multiples of 4 (tested) and odd sides of 3 (mod 4), such as SmallCNN's 27 x 27 (tested). Elsewhere it deviates:
- a side of 2 (mod 4), e.g. 14: the reference's crop keeps frequencies -(N + 1)/2 .. (N - 3)/2 of the odd output size N
  but `ifftshift` takes the crop's middle bin as frequency 0, which shifts the spectrum by one bin (a modulation of
  the output, not a low-pass);
- an odd side of 1 (mod 4), e.g. SmallCNN's 13 x 13: the reference keeps (H - 1) / 2 bins, one fewer than a stride-2
  conv's output, so its map no longer fits the next layer; here ceil(H / 2).
"""

import torch
from torch import Tensor, nn


def low_band(size: int, out: int) -> tuple[slice, slice]:
    """The two index ranges of an unshifted spectrum of length `size` that hold the `out` lowest frequencies,
    -(out // 2) .. out - out // 2 - 1 (the aliasing measure's low band): the first and the last bins."""
    return slice(0, out - out // 2), slice(size - out // 2, size)


def crop_low_band(spectrum: Tensor, out: tuple[int, int]) -> Tensor:
    """(..., H, W) unshifted 2-D spectrum -> (..., out_h, out_w): its lowest frequencies, in unshifted order."""
    (r0, r1), (c0, c1) = (low_band(n, m) for n, m in zip(spectrum.shape[-2:], out))
    rows = torch.cat([spectrum[..., r0, :], spectrum[..., r1, :]], dim=-2)  # (..., out_h, W)
    return torch.cat([rows[..., c0], rows[..., c1]], dim=-1)  # (..., out_h, out_w)


def flc_pool(x: Tensor) -> Tensor:
    """Downsample (..., H, W) -> (..., ceil(H / 2), ceil(W / 2)) by keeping the low band of the spectrum.

    With forward-normalised transforms both ways, as the reference: a constant map stays that constant, a cosine the
    output grid can hold stays that cosine. Computed in float32 (complex64) also for half-precision inputs, returned
    in x's dtype.
    """
    if x.dim() < 2:
        raise ValueError(f"x must have shape (..., H, W), got shape {tuple(x.shape)}")
    out = tuple(-(-n // 2) for n in x.shape[-2:])
    with torch.autocast(device_type=x.device.type, enabled=False):
        low = crop_low_band(torch.fft.fft2(x.float(), norm="forward"), out)  # (..., H, W) -> (..., Nh, Nw)
        pooled = torch.fft.ifft2(low, norm="forward").real
    return pooled.to(x.dtype)


class FLCPool(nn.Module):
    """FrequencyLowCut pooling by 2 (see `flc_pool`); no parameters. Its `stride` (2) is what the aliasing measure
    and the layer discovery read."""

    stride = 2

    def forward(self, x: Tensor) -> Tensor:
        return flc_pool(x)
