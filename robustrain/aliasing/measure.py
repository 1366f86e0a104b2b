"""The aliasing measure of Grabinski, Keuper & Keuper (2022), section 3.1, as pure tensor functions.

A downsampling layer with stride s produces f_s2 = f_s1[..., ::s, ::s], where f_s1 is the same op run at
stride 1. With unnormalised 2-D DFTs, X = fft2(f_s1) and Y = fft2(f_s2), Y is the mean of the s^2 copies of
X folded onto the output grid; the alias-free reference keeps only the copy in the low band (the
frequencies the output grid can represent). Y - reference is the sum of the other (aliased) copies.

Sizes that are not multiples of the stride: f_s1 of size H1 gives an output of size N = ceil(H1 / s). We
zero-pad f_s1 at the bottom/right to s * N (less than s extra rows) before the FFT. The padded map has the
same subsampled values, so the folding identity Y = mean of the s^2 copies of fft2(f_pad) holds exactly and
X is the DTFT of f_s1 sampled on the s * N grid. Cropping f_s1 instead would drop samples that f_s2 contains.

Low band: on an output axis of size N, the frequencies -(N // 2) .. N - N // 2 - 1 (the centre crop of
fftshift; -N/2 .. N/2 - 1 for even N, -(N-1)/2 .. (N-1)/2 for odd N).

All spectra are computed in float32 / complex64, also for bf16/fp16 inputs and inside autocast.
"""

import math

import torch
from torch import Tensor

from robustrain.core.validation import check_int, check_that

Stride = int | tuple[int, int]


def _check_stride(stride: Stride) -> tuple[int, int]:
    pair = (stride, stride) if isinstance(stride, int) else tuple(stride)
    check_that(len(pair) == 2, "stride", stride, "an integer >= 1 or a pair of them")
    for s in pair:
        check_int("stride", s, 1, note=f"(in stride={stride!r})")
    return pair


def _check_map(f_s1: Tensor, strides: tuple[int, int]) -> None:
    if f_s1.dim() < 2:
        raise ValueError(f"f_s1 must have shape (..., H1, W1), got shape {tuple(f_s1.shape)}")
    if f_s1.is_complex():
        raise ValueError(f"f_s1 must be a real feature map, got dtype {f_s1.dtype}")
    h1, w1 = f_s1.shape[-2:]
    if h1 < strides[0] or w1 < strides[1]:
        raise ValueError(
            f"f_s1 spatial size {(h1, w1)} is smaller than stride {strides}; allowed: H1 >= stride, W1 >= stride"
        )


