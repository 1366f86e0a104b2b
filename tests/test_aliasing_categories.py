"""Tests of the Ribeiro & Schön spectral categories on tones whose category is known by construction."""

import math

import pytest
import torch

from robustrain.aliasing.categories import CATEGORIES, category_fractions, classify_bins

# 16x16 maps, stride 2 -> 8x8 = 64 output bins per map. A real cosine occupies two bins (+f and -f).
SIZE = 16


def _tone(freq: tuple[int, int], amplitude: float = 1.0) -> torch.Tensor:
    h = torch.arange(SIZE, dtype=torch.float64)[:, None]
    w = torch.arange(SIZE, dtype=torch.float64)[None, :]
    return (amplitude * torch.cos(2 * math.pi * (freq[0] * h + freq[1] * w) / SIZE + 0.4)).float()


def _fractions(*maps: torch.Tensor, threshold_db: float = 20.0) -> dict[str, list[float]]:
    f = torch.stack(maps)[:, None]  # (B, 16, 16) -> (B, 1, 16, 16)
    return {k: v.tolist() for k, v in category_fractions(f, 2, threshold_db).items()}


def test_low_tone_is_non_aliased() -> None:
    expected = {"non_aliased": [2 / 64], "aliased": [0.0], "tangled": [0.0], "no_pass": [62 / 64]}
    assert _fractions(_tone((1, 1))) == expected


def test_high_tone_alone_is_aliased() -> None:
    # (9, 1) folds onto bin (1, 1) from a wrong copy; its mirror (7, 15) onto bin (7, 7), also a wrong copy.
    codes = classify_bins(_tone((9, 1)), 2)
    assert codes[1, 1] == codes[7, 7] == CATEGORIES.index("aliased")
    expected = {"non_aliased": [0.0], "aliased": [2 / 64], "tangled": [0.0], "no_pass": [62 / 64]}
    assert _fractions(_tone((9, 1))) == expected


def test_low_and_high_tones_on_the_same_bin_are_tangled() -> None:
    mixed = _tone((1, 1)) + _tone((9, 1), 0.8)
    assert _fractions(mixed) == {"non_aliased": [0.0], "aliased": [0.0], "tangled": [2 / 64], "no_pass": [62 / 64]}


def test_weak_tone_is_no_pass_until_threshold_reaches_it() -> None:
    # the (2, 0) tone is 40 dB below the peak: no-pass at 20 dB, non-aliased at 60 dB
    mixed = _tone((1, 1)) + _tone((2, 0), 0.01)
    assert _fractions(mixed)["no_pass"] == [62 / 64]
    assert _fractions(mixed, threshold_db=60.0) == {
        "non_aliased": [4 / 64],
        "aliased": [0.0],
        "tangled": [0.0],
        "no_pass": [60 / 64],
    }


def test_fractions_are_per_sample_and_averaged_over_channels() -> None:
    f = torch.stack(
        [
            torch.stack([_tone((1, 1)), _tone((9, 1))]),  # sample 0: channel 0 non-aliased, channel 1 aliased
            torch.stack([_tone((9, 1)) + _tone((1, 1)), torch.zeros(SIZE, SIZE)]),  # sample 1: tangled, all no-pass
        ]
    )  # (B=2, C=2, 16, 16)
    fractions = category_fractions(f, 2)
    torch.testing.assert_close(fractions["non_aliased"], torch.tensor([1 / 64, 0.0]))
    torch.testing.assert_close(fractions["aliased"], torch.tensor([1 / 64, 0.0]))
    torch.testing.assert_close(fractions["tangled"], torch.tensor([0.0, 1 / 64]))
    torch.testing.assert_close(fractions["no_pass"], torch.tensor([62 / 64, 63 / 64]))


@pytest.mark.parametrize(("size", "stride"), [((14, 14), 2), ((7, 9), 3), ((8, 10), (2, 3))])
def test_white_noise_is_mostly_tangled_and_fractions_sum_to_one(
    size: tuple[int, int], stride: int | tuple[int, int]
) -> None:
    # every copy of a white-noise spectrum has about the same magnitude, so most bins get 2+ passing copies
    torch.manual_seed(0)
    fractions = category_fractions(torch.randn(3, 4, *size), stride)
    torch.testing.assert_close(sum(fractions.values()), torch.ones(3))
    assert fractions["tangled"].min() > 0.8


@pytest.mark.parametrize("threshold_db", [0.0, -3.0])
def test_non_positive_threshold_raises(threshold_db: float) -> None:
    with pytest.raises(ValueError, match=r"threshold_db=.* is not valid: it must be a finite number > 0 \(dB\)"):
        category_fractions(torch.randn(1, 1, 8, 8), 2, threshold_db)


def test_non_4d_input_raises() -> None:
    with pytest.raises(ValueError, match="f_s1 must have shape"):
        category_fractions(torch.randn(8, 8), 2)
