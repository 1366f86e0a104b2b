"""torchvision datasets (MNIST, FashionMNIST, CIFAR10, CIFAR100, SVHN) from a local root, downloaded only on request."""

from pathlib import Path
from typing import Literal

import torchvision
import torchvision.transforms as T
from torch.utils.data import Dataset

from robustrain.core.validation import check_choice
from robustrain.data.image_datamodule import ImageDataModule

# name -> (torchvision class, num_classes, image shape, standard training augmentation)
_DATASETS = {
    "mnist": (torchvision.datasets.MNIST, 10, (1, 28, 28), []),
    "fashion_mnist": (torchvision.datasets.FashionMNIST, 10, (1, 28, 28), []),
    "cifar10": (torchvision.datasets.CIFAR10, 10, (3, 32, 32), [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()]),
    "cifar100": (
        torchvision.datasets.CIFAR100,
        100,
        (3, 32, 32),
        [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()],
    ),
    # No flip for SVHN: a mirrored digit is a different (or no) digit.
    "svhn": (torchvision.datasets.SVHN, 10, (3, 32, 32), [T.RandomCrop(32, padding=4)]),
}


def _unverified(cls: type) -> type:
    """`cls` without torchvision's checksum test of its files (CIFAR and SVHN compare md5 sums): for a local copy
    whose files are not the official ones, e.g. a subset written in the same format."""
    overrides: dict = {"_check_integrity": lambda self: True}
    if isinstance(getattr(cls, "meta", None), dict):  # CIFAR checks its metadata file's md5 sum separately
        overrides["meta"] = {**cls.meta, "md5": None}
    return type(f"Unverified{cls.__name__}", (cls,), overrides)


def _split_kwargs(name: str, train: bool) -> dict:
    if name == "svhn":
        return {"split": "train" if train else "test"}
    return {"train": train}


class TorchvisionData(ImageDataModule):
    """A torchvision dataset read from `root`.

    Args:
        name: One of mnist, fashion_mnist, cifar10, cifar100, svhn.
        root: Directory holding (or receiving) the dataset files.
        download: Fetch the files into root when missing (needs internet).
        verify_files: Check the files' md5 sums against the official ones (torchvision's test for CIFAR-10/100 and
            SVHN). False reads a local copy in the same format whose files differ (a subset, a re-encoded copy).
        Others: as ImageDataModule.

    Raises:
        ValueError: Unknown name, or the dataset is not under root and download is False (or the download failed).
    """

    def __init__(
        self,
        name: str = "cifar10",
        root: str = "data",
        download: bool = False,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        val_size: int = 1000,
        augment: bool = True,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        seed: int = 0,
        inject_beta: float = 0.0,
        inject_carrier: Literal["dct"] = "dct",
        verify_files: bool = True,
    ) -> None:
        super().__init__(
            batch_size, eval_batch_size, val_size, augment, num_workers, pin_memory, seed, inject_beta, inject_carrier
        )
        check_choice("name", name, sorted(_DATASETS))
        self.name, self.root, self.download, self.verify_files = name, root, download, verify_files
        cls, self.num_classes, self.image_shape, self._augmentation = _DATASETS[name]
        if not download:
            # Fail now, naming root, rather than after the trainer has started.
            self._check_val_size(len(self._dataset(train=True, transform=None)))

    def _dataset(self, train: bool, transform: T.Compose | None, download: bool = False) -> Dataset:
        cls = _DATASETS[self.name][0]
        if not self.verify_files and hasattr(cls, "_check_integrity"):
            cls = _unverified(cls)
        try:
            return cls(self.root, transform=transform, download=download, **_split_kwargs(self.name, train))
        except (RuntimeError, OSError) as err:
            if download:
                raise ValueError(
                    f"download=True could not fetch {self.name!r} into root={self.root!r} ({err}); without internet, "
                    f"copy the dataset files into that directory and use download=False"
                ) from err
            raise ValueError(
                f"{self.name!r} was not found under root={str(Path(self.root).resolve())!r}; put the torchvision "
                f"dataset files there or set download=True on a machine with internet ({err})"
            ) from err

    def prepare_data(self) -> None:
        if self.download:
            for train in (True, False):
                self._dataset(train, transform=None, download=True)

    def _build(self) -> tuple[Dataset, Dataset, Dataset]:
        plain = T.ToTensor()
        augmented = T.Compose([*self._augmentation, T.ToTensor()]) if self.augment else plain
        return (
            self._dataset(True, augmented),
            self._dataset(True, plain),
            self._dataset(False, plain),
        )
