"""robustrain.models.flc: FrequencyLowCut pooling against GeJulia/flc_pooling's formula, its size, and its aliasing."""

import pytest
import torch

from robustrain.aliasing import find_downsampling_layers, measure_model_aliasing
from robustrain.models import FLCPool, PreActResNet18, SmallCNN, flc_pool


def _reference_flc(x):
    """GeJulia/flc_pooling's FLC_Pooling.forward, verbatim in its arithmetic."""
    low_part = torch.fft.fftshift(torch.fft.fft2(x, norm="forward"))[
        :, :, int(x.size(2) / 4) : int(x.size(2) / 4 * 3), int(x.size(3) / 4) : int(x.size(3) / 4 * 3)
    ]
    return torch.fft.ifft2(torch.fft.ifftshift(low_part), norm="forward").real


@pytest.mark.parametrize("size", [(8, 8), (16, 16), (32, 12), (27, 27), (11, 8)])
def test_flc_pool_equals_the_reference_where_its_crop_is_centred(size):
    # sides that are multiples of 4, and odd sides of 3 (mod 4) such as SmallCNN's 27 x 27
    x = torch.randn(3, 5, *size, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(flc_pool(x), _reference_flc(x), atol=1e-6)
    if size[0] % 4 == 0 and size[1] % 4 == 0:
        assert torch.equal(flc_pool(x), _reference_flc(x))


@pytest.mark.parametrize(("size", "expected"), [(28, 14), (27, 14), (14, 7), (13, 7), (7, 4)])
def test_flc_pool_halves_every_size_as_a_stride_two_conv(size, expected):
    assert flc_pool(torch.randn(2, 3, size, size)).shape == (2, 3, expected, expected)


@pytest.mark.parametrize("size", [28, 27, 14, 13, 7])
def test_flc_pool_keeps_a_constant_map_and_a_cosine_the_output_can_hold(size):
    out = -(-size // 2)
    assert torch.allclose(flc_pool(torch.full((1, 2, size, size), 3.0)), torch.full((1, 2, out, out), 3.0), atol=1e-5)
    # a cosine of one period across the map comes out as one period across the output grid (the reference's crop of
    # a side of 2 (mod 4) shifts it by a bin instead: a complex modulation whose real part is not this cosine)
    n = torch.arange(size, dtype=torch.float32)
    wave = torch.cos(2 * torch.pi * n / size)[None, None, :, None].expand(1, 1, size, size)
    expected = torch.cos(2 * torch.pi * torch.arange(out) / out)[:, None].expand(out, out)
    assert torch.allclose(flc_pool(wave)[0, 0], expected, atol=1e-5)
    if size == 14:
        assert not torch.allclose(_reference_flc(wave)[0, 0], expected, atol=1e-2)


def test_flc_networks_are_found_and_measured_nearly_alias_free(mnist_batch):
    x = mnist_batch[0][:16]
    torch.manual_seed(0)
    strided, flc = SmallCNN(), SmallCNN(downsample="flc")
    layers = find_downsampling_layers(flc)
    assert all(isinstance(m, FLCPool) for m in layers.values()) and list(layers) == ["conv1.1", "conv2.1"]
    flc_values, strided_values = measure_model_aliasing(flc, x), measure_model_aliasing(strided, x)
    # conv2.1 (13 -> 7, odd output): exactly its low band; conv1.1 (27 -> 14, even output): the real part FLC takes
    # folds the unpaired Nyquist row and column onto themselves, the only residual left
    assert flc_values["conv2.1"] < 1e-5
    assert flc_values["conv1.1"] < 0.15 * strided_values["conv1"]
    # a strided conv measured the same way (its output against its stride-1 map's low band) is far from it
    from robustrain.aliasing.layers import stride_one_output
    from robustrain.aliasing.measure import output_aliasing_measures

    conv = strided.conv1
    with torch.no_grad():
        f_s1, f_s2 = stride_one_output(conv, x), conv(x)
    assert output_aliasing_measures(f_s1, f_s2, 2)[0].mean() > 20 * flc_values["conv2.1"] + 0.1


def test_preact_resnet_with_flc_pools_before_each_downsampling_conv():
    net = PreActResNet18(in_channels=1, normalization="mnist", width=4, downsample="flc")
    layers = find_downsampling_layers(net)
    assert sorted(layers) == sorted(f"layer{i}.0.{part}.0" for i in (2, 3, 4) for part in ("conv1", "shortcut"))
    assert net(torch.rand(2, 1, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"downsample": "fft"}, "downsample"), ({"downsample": "flc", "antialias": 3}, "antialias")],
)
def test_networks_refuse_bad_downsampling_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SmallCNN(**kwargs)
    with pytest.raises(ValueError, match=match):
        PreActResNet18(**kwargs)


def test_blurpool_is_spelled_both_ways():
    a, b = SmallCNN(antialias=3), SmallCNN(downsample="blurpool", antialias=3)
    assert [type(m).__name__ for m in a.modules()] == [type(m).__name__ for m in b.modules()]
