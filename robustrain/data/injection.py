"""Injected class features (Ortiz-Jimenez et al., TMLR 2023): x + beta * v(y), to make FGSM training overfit on demand.

"Catastrophic overfitting can be induced with discriminative non-robust features" (code: gortizji/co_features,
data/injection.py): every image of class y, training and test alike, gets beta * v(y) added, where v(y) is the sign
of a low-frequency 2-D DCT basis image, the same in every colour channel (so ||v||_inf = 1). With 10 classes the
carriers are the DCT frequencies (0, 1), (1, 0), (1, 1), (2, 1), (1, 2) for classes 0-4 and their negatives for
classes 5-9 (`create_linf_carrier`); with another number of classes, the first `num_classes` frequencies of the
zig-zag scan after the constant one (`create_general_linf_carrier`). FGSM training then overfits catastrophically
at radii where the clean data does not (e.g. beta = 4/255 at eps = 6/255 on CIFAR-10).

The injected images are not clipped to [0, 1] (as in co_features): they lie in [-beta, 1 + beta], which is the
range `input_range` reports and the attacks keep their adversarial images in (see ImageDataModule.input_range).
"""

import math

import torch
from torch import Tensor
from torch.utils.data import Dataset

from robustrain.core.validation import check_choice, check_in_range, check_positive_int

CARRIERS = ("dct",)
# (vertical, horizontal) DCT frequency of the carriers of classes 0-4 (Ortiz-Jimenez et al.'s create_linf_carrier)
LOW_FREQUENCIES = ((0, 1), (1, 0), (1, 1), (2, 1), (1, 2))


def dct_basis(height: int, width: int, frequency: tuple[int, int]) -> Tensor:
    """The 2-D DCT-II basis image of a (vertical, horizontal) frequency: cos(pi (2m+1) k / 2H) cos(pi (2n+1) l / 2W).

    Returns:
        (height, width) float64; row m, column n. Its sign is what idct_2d of a one-hot coefficient gives.
    """
    check_positive_int("height", height)
    check_positive_int("width", width)
    vertical, horizontal = frequency
    rows = torch.cos(math.pi * (2 * torch.arange(height, dtype=torch.float64) + 1) * vertical / (2 * height))
    cols = torch.cos(math.pi * (2 * torch.arange(width, dtype=torch.float64) + 1) * horizontal / (2 * width))
    return torch.outer(rows, cols)  # (H,) x (W,) -> (H, W)


def sign_pattern(basis: Tensor) -> Tensor:
    """The sign of a basis image as +-1 float32; a zero (a node of the cosine, possible at odd sizes) counts as +1."""
    return torch.where(basis < 0, -1.0, 1.0).to(torch.float32)


def zigzag_frequencies(count: int, height: int, width: int) -> list[tuple[int, int]]:
    """The first `count` (vertical, horizontal) frequencies of the JPEG zig-zag scan after the constant one (0, 0),
    in co_features' order (`generate_zigzag_indices`)."""
    frequencies = []
    for total in range(1, height + width - 1):
        diagonal = [(i, total - i) for i in range(height) if 0 <= total - i < width]
        # even diagonals run from the bottom-left up (co_features inserts them at the front), odd ones top-down
        frequencies.extend(reversed(diagonal) if total % 2 == 0 else diagonal)
    if count > len(frequencies):
        raise ValueError(f"num_classes={count} needs more than the {len(frequencies)} non-constant DCT frequencies")
    return frequencies[:count]


def dct_carriers(num_classes: int, height: int, width: int) -> Tensor:
    """Ortiz-Jimenez et al.'s carriers v(0..num_classes-1), each +-1 everywhere.

    Returns:
        (num_classes, height, width) float32: 10 classes -> the 5 low frequencies and their negatives; otherwise the
        first num_classes zig-zag frequencies.
    """
    check_positive_int("num_classes", num_classes)
    if num_classes == 10:
        first = torch.stack([sign_pattern(dct_basis(height, width, f)) for f in LOW_FREQUENCIES])
        return torch.cat([first, -first])  # classes 5-9 carry the negatives of classes 0-4
    frequencies = zigzag_frequencies(num_classes, height, width)
    return torch.stack([sign_pattern(dct_basis(height, width, f)) for f in frequencies])


def check_injection(beta: float, carrier: str) -> None:
    """Raises ValueError naming `beta` or `carrier` when it is not valid."""
    check_in_range("inject_beta", beta, 0.0, 1.0, note="(the feature's amplitude in [0, 1] pixel units; 0 = off)")
    check_choice("inject_carrier", carrier, CARRIERS)


def inject(images: Tensor, labels: Tensor, carriers: Tensor, beta: float) -> Tensor:
    """images + beta * carriers[labels], the carrier repeated over the channels; no clipping.

    Args:
        images: (B, C, H, W) or one (C, H, W) image.
        labels: (B,) class indices, or one label.
        carriers: (num_classes, H, W), from dct_carriers.
        beta: Amplitude in [0, 1] pixel units.
    """
    if beta == 0:
        return images
    pattern = carriers.to(images.device)[labels.to(images.device)]  # (B, H, W) or (H, W); images may be on a GPU
    return images + beta * pattern.unsqueeze(-3).to(images.dtype)  # broadcast over the channel axis


class InjectedDataset(Dataset):
    """A dataset of (image, label) whose images get beta * v(label) added after their own transform.

    Args:
        dataset: Yields (image tensor (C, H, W), int label).
        carriers: (num_classes, H, W) from dct_carriers.
        beta: The feature's amplitude.
    """

    def __init__(self, dataset: Dataset, carriers: Tensor, beta: float) -> None:
        self.dataset = dataset
        self.carriers = carriers
        self.beta = beta

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image, label = self.dataset[index]
        if tuple(image.shape[-2:]) != tuple(self.carriers.shape[-2:]):
            raise ValueError(
                f"image {index} has size {tuple(image.shape[-2:])} but the injected carriers were sized "
                f"{tuple(self.carriers.shape[-2:])}; every image of an injected dataset must have the same size"
            )
        return inject(image, torch.as_tensor(label), self.carriers, self.beta), label
