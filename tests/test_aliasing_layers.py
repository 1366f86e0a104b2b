"""Tests of finding, re-running at stride 1 and hooking the downsampling layers of a model."""

import pytest
import torch
import torchvision
from antialiased_cnns.blurpool import BlurPool
from torch import nn

from robustrain.aliasing.layers import (
    capture_aliasing,
    find_downsampling_layers,
    group_layers,
    layer_stride,
    measure_model_aliasing,
    stride_one_output,
)
from robustrain.aliasing.measure import aliasing_measure
from robustrain.core.train_eval_modes import eval_mode

RESNET18_DOWNSAMPLING = [
    "conv1",
    "maxpool",
    "layer2.0.conv1",
    "layer2.0.downsample.0",
    "layer3.0.conv1",
    "layer3.0.downsample.0",
    "layer4.0.conv1",
    "layer4.0.downsample.0",
]


def _assert_stride_one_subsamples_to_output(module: nn.Module, x: torch.Tensor) -> None:
    sh, sw = layer_stride(module)
    expected = module(x)
    torch.testing.assert_close(stride_one_output(module, x)[..., ::sh, ::sw], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(3, 4, 3, stride=2, padding=1),
        nn.Conv2d(3, 4, 3, stride=3, padding=1),
        nn.Conv2d(3, 4, (3, 5), stride=(2, 3), padding=(1, 2), dilation=(1, 2), bias=False),
        nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=2, padding_mode="reflect"),
        nn.Conv2d(3, 6, 1, stride=2),
    ],
)
@pytest.mark.parametrize("size", [(9, 9), (10, 13)])
def test_conv_stride_one_output_subsamples_to_module_output(conv: nn.Conv2d, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    _assert_stride_one_subsamples_to_output(conv.double(), torch.randn(2, conv.in_channels, *size, dtype=torch.float64))


@pytest.mark.parametrize(
    "pool",
    [
        nn.MaxPool2d(2),
        nn.MaxPool2d(3, stride=2, padding=1),
        nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
        nn.MaxPool2d((3, 2), stride=(3, 2), dilation=2, ceil_mode=True),
        nn.AvgPool2d(2),
        nn.AvgPool2d(3, stride=2, padding=1),
        nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False, ceil_mode=True),
        nn.AvgPool2d(3, stride=3, padding=1, ceil_mode=True),
        nn.AvgPool2d(2, stride=2, divisor_override=3),
    ],
)
@pytest.mark.parametrize("size", [(8, 8), (9, 11)])
def test_pool_stride_one_output_subsamples_to_module_output(pool: nn.Module, size: tuple[int, int]) -> None:
    torch.manual_seed(1)
    _assert_stride_one_subsamples_to_output(pool, torch.randn(2, 3, *size, dtype=torch.float64))


@pytest.mark.parametrize("filt_size", range(1, 8))
@pytest.mark.parametrize("stride", [2, 3])
def test_blurpool_stride_one_output_subsamples_to_module_output(filt_size: int, stride: int) -> None:
    torch.manual_seed(2)
    blur = BlurPool(3, filt_size=filt_size, stride=stride).double()
    _assert_stride_one_subsamples_to_output(blur, torch.randn(2, 3, 9, 10, dtype=torch.float64))


