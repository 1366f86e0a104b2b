"""Ribeiro & Schön (ICASSP 2021) spectral categories of the output bins of a downsampling layer.

The stride-1 spectrum is folded into its s^2 copies (measure.folded_spectrum). A copy "passes" when its magnitude
is above the feature map's peak magnitude (over all copies and bins) minus threshold_db. Each output bin is then:
- non_aliased: only the correct (low-band) copy passes;
- aliased: exactly one copy passes and it is a wrong one;
- tangled: two or more copies pass (aliased-tangled);
- no_pass: no copy passes.
Differences from their code: the four categories are exclusive and exhaustive (theirs counts aliased bins as
no-pass too), the copies are compared on one scale (their threshold comes from the peak of the folded output
spectrum while the compared copies are unscaled), and sizes that are not multiples of the stride are zero-padded
as in measure.py.
"""

import torch
from torch import Tensor

from robustrain.aliasing.measure import Stride, folded_spectrum, low_band_mask
from robustrain.core.validation import check_in_range

CATEGORIES = ("non_aliased", "aliased", "tangled", "no_pass")


def classify_bins(f_s1: Tensor, stride: Stride, threshold_db: float = 20.0) -> Tensor:
    """Category of every output frequency bin of every feature map.

    Args:
        f_s1: Stride-1 feature maps, shape (..., H1, W1), any real float dtype; computed in float32.
        stride: The layer's stride, an int or (sh, sw).
        threshold_db: How far below each feature map's peak magnitude a copy still passes, in dB (> 0).

    Returns:
        int64 tensor of shape (..., ceil(H1 / sh), ceil(W1 / sw)) holding indices into CATEGORIES.
    """
    check_in_range("threshold_db", threshold_db, 0.0, low_open=True, note="(dB)")
    magnitude = folded_spectrum(f_s1, stride).abs()  # (..., sh, sw, Nh, Nw)
    peak = magnitude.amax(dim=(-4, -3, -2, -1), keepdim=True)  # (..., 1, 1, 1, 1)
    passes = magnitude > peak * 10 ** (-threshold_db / 20)
    n_pass = passes.sum(dim=(-4, -3))  # (..., Nh, Nw)
    correct = (passes & low_band_mask(magnitude.shape[-2:], stride, device=passes.device)).any(dim=(-4, -3))
    codes = torch.full_like(n_pass, CATEGORIES.index("no_pass"))
    codes[(n_pass == 1) & correct] = CATEGORIES.index("non_aliased")
    codes[(n_pass == 1) & ~correct] = CATEGORIES.index("aliased")
    codes[n_pass >= 2] = CATEGORIES.index("tangled")
    return codes


def category_fractions(f_s1: Tensor, stride: Stride, threshold_db: float = 20.0) -> dict[str, Tensor]:
    """Per-sample fraction of output bins in each category, over all channels and bins.

    Per-sample values let callers split correctly and incorrectly classified images before averaging.

    Args:
        f_s1: Stride-1 feature maps, shape (B, C, H1, W1), any real float dtype.
        stride: The layer's stride, an int or (sh, sw).
        threshold_db: How far below each feature map's peak magnitude a copy still passes, in dB (> 0).

    Returns:
        Category name (CATEGORIES) -> float32 tensor of shape (B,); the four fractions sum to 1 per sample.
    """
    if f_s1.dim() != 4:
        raise ValueError(f"f_s1 must have shape (B, C, H1, W1), got shape {tuple(f_s1.shape)}")
    codes = classify_bins(f_s1, stride, threshold_db).flatten(1)  # (B, C, Nh, Nw) -> (B, C*Nh*Nw)
    return {name: (codes == i).float().mean(dim=1) for i, name in enumerate(CATEGORIES)}
