"""Tests of the aliasing measure against analytic signals and a brute-force DFT from the definition."""

import math

import numpy as np
import pytest
import torch

from robustrain.aliasing.measure import (
    _half_spectrum_sums,
    alias_free_spectrum,
    aliased_residual,
    aliasing_measure,
    folded_spectrum,
    low_band_mask,
)


def _cosine(size: tuple[int, int], freq: tuple[int, int], amplitude: float = 1.0, phase: float = 0.0) -> torch.Tensor:
    """amplitude * cos(2 pi (k h / H + l w / W) + phase) on an (H, W) grid, float64."""
    h = torch.arange(size[0], dtype=torch.float64)[:, None]
    w = torch.arange(size[1], dtype=torch.float64)[None, :]
    return amplitude * torch.cos(2 * math.pi * (freq[0] * h / size[0] + freq[1] * w / size[1]) + phase)


def _dft2(f: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Unnormalised 2-D DFT by explicit DFT matrices on a zero-padded (size) grid, float64."""
    h1, w1 = f.shape
    fh = np.exp(-2j * np.pi * np.outer(np.arange(size[0]), np.arange(h1)) / size[0])  # (Mh, H1)
    fw = np.exp(-2j * np.pi * np.outer(np.arange(w1), np.arange(size[1])) / size[1])  # (W1, Mw)
    return fh @ f @ fw


def _brute_force(f: np.ndarray, sh: int, sw: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(Y, reference, AM) of one map straight from the definition, with Python loops over bins and copies."""
    h1, w1 = f.shape
    nh, nw = math.ceil(h1 / sh), math.ceil(w1 / sw)
    x = _dft2(f, (sh * nh, sw * nw))
    y = _dft2(f[::sh, ::sw], (nh, nw))
    folded = np.zeros((nh, nw), dtype=complex)
    reference = np.zeros((nh, nw), dtype=complex)
    for k in range(nh):
        for m in range(nw):
            for i in range(sh):
                for j in range(sw):
                    folded[k, m] += x[k + i * nh, m + j * nw] / (sh * sw)
            # the low-band frequency that lands on bin (k, m): -(N // 2) .. N - N // 2 - 1
            fk = k if k < nh - nh // 2 else k - nh
            fl = m if m < nw - nw // 2 else m - nw
            reference[k, m] = x[fk % (sh * nh), fl % (sw * nw)] / (sh * sw)
    np.testing.assert_allclose(folded, y, atol=1e-9 * np.abs(y).max())
    return y, reference, float(np.abs(y - reference).mean())


@pytest.mark.parametrize(
    ("size", "stride"),
    [((16, 16), 2), ((14, 14), 2), ((7, 7), 2), ((9, 12), 3), ((10, 7), (2, 3)), ((5, 8), 4)],
)
def test_measure_matches_brute_force_from_definition(size: tuple[int, int], stride: int | tuple[int, int]) -> None:
    torch.manual_seed(0)
    f = torch.randn(2, 3, *size)
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    expected = np.zeros((2, 3))
    for b in range(2):
        for c in range(3):
            y, reference, am = _brute_force(f[b, c].double().numpy(), sh, sw)
            np.testing.assert_allclose(alias_free_spectrum(f[b, c], stride).numpy(), reference, atol=2e-5, rtol=0)
            expected[b, c] = am
    np.testing.assert_allclose(aliasing_measure(f, stride).numpy(), expected.mean(axis=1), rtol=1e-5)


@pytest.mark.parametrize(("size", "stride"), [((7, 7), 2), ((7, 11), 3), ((14, 14), 2), ((6, 9), (3, 2))])
def test_residual_equals_sum_of_aliased_copies(size: tuple[int, int], stride: int | tuple[int, int]) -> None:
    torch.manual_seed(1)
    f = torch.randn(2, 4, *size)
    copies = folded_spectrum(f, stride)  # (B, C, sh, sw, Nh, Nw)
    aliased = (copies * ~low_band_mask(copies.shape[-2:], stride)).sum(dim=(-4, -3))
    torch.testing.assert_close(aliased_residual(f, stride), aliased, atol=1e-5, rtol=0)


def test_folded_copies_sum_to_spectrum_of_subsampled_map_when_size_is_not_a_multiple_of_stride() -> None:
    torch.manual_seed(2)
    f = torch.randn(3, 7, 10)
    y = torch.fft.fft2(f[..., ::3, ::3])  # (3, 3, 4)
    torch.testing.assert_close(folded_spectrum(f, 3).sum(dim=(-4, -3)), y, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("size", "stride"), [((32, 32), 2), ((14, 14), 2), ((24, 18), 3)])
def test_band_limited_map_has_zero_aliasing(size: tuple[int, int], stride: int) -> None:
    torch.manual_seed(3)
    nh, nw = size[0] // stride, size[1] // stride
    kh = torch.fft.fftfreq(size[0], 1 / size[0]).abs()[:, None]
    kw = torch.fft.fftfreq(size[1], 1 / size[1]).abs()[None, :]
    band = (kh < nh / 2) & (kw < nw / 2)  # strictly below the output Nyquist on both axes
    spectrum = torch.randn(2, 3, *size, dtype=torch.complex128) * band
    f = torch.fft.ifft2(spectrum).real.float() * size[0] * size[1]
    scale = torch.fft.fft2(f[..., ::stride, ::stride]).abs().mean()
    assert aliasing_measure(f, stride).max() / scale < 1e-6


def test_aliased_cosine_gives_its_amplitude() -> None:
    # 16x16 -> 8x8: frequency (9, 1) is outside the output band -4..3 and folds onto bin (1, 1).
    # Y has two bins of 64 * a / 2, the reference is 0, so AM = (2 * 32 a) / 64 = a per map.
    amplitudes = torch.tensor([[0.5, 2.0], [1.0, 3.0]])
    tone = _cosine((16, 16), (9, 1), phase=0.3).float()
    f = amplitudes[:, :, None, None] * tone  # (B=2, C=2, 16, 16)
    torch.testing.assert_close(aliasing_measure(f, 2), torch.tensor([1.25, 2.0]), atol=1e-6, rtol=1e-6)
    assert alias_free_spectrum(f, 2).abs().max() < 1e-4


def test_in_band_cosine_plus_aliased_cosine_measures_only_the_aliased_one() -> None:
    # 18x18 -> 6x6 (stride 3): (2, -1) is in band -3..2; (7, 0) folds onto bin (1, 0) from copy 1.
    f = (_cosine((18, 18), (2, -1), 5.0) + _cosine((18, 18), (7, 0), 0.25)).float()[None, None]
    torch.testing.assert_close(aliasing_measure(f, 3), torch.tensor([0.25]), atol=1e-5, rtol=0)


def test_measure_is_float32_for_bfloat16_input_and_under_autocast() -> None:
    torch.manual_seed(4)
    f = torch.randn(2, 3, 8, 8).bfloat16()
    expected = aliasing_measure(f.float(), 2)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        measured = aliasing_measure(f, 2)
    assert measured.dtype == torch.float32
    assert alias_free_spectrum(f, 2).dtype == torch.complex64
    torch.testing.assert_close(measured, expected, atol=0, rtol=0)


def test_stride_one_has_zero_aliasing() -> None:
    f = torch.randn(1, 2, 5, 6)
    assert aliasing_measure(f, 1).abs().max() < 1e-6


def test_low_band_mask_picks_one_copy_per_bin() -> None:
    mask = low_band_mask((7, 4), (2, 3))
    assert mask.shape == (2, 3, 7, 4)
    assert torch.equal(mask.sum(dim=(0, 1)), torch.ones(7, 4, dtype=torch.long))
    # odd N = 7: bins 0..3 are frequencies 0..3 (copy 0), bins 4..6 are -3..-1 (last copy)
    assert mask[0, 0, :4, :2].all() and mask[1, 2, 4:, 2:].all()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: aliasing_measure(torch.randn(3, 8, 8), 2), "f_s1 must have shape"),
        (lambda: aliasing_measure(torch.randn(1, 1, 8, 8), 0), "stride=0 is not valid: it must be an integer >= 1"),
        (lambda: alias_free_spectrum(torch.randn(8, 8), (2, 2, 2)), r"stride=\(2, 2, 2\) is not valid: it must be an"),
        (lambda: alias_free_spectrum(torch.randn(2, 8), 3), "smaller than stride"),
        (lambda: aliasing_measure(torch.randn(1, 1, 8, 8), 2, f_s2=torch.randn(1, 1, 3, 4)), "f_s2 must have shape"),
    ],
)
def test_bad_input_raises_value_error_naming_it(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_relative_measure_is_scale_free_and_a_fraction_of_the_output_energy() -> None:
    from robustrain.aliasing import aliasing_measure, aliasing_measures, relative_aliasing_measure

    torch.manual_seed(0)
    f = torch.randn(3, 4, 14, 14)
    absolute, relative = aliasing_measures(f, 2)
    torch.testing.assert_close(absolute, aliasing_measure(f, 2))
    torch.testing.assert_close(relative_aliasing_measure(5.0 * f, 2), relative, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(aliasing_measure(5.0 * f, 2), 5.0 * absolute, rtol=1e-5, atol=1e-6)
    # brute force, per sample: sum over maps and bins of |Y - ref| / sum of |Y|
    for b in range(len(f)):
        parts = [_brute_force(m.double().numpy(), 2, 2) for m in f[b]]
        aliased = sum(np.abs(y - ref).sum() for y, ref, _ in parts)
        energy = sum(np.abs(y).sum() for y, _, _ in parts)
        assert relative[b].item() == pytest.approx(aliased / energy, rel=1e-4)


def test_relative_measure_of_a_band_limited_map_is_zero_and_of_a_zero_map_is_zero() -> None:
    from robustrain.aliasing import relative_aliasing_measure

    n = torch.arange(16.0)
    smooth = torch.cos(2 * math.pi * 2 * n / 16)[None, :] * torch.cos(2 * math.pi * 1 * n / 16)[:, None]
    assert relative_aliasing_measure(smooth[None, None], 2).item() < 1e-6
    assert relative_aliasing_measure(torch.zeros(1, 2, 8, 8), 2).item() == 0.0


@pytest.mark.parametrize(("size", "stride"), [((14, 14), 2), ((7, 7), 2), ((9, 12), 3), ((10, 7), (2, 3))])
def test_sliced_reference_equals_the_masked_sum_of_folded_copies(size, stride) -> None:
    torch.manual_seed(1)
    f = torch.randn(2, 3, *size)
    copies = folded_spectrum(f, stride)
    masked = (copies * low_band_mask(copies.shape[-2:], stride)).sum(dim=(-4, -3))
    torch.testing.assert_close(alias_free_spectrum(f, stride), masked, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("stride", [1, 2, 3, (2, 3), (3, 1), 4])
def test_half_spectrum_sums_equal_the_full_complex_spectra_for_odd_and_even_sizes(stride) -> None:
    # the fast path (real FFTs, mirrored columns, Nyquist row and column) against the full complex residual
    torch.manual_seed(5)
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    for h in range(max(2, sh), 13, 3 if sh > 2 else 1):
        for w in range(max(2, sw), 13):
            f = torch.randn(2, 3, h, w)
            y = torch.fft.fft2(f[..., ::sh, ::sw])
            aliased, energy = _half_spectrum_sums(f, (sh, sw))
            scale = y.abs().sum(dim=(-2, -1))
            expected = aliased_residual(f, stride).abs().sum(dim=(-2, -1))
            torch.testing.assert_close(aliased / scale, expected / scale, atol=2e-6, rtol=0)
            torch.testing.assert_close(energy, scale, atol=0, rtol=2e-6)