class _SmallMapBlurPool(BlurPool):
    """A BlurPool subclass with its own forward, like robustrain.models.BlurPool: replicate pad on tiny maps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if max(self.pad_sizes) >= min(x.shape[-2:]):
            padded = nn.functional.pad(x, self.pad_sizes, mode="replicate")
            return nn.functional.conv2d(padded, self.filt, stride=self.stride, groups=x.shape[1])
        return super().forward(x)


@pytest.mark.parametrize("size", [(2, 2), (3, 2), (9, 10)])
def test_blurpool_subclass_is_found_and_rerun_through_its_own_forward(size: tuple[int, int]) -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), _SmallMapBlurPool(3, filt_size=4)).double()
    assert list(find_downsampling_layers(model)) == ["1"]
    _assert_stride_one_subsamples_to_output(model[1], torch.randn(2, 3, *size, dtype=torch.float64))
    assert model[1].stride == 2 and model[1].filt.dtype == torch.float64


def test_finds_torchvision_resnet18_downsampling_layers() -> None:
    assert list(find_downsampling_layers(torchvision.models.resnet18(weights=None))) == RESNET18_DOWNSAMPLING


def test_blurpool_after_stride_one_maxpool_is_the_downsampling_layer() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2, stride=1), BlurPool(4, filt_size=3))
    assert list(find_downsampling_layers(model)) == ["2"]


def test_conv_subclass_with_its_own_forward_is_not_found() -> None:
    class Scaled(nn.Conv2d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(x)

    model = nn.Sequential(Scaled(3, 3, 3, stride=2), nn.Conv2d(3, 3, 3, stride=2))
    assert list(find_downsampling_layers(model)) == ["1"]


def _small_net() -> nn.Sequential:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 5, 3, stride=2, padding=1),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(5 * 4 * 4, 2),
    )


def test_captured_measure_equals_measure_of_stride_one_maps() -> None:
    model = _small_net().eval()
    x = torch.randn(6, 3, 16, 16)
    h0 = model[0](x)
    expected_first = aliasing_measure(stride_one_output(model[0], x), 2).mean().item()
    expected_second = aliasing_measure(stride_one_output(model[3], model[2](model[1](h0))), 2).mean().item()
    with capture_aliasing(model) as recorder:
        model(x[:4])
        model(x[4:])
    assert recorder.counts == {"0": 6, "3": 6}
    means = recorder.means()
    assert means["0"] == pytest.approx(expected_first, rel=1e-6)
    assert means["3"] == pytest.approx(expected_second, rel=1e-6)


def test_hooks_are_removed_on_exit_and_after_an_exception() -> None:
    model = _small_net()
    with capture_aliasing(model):
        assert len(model[0]._forward_hooks) == 1 and len(model[3]._forward_hooks) == 1
    with pytest.raises(RuntimeError, match="boom"):
        with capture_aliasing(model, ["3"]):
            raise RuntimeError("boom")
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_measure_model_aliasing_stops_after_last_layer_and_restores_modes() -> None:
    model = _small_net()
    model.train()
    model[4].eval()  # a mixed state that must come back exactly
    flags = [m.training for m in model.modules()]
    reached_linear = []
    model[6].register_forward_hook(lambda *args: reached_linear.append(True))
    values = measure_model_aliasing(model, torch.randn(5, 3, 16, 16), batch_size=2)
    assert list(values) == ["0", "3"] and all(v > 0 for v in values.values())
    assert reached_linear == []
    assert [m.training for m in model.modules()] == flags


def test_measure_model_aliasing_is_deterministic_in_eval_mode_and_independent_of_batch_size() -> None:
    model = _small_net().train()
    x = torch.randn(5, 3, 16, 16)
    a = measure_model_aliasing(model, x, ["3"], batch_size=5)
    b = measure_model_aliasing(model, x, ["3"], batch_size=2)
    assert a["3"] == pytest.approx(b["3"], rel=1e-6)


def _mixed_net() -> nn.Sequential:
    torch.manual_seed(4)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
        BlurPool(4, filt_size=3, stride=2),
        nn.AvgPool2d(2, stride=(1, 2)),
        nn.Flatten(),
    )


def test_probe_equals_hooks_on_the_real_forward_for_convs_pools_and_blurpool() -> None:
    # the probe runs each layer once at stride 1 and feeds its subsampled map on; the hooks see the real outputs
    model = _mixed_net().eval()
    x = torch.randn(6, 3, 29, 31)
    with capture_aliasing(model) as recorder:
        model(x)
    expected = recorder.means()
    probed = measure_model_aliasing(model, x, batch_size=4)
    assert list(probed) == ["0", "2", "3", "4"]
    assert probed == pytest.approx(expected, rel=1e-5)


def test_probe_puts_each_layers_own_forward_back_also_after_an_exception() -> None:
    model = _mixed_net()
    measure_model_aliasing(model, torch.randn(2, 3, 32, 32))
    assert all("forward" not in module.__dict__ for module in model.modules())
    with pytest.raises(RuntimeError):
        measure_model_aliasing(model, torch.randn(2, 5, 32, 32))  # wrong channel count fails inside the probe
    assert all("forward" not in module.__dict__ for module in model.modules())
    torch.testing.assert_close(model[0](torch.ones(1, 3, 8, 8)).shape, torch.Size([1, 4, 4, 4]))


def test_probe_skips_the_layers_after_the_last_monitored_one() -> None:
    model = _mixed_net()
    reached = []
    model[3].register_forward_pre_hook(lambda *args: reached.append(True))
    values = measure_model_aliasing(model, torch.randn(3, 3, 16, 16), ["0", "2"], batch_size=2)
    assert list(values) == ["0", "2"] and reached == []


def test_eval_mode_restores_flags_after_an_exception() -> None:
    model = _small_net().train()
    model[1].eval()
    flags = [m.training for m in model.modules()]
    with pytest.raises(KeyError):
        with eval_mode(model):
            assert not any(m.training for m in model.modules())
            raise KeyError("x")
    assert [m.training for m in model.modules()] == flags


def test_capture_under_bf16_autocast_records_float32_measure() -> None:
    model = _small_net().eval()
    x = torch.randn(2, 3, 16, 16)
    expected = aliasing_measure(stride_one_output(model[0], x), 2).mean().item()
    with capture_aliasing(model, ["0"]) as recorder, torch.autocast("cpu", dtype=torch.bfloat16):
        model(x)
    assert recorder.sums["0"].dtype == torch.float64
    assert recorder.means()["0"] == pytest.approx(expected, rel=1e-6)


def test_resnet18_layers_grouped_as_in_the_paper() -> None:
    model = torchvision.models.resnet18(weights=None)
    values = measure_model_aliasing(model, torch.rand(2, 3, 64, 64), batch_size=2)
    assert list(values) == RESNET18_DOWNSAMPLING
    grouped = group_layers(values, ["layer2", "layer3", "layer4"])
    assert grouped["layer2"] == pytest.approx((values["layer2.0.conv1"] + values["layer2.0.downsample.0"]) / 2)
    assert grouped["layer4"] == pytest.approx((values["layer4.0.conv1"] + values["layer4.0.downsample.0"]) / 2)


def test_group_layers_matches_whole_path_components() -> None:
    values = {"layer1.0.conv": 1.0, "layer10.0.conv": 5.0, "layer1.1.conv": 3.0}
    assert group_layers(values, ["layer1", "layer10"]) == {"layer1": 2.0, "layer10": 5.0}
    with pytest.raises(ValueError, match="matches none of the layers"):
        group_layers(values, ["layer2"])


def test_unknown_layer_name_raises_listing_valid_names() -> None:
    with pytest.raises(ValueError, match=r"\['0', '3'\]"):
        with capture_aliasing(_small_net(), ["1"]):
            pass


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: layer_stride(nn.ReLU()), "module must be one of"),
        (lambda: stride_one_output(nn.Conv2d(1, 1, 3, stride=2), torch.randn(1, 8, 8)), "x must have shape"),
        (lambda: measure_model_aliasing(_small_net(), torch.randn(2, 3, 16, 16), batch_size=0), "batch_size"),
        (lambda: measure_model_aliasing(nn.Sequential(nn.ReLU()), torch.randn(2, 3, 8, 8)), "no downsampling"),
    ],
)
def test_bad_input_raises_value_error_naming_it(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
