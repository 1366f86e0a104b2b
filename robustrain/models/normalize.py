"""Per-dataset normalisation as a model's first layer: every robustrain model takes images in [0, 1]."""

from collections.abc import Sequence

import torch
from torch import nn

from robustrain.core.validation import check_choice

# Channel statistics of each dataset's training split, (mean, std).
DATASET_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "none": ((0.0,), (1.0,)),
}


def dataset_stats(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Returns (mean, std) of a dataset by name, raising ValueError listing the known names."""
    check_choice("normalization", name, sorted(DATASET_STATS))
    return DATASET_STATS[name]


class Normalize(nn.Module):
    """Subtracts a per-channel mean and divides by a per-channel std, so attacks can work in [0, 1] pixels."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} channels but std has {len(std)}; give one value per channel")
        if any(s <= 0 for s in std):
            raise ValueError(f"std={tuple(std)} must be positive in every channel")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"