def output_size(size: tuple[int, int], stride: Stride) -> tuple[int, int]:
    """Spatial size of f_s1[..., ::s, ::s] for a stride-1 map of the given size.

    Args:
        size: (H1, W1) of the stride-1 map.
        stride: The layer's stride, an int or (sh, sw).

    Returns:
        (ceil(H1 / sh), ceil(W1 / sw)).
    """
    sh, sw = _check_stride(stride)
    return -(-size[0] // sh), -(-size[1] // sw)


def low_band_mask(size: tuple[int, int], stride: Stride, device: torch.device | None = None) -> Tensor:
    """Which of the s^2 folded copies holds the low-band (alias-free) frequency of each output bin.

    Args:
        size: (Nh, Nw), the output size.
        stride: The layer's stride, an int or (sh, sw).
        device: Device of the returned mask.

    Returns:
        Boolean mask of shape (sh, sw, Nh, Nw), True at exactly one copy per output bin: copy 0 for output
        bins k < N - N // 2 (frequency k), copy s - 1 otherwise (frequency k - N).
    """
    masks = []
    for n, s in zip(size, _check_stride(stride)):
        k = torch.arange(n, device=device)
        copy = torch.where(k < n - n // 2, 0, s - 1)  # (N,)
        masks.append(torch.arange(s, device=device)[:, None] == copy[None, :])  # (s, N)
    # (sh, Nh) x (sw, Nw) -> (sh, sw, Nh, Nw)
    return masks[0][:, None, :, None] & masks[1][None, :, None, :]


def folded_spectrum(f_s1: Tensor, stride: Stride) -> Tensor:
    """The s^2 copies of the stride-1 spectrum that fold onto the output grid, each scaled by 1 / s^2.

    Copy (i, j) at output bin (k, l) is X[k + i * Nh, l + j * Nw] / (sh * sw), with X the unnormalised fft2 of
    f_s1 zero-padded to (sh * Nh, sw * Nw). Summing the copies gives exactly Y = fft2(f_s1[..., ::sh, ::sw]).

    Args:
        f_s1: Stride-1 feature maps, shape (..., H1, W1), any real float dtype.
        stride: The layer's stride, an int or (sh, sw).

    Returns:
        complex64 tensor of shape (..., sh, sw, Nh, Nw) with (Nh, Nw) = output_size((H1, W1), stride).
    """
    sh, sw = _check_stride(stride)
    _check_map(f_s1, (sh, sw))
    h1, w1 = f_s1.shape[-2:]
    nh, nw = output_size((h1, w1), (sh, sw))
    with torch.autocast(device_type=f_s1.device.type, enabled=False):
        f = torch.nn.functional.pad(f_s1.float(), (0, sw * nw - w1, 0, sh * nh - h1))  # (..., sh*Nh, sw*Nw)
        x = torch.fft.fft2(f) / (sh * sw)
    x = x.reshape(*x.shape[:-2], sh, nh, sw, nw)  # (..., sh*Nh, sw*Nw) -> (..., sh, Nh, sw, Nw)
    return x.transpose(-3, -2)  # (..., sh, Nh, sw, Nw) -> (..., sh, sw, Nh, Nw)


def alias_free_spectrum(f_s1: Tensor, stride: Stride) -> Tensor:
    """Alias-free reference spectrum of the strided output: the low band of fft2(f_s1), scaled by 1 / s^2.

    Equivalent to the four corner blocks (centre crop of fftshift) of X / s^2, as in the paper's Fig. 3, and to
    summing folded_spectrum's copies under low_band_mask (tested). It is computed by slicing the corners, which is
    what makes the measure cheap: a masked sum over the s^2 strided copies costs several times the FFT itself.

    Args:
        f_s1: Stride-1 feature maps, shape (..., H1, W1), any real float dtype.
        stride: The layer's stride, an int or (sh, sw).

    Returns:
        complex64 tensor of shape (..., ceil(H1 / sh), ceil(W1 / sw)), on the same (unnormalised) scale as
        fft2(f_s1[..., ::sh, ::sw]).
    """
    sh, sw = _check_stride(stride)
    _check_map(f_s1, (sh, sw))
    h1, w1 = f_s1.shape[-2:]
    nh, nw = output_size((h1, w1), (sh, sw))
    with torch.autocast(device_type=f_s1.device.type, enabled=False):
        f = f_s1.float()
        if (sh * nh, sw * nw) != (h1, w1):
            f = torch.nn.functional.pad(f, (0, sw * nw - w1, 0, sh * nh - h1))  # (..., sh*Nh, sw*Nw)
        x = torch.fft.fft2(f)
    # low band per axis: frequencies 0 .. N - N//2 - 1 (the first rows) and -(N//2) .. -1 (the last N//2 rows)
    ah, aw = nh - nh // 2, nw - nw // 2
    rows = torch.cat([x[..., :ah, :], x[..., sh * nh - nh // 2 :, :]], dim=-2)  # (..., Nh, sw*Nw)
    return torch.cat([rows[..., :aw], rows[..., sw * nw - nw // 2 :]], dim=-1) / (sh * sw)  # (..., Nh, Nw)


def _residual_and_output(f_s1: Tensor, strides: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """(Y - reference, Y) with Y = fft2(f_s1[..., ::sh, ::sw]), both complex64 of shape (..., Nh, Nw)."""
    sh, sw = strides
    reference = alias_free_spectrum(f_s1, (sh, sw))
    with torch.autocast(device_type=f_s1.device.type, enabled=False):
        y = torch.fft.fft2(f_s1[..., ::sh, ::sw].float())
    return y - reference, y


def aliased_residual(f_s1: Tensor, stride: Stride) -> Tensor:
    """Y - reference: the spectrum of the strided output minus its alias-free reference.

    Y is computed directly as fft2(f_s1[..., ::sh, ::sw]); the difference equals the sum of the s^2 - 1 aliased
    copies up to float32 rounding.

    Args:
        f_s1: Stride-1 feature maps, shape (..., H1, W1), any real float dtype.
        stride: The layer's stride, an int or (sh, sw).

    Returns:
        complex64 tensor of shape (..., ceil(H1 / sh), ceil(W1 / sw)).
    """
    return _residual_and_output(f_s1, _check_stride(stride))[0]


def _check_measure_input(f_s1: Tensor, strides: tuple[int, int], f_s2: Tensor | None) -> None:
    if f_s1.dim() != 4:
        raise ValueError(f"f_s1 must have shape (B, C, H1, W1), got shape {tuple(f_s1.shape)}")
    sh, sw = strides
    if f_s2 is not None:
        expected = (*f_s1.shape[:2], *output_size(f_s1.shape[-2:], (sh, sw)))
        if tuple(f_s2.shape) != expected:
            raise ValueError(f"f_s2 must have shape {expected} (f_s1[..., ::{sh}, ::{sw}]), got {tuple(f_s2.shape)}")


def _half_spectrum_sums(f_s1: Tensor, strides: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """(sum over all bins of |Y - reference|, sum of |Y|) per feature map, from real FFTs of the half spectrum.

    Both spectra are those of real maps, so the columns -1 .. -(ceil(Nw / 2) - 1) of the output grid mirror
    columns 1 .. ceil(Nw / 2) - 1: |Y(k, -m)| = |Y(-k, m)|, and the same for the residual, whose reference at
    (-k, -m) is the conjugate of the one at (k, m). The only exception is the Nyquist row of an even Nh: its
    low-band frequency is -Nh/2 for every column, so the mirror of row Nh/2 takes its reference at +Nh/2 instead.
    The Nyquist column of an even Nw (frequency -Nw/2, its own mirror) is read from the conjugate half.

    Args:
        f_s1: (B, C, H1, W1) float32 stride-1 maps.
        strides: (sh, sw).

    Returns:
        Two float32 tensors of shape (B, C).
    """
    sh, sw = strides
    h1, w1 = f_s1.shape[-2:]
    nh, nw = output_size((h1, w1), (sh, sw))
    ph, pw = sh * nh, sw * nw  # the zero-padded stride-1 grid
    ah, aw = nh - nh // 2, nw - nw // 2  # output rows / columns 0 .. a - 1 hold the frequencies 0 .. a - 1
    half = nw // 2 + 1  # columns of the real FFT of the output
    # X = fft2 of the padded map, only at columns 0 .. Nw // 2: rfft along W, then the full FFT along H
    x = torch.fft.rfft(f_s1, n=pw, dim=-1)[..., :half]  # (B, C, H1, half)
    x = torch.fft.fft(x, n=ph, dim=-2)  # (B, C, ph, half)
    # s^2 Y instead of X / s^2: one scaling of the small spectrum; the sums are divided by s^2 at the end
    y = torch.fft.rfft2(f_s1[..., ::sh, ::sw]) * (sh * sw)  # (B, C, Nh, half)
    # |s^2 Y - X| at the low-band rows (0 .. ah - 1 and -(Nh // 2) .. -1) and columns 0 .. aw - 1
    top = (y[..., :ah, :aw] - x[..., :ah, :aw]).abs()  # (B, C, ah, aw)
    bottom = (y[..., ah:, :aw] - x[..., ph - nh // 2 :, :aw]).abs()  # (B, C, Nh // 2, aw)
    # columns 1 .. aw - 1 stand for their mirrors -1 .. -(aw - 1) too
    aliased = sum(part.sum(dim=(-2, -1)) + part[..., 1:].sum(dim=(-2, -1)) for part in (top, bottom))
    if nh % 2 == 0 and aw > 1:  # the mirror of row Nh/2 (frequency -Nh/2) takes its reference at +Nh/2
        mirror = (y[..., nh // 2, 1:aw] - x[..., nh // 2, 1:aw]).abs()  # (B, C, aw - 1)
        aliased = aliased + mirror.sum(dim=-1) - bottom[..., 0, 1:].sum(dim=-1)
    if nw % 2 == 0:  # column -Nw/2 (its own mirror) = the conjugate of column +Nw/2 at the opposite row
        k = torch.arange(nh, device=f_s1.device)
        opposite = torch.where(k < ah, -k, nh - k) % ph  # (Nh,) row index of minus each low-band row frequency
        nyquist = x[..., -1].index_select(-1, opposite).conj()  # (B, C, Nh)
        aliased = aliased + (y[..., -1] - nyquist).abs().sum(dim=-1)
    aliased = aliased / (sh * sw)
    magnitude = y.abs()
    energy = (magnitude.sum(dim=(-2, -1)) + magnitude[..., 1:aw].sum(dim=(-2, -1))) / (sh * sw)
    return aliased, energy


def aliasing_measures(f_s1: Tensor, stride: Stride) -> tuple[Tensor, Tensor]:
    """(absolute, relative) per-sample aliasing of one layer: see aliasing_measure and relative_aliasing_measure.

    The fast path of both: real FFTs (the padded stride-1 map's, only up to the output's Nyquist column, and the
    strided map's), and the half spectrum summed with the mirror weights of real signals. Equal to the full complex
    computation (aliased_residual) up to float32 rounding; tested against it and against a brute-force DFT.

    Returns:
        Two float32 tensors of shape (B,).
    """
    strides = _check_stride(stride)
    _check_map(f_s1, strides)
    _check_measure_input(f_s1, strides, None)
    with torch.autocast(device_type=f_s1.device.type, enabled=False):
        aliased, energy = _half_spectrum_sums(f_s1.float(), strides)  # (B, C) each
    nbins = math.prod(output_size(f_s1.shape[-2:], strides))
    absolute = aliased.mean(dim=-1) / nbins
    total_energy = energy.sum(dim=-1)
    relative = torch.where(total_energy > 0, aliased.sum(dim=-1) / total_energy, torch.zeros_like(total_energy))
    return absolute, relative


def relative_aliasing_measure(f_s1: Tensor, stride: Stride) -> Tensor:
    """Scale-free aliasing: the L1 of the aliased residual as a fraction of the output's spectral L1, per sample.

    relative = sum over maps and bins |Y - reference| / sum over maps and bins |Y| (0 for an all-zero output). The
    paper's measure (aliasing_measure) is an absolute L1 distance, so it grows with the scale of the weights and
    activations; this ratio does not change when a layer's output is multiplied by a constant, so it tracks how
    the *shape* of the spectrum changes during training. It is robustrain's option, not the paper's.

    Args:
        f_s1: Stride-1 feature maps, shape (B, C, H1, W1), any real float dtype; computed in float32.
        stride: The layer's stride, an int or (sh, sw).

    Returns:
        float32 tensor of shape (B,), each value >= 0 (at most 1 + (s^2 - 1) for pathological maps).
    """
    return aliasing_measures(f_s1, stride)[1]


def aliasing_measure(f_s1: Tensor, stride: Stride, f_s2: Tensor | None = None) -> Tensor:
    """Per-sample aliasing measure AM of one downsampling layer (Grabinski et al. 2022, eq. for AM).

    AM = mean over the Nh * Nw output frequency bins of |Y - reference| (complex modulus, unnormalised DFTs as
    in the paper), averaged over the C feature maps of each sample. Averaging per bin is the same as the L1 norm
    of the forward-normalised residual spectrum (fft2(..., norm="forward"), whose coefficients are in the units
    of the feature map). Why this normalisation: an aliased cosine of amplitude a contributes exactly a, and a
    pattern of fixed extent (an edge, a spike) contributes about the same value on a map of any size, so layers with
    different map sizes and inputs of different resolutions stay comparable. (White noise, which fills the whole
    map, grows like sigma * sqrt(Nh * Nw): more map, more aliased content.) The paper's sum over bins is
    Nh * Nw times our value.

    Args:
        f_s1: Stride-1 feature maps, shape (B, C, H1, W1), any real float dtype; computed in float32.
        stride: The layer's stride, an int or (sh, sw).
        f_s2: Optional real strided output (B, C, ceil(H1 / sh), ceil(W1 / sw)). Only its shape is checked: the
            measure uses f_s1[..., ::sh, ::sw], which equals f_s2 for the layers of layers.py.

    Returns:
        float32 tensor of shape (B,). Average over samples (or sum and count across ranks) in the caller.
    """
    strides = _check_stride(stride)
    _check_measure_input(f_s1, strides, f_s2)
    return aliasing_measures(f_s1, strides)[0]


def output_aliasing_measures(f_s1: Tensor, f_s2: Tensor, stride: Stride) -> tuple[Tensor, Tensor]:
    """(absolute, relative) per-sample aliasing of a downsampler whose output is not f_s1 subsampled, such as FLC
    pooling (robustrain.models.flc): |fft2(f_s2) - reference| averaged as in aliasing_measure, and its fraction of
    sum |fft2(f_s2)|.

    The reference is the low band (the output's size, frequencies -(N // 2) .. N - N // 2 - 1) of f_s1's own
    spectrum, on the output's unnormalised scale (times Nh Nw / (H1 W1)): for even sides the alias-free spectrum of
    the strided layers (alias_free_spectrum); for odd sides the low band of the map itself rather than of the map
    zero-padded to 2N, which is the grid an FFT downsampler works on. An ideal low-pass downsampler measures ~0 (FLC
    exactly 0 up to the real part it takes of the unpaired Nyquist row and column of an even output).

    Args:
        f_s1: (B, C, H1, W1) the input of the downsampler (its stride-1 map).
        f_s2: (B, C, ceil(H1 / sh), ceil(W1 / sw)) its output.
        stride: The layer's stride.

    Returns:
        Two float32 tensors of shape (B,).
    """
    strides = _check_stride(stride)
    _check_map(f_s1, strides)
    _check_measure_input(f_s1, strides, f_s2)
    nh, nw = f_s2.shape[-2:]
    h1, w1 = f_s1.shape[-2:]
    with torch.autocast(device_type=f_s1.device.type, enabled=False):
        x = torch.fft.fft2(f_s1.float())  # (B, C, H1, W1)
        y = torch.fft.fft2(f_s2.float())  # (B, C, Nh, Nw)
    rows = torch.cat([x[..., : nh - nh // 2, :], x[..., h1 - nh // 2 :, :]], dim=-2)  # (B, C, Nh, W1)
    reference = torch.cat([rows[..., : nw - nw // 2], rows[..., w1 - nw // 2 :]], dim=-1) * (nh * nw / (h1 * w1))
    residual = (y - reference).abs()  # (B, C, Nh, Nw)
    absolute = residual.mean(dim=(-2, -1)).mean(dim=-1)
    energy = y.abs().sum(dim=(1, 2, 3))
    relative = torch.where(energy > 0, residual.sum(dim=(1, 2, 3)) / energy, torch.zeros_like(energy))
    return absolute, relative
