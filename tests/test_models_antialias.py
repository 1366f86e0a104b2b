"""robustrain.models.antialias: every network at every BlurPool filter size, no strided convs left, antialiased_cnns'
results."""

import pytest
import torch
from torch import nn

from robustrain.models import BlurPool, PreActResNet18, SmallCNN, WideResNet


@pytest.mark.parametrize("antialias", [None, 1, 2, 3, 4, 5, 6, 7])
def test_small_cnn_runs_at_28px_with_every_filter_size(antialias):
    assert SmallCNN(antialias=antialias)(torch.rand(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("antialias", [None, 3, 5, 7])
def test_resnets_run_at_32px_with_any_filter_size(antialias):
    x = torch.rand(2, 3, 32, 32)
    assert PreActResNet18(antialias=antialias)(x).shape == (2, 10)
    assert WideResNet(depth=10, widen_factor=1, antialias=antialias)(x).shape == (2, 10)


def test_blurpool_handles_maps_too_small_for_reflect_padding():
    # antialiased_cnns' own BlurPool raises on a 2x2 map with filt_size 4 (reflect pad of 2 on a size-2 axis).
    x = torch.rand(1, 3, 2, 2)
    out = BlurPool(3, filt_size=4)(x)
    assert out.shape == (1, 3, 1, 1)
    # A constant map stays constant through a normalised low-pass filter, whatever the border rule.
    assert torch.allclose(BlurPool(3, filt_size=7)(torch.ones(1, 3, 2, 2)), torch.ones(1, 3, 1, 1))


def test_blurpool_matches_antialiased_cnns_on_large_maps():
    import antialiased_cnns

    x = torch.rand(2, 4, 16, 16)
    assert torch.equal(BlurPool(4, filt_size=5)(x), antialiased_cnns.BlurPool(4, filt_size=5)(x))


def test_antialiased_model_has_no_strided_convs():
    net = PreActResNet18(antialias=3)
    assert not [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d) and m.stride != (1, 1)]
    assert [n for n, m in net.named_modules() if isinstance(m, BlurPool)] == [
        f"layer{i}.0.{part}.1" for i in (2, 3, 4) for part in ("conv1", "shortcut")
    ]


@pytest.mark.parametrize("bad", [0, 8, -1])
def test_bad_filter_size_raises(bad):
    with pytest.raises(ValueError, match=f"filt_size={bad}"):
        SmallCNN(antialias=bad)
