"""ImageNet-style ResNets from torchvision, or their anti-aliased versions from antialiased_cnns, with local weights."""

from pathlib import Path

import antialiased_cnns
import torch
import torchvision
from torch import nn

from robustrain.core.validation import check_choice
from robustrain.models.antialias import check_filt_size
from robustrain.models.normalize import Normalize, dataset_stats
from robustrain.runs.checkpoints import read_checkpoint

ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


def load_state_dict_file(weights_path: str | Path) -> dict[str, torch.Tensor]:
    """Loads a state dict saved with torch.save, safely (weights_only=True), never from the network.

    Accepts a plain state dict, a Lightning checkpoint (its "state_dict") or {"state_dict": ...} / {"model": ...}.

    Raises:
        ValueError: The file is missing or holds no state dict of tensors.
    """
    path = Path(weights_path)
    if not path.is_file():
        raise ValueError(f"weights_path={str(path)!r} does not exist; give a local file saved with torch.save")
    obj = read_checkpoint(path, what="weights file (torch.save of a state dict)")
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"weights_path={str(path)!r} is not a state dict (a dict of parameter name -> tensor)")
    return obj


class TorchvisionResNet(nn.Module):
    """A torchvision ResNet (or antialiased_cnns ResNet when `antialias` is set) behind ImageNet normalisation.

    Args:
        arch: One of resnet18, resnet34, resnet50, resnet101, resnet152.
        num_classes: Output classes.
        antialias: None for torchvision's model, or the BlurPool filt_size (1..7) of antialiased_cnns' model.
        weights_path: Optional local state dict for the ResNet itself (keys as in torchvision / antialiased_cnns);
            nothing is ever downloaded.
        normalization: Dataset whose channel statistics form the first layer.
    """

    def __init__(
        self,
        arch: str = "resnet18",
        num_classes: int = 1000,
        antialias: int | None = None,
        weights_path: str | None = None,
        normalization: str = "imagenet",
    ) -> None:
        super().__init__()
        if arch not in ARCHS:
            check_choice("arch", arch, ARCHS)
        check_filt_size(antialias)
        mean, std = dataset_stats(normalization)
        self.normalize = Normalize(mean, std)
        if antialias is None:
            self.net = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
        else:
            self.net = getattr(antialiased_cnns, arch)(pretrained=False, filter_size=antialias, num_classes=num_classes)
        if weights_path is not None:
            state = load_state_dict_file(weights_path)
            state = {k.removeprefix("module.").removeprefix("net."): v for k, v in state.items()}
            try:
                self.net.load_state_dict(state)
            except RuntimeError as err:  # missing / unexpected keys or shape mismatches
                raise ValueError(
                    f"weights_path={weights_path!r} does not match {arch} (antialias={antialias}, "
                    f"num_classes={num_classes}): {str(err)[:500]}"
                ) from err

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))
