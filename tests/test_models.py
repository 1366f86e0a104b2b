"""Networks: shapes, [0, 1] input contract, anti-aliasing at 28 and 32 px, local weights only."""

import pytest
import torch
from torch import nn

from robustrain.models import BlurPool, PreActResNet18, SmallCNN, TorchvisionResNet, WideResNet


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


def test_preact_shortcut_variant_changes_what_the_shortcut_sees():
    torch.manual_seed(0)
    raw = PreActResNet18(preact_shortcut=False).eval()
    pre = PreActResNet18(preact_shortcut=True).eval()
    pre.load_state_dict(raw.state_dict())
    x = torch.rand(2, 3, 32, 32)
    assert not torch.allclose(raw(x), pre(x))


@pytest.mark.parametrize("bad", [0, 8, -1])
def test_bad_filter_size_raises(bad):
    with pytest.raises(ValueError, match=f"filt_size={bad}"):
        SmallCNN(antialias=bad)


def test_normalisation_is_the_first_layer():
    net = SmallCNN(normalization="mnist")
    assert net.normalize(torch.full((1, 1, 2, 2), 0.1307)).abs().max() < 1e-6
    with pytest.raises(ValueError, match="normalization='imagenet21k'"):
        SmallCNN(normalization="imagenet21k")


@pytest.mark.parametrize("antialias", [None, 3])
def test_torchvision_resnet_loads_local_weights(tmp_path, antialias):
    src = TorchvisionResNet("resnet18", num_classes=5, antialias=antialias)
    path = tmp_path / "w.pt"
    torch.save(src.net.state_dict(), path)
    dst = TorchvisionResNet("resnet18", num_classes=5, antialias=antialias, weights_path=str(path)).eval()
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(dst(x), src.eval()(x))


def test_weights_path_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        TorchvisionResNet(weights_path=str(tmp_path / "missing.pt"))
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="list.pt is not a weights file"):
        TorchvisionResNet(weights_path=str(tmp_path / "list.pt"))
    (tmp_path / "corrupt.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="corrupt.pt is not a readable weights file") as error:
        TorchvisionResNet(weights_path=str(tmp_path / "corrupt.pt"))
    assert "weights_only=False" not in str(error.value)  # never the advice to unpickle it unsafely
    torch.save(SmallCNN().state_dict(), tmp_path / "other.pt")
    with pytest.raises(ValueError, match="does not match resnet18"):
        TorchvisionResNet(weights_path=str(tmp_path / "other.pt"))
    with pytest.raises(ValueError, match="arch='vgg16'"):
        TorchvisionResNet(arch="vgg16")


@pytest.mark.parametrize("bad", [0, -8, 2.5, True])
def test_bad_preact_resnet_width_raises_naming_it(bad):
    from robustrain.models import PreActResNet18

    with pytest.raises(ValueError, match="width="):
        PreActResNet18(width=bad)
