"""robustrain.models.torchvision_resnet: local weights only, and errors that name the file."""

import pytest
import torch

from robustrain.models import SmallCNN, TorchvisionResNet


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
