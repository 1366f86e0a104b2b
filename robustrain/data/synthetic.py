"""SyntheticImages: seeded images of CIFAR-10's or ImageNet's shape, for throughput benchmarks without any download."""

from typing import Literal

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, default_collate

from robustrain.core.seeding import epoch_seed
from robustrain.core.validation import check_choice, check_int
from robustrain.data.image_datamodule import ImageDataModule

# shape name -> (image shape, classes, default training images, default test images)
SHAPES = {
    "cifar10": ((3, 32, 32), 10, 50000, 10000),
    "imagenet": ((3, 224, 224), 1000, 2560, 512),  # 150 kB an image as uint8: 460 MB for the defaults
}
PATTERN_CELLS = 4  # a class pattern is 4 x 4 random cells a channel, upsampled: low-frequency, class-specific
CHUNK_VALUES = 2**24  # float values generated at a time (64 MB), whatever the image size


def class_cells(num_classes: int, channels: int, generator: torch.Generator) -> torch.Tensor:
    """Each class's pattern as (num_classes, C, 4, 4) random cells in [0, 1], upsampled to the image size where used
    (`class_patterns`): kept small, as 1000 ImageNet-sized patterns would take 600 MB."""
    return torch.rand(num_classes, channels, PATTERN_CELLS, PATTERN_CELLS, generator=generator)


def class_patterns(cells: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The smooth patterns of `cells` (K, C, 4, 4) at `size`: (K, C, H, W) in [0, 1], bilinearly upsampled."""
    return F.interpolate(cells, size=size, mode="bilinear", align_corners=False)


def synthetic_images(
    n: int, num_classes: int, shape: tuple[int, int, int], seed: int, split: int = 0, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """n seeded images as uint8 (n, C, H, W) and their int64 labels (balanced, in a seeded order), on `device`.

    An image is 0.6 x its class's pattern + 0.4 x uniform pixel noise, so the classes can be learned (a nearest
    class-mean rule separates them) while no two images are alike. The patterns depend on `seed` alone, the images
    and labels on (`seed`, `split`): splits share the classes and not their images. They are drawn by CPU generators
    and then moved to `device`, so that a seed gives the same images on every device (CUDA's generators draw other
    numbers), and a run resumed on another device trains on the same data.
    """
    channels, height, width = shape
    cells = class_cells(num_classes, channels, torch.Generator().manual_seed(seed))
    generator = torch.Generator().manual_seed(epoch_seed(seed, split, stream="data"))
    labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=generator)]
    images = torch.empty(n, *shape, dtype=torch.uint8)
    chunk = max(1, CHUNK_VALUES // (channels * height * width))
    for start in range(0, n, chunk):
        classes = labels[start : start + chunk]
        noise = torch.rand(len(classes), *shape, generator=generator)
        mixed = 0.6 * class_patterns(cells[classes], (height, width)) + 0.4 * noise
        images[start : start + len(classes)] = (255 * mixed).round_().to(torch.uint8)
    return images.to(device), labels.to(device)


class SyntheticDataset(Dataset):
    """uint8 images served as float [0, 1]; `__getitems__` serves a whole batch with one indexing operation (a
    DataLoader calls it for each batch, and a Subset passes it on), which keeps images held on a GPU there."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index].float().div_(255), self.labels[index]

    def __getitems__(self, indices: list[int]) -> "Batch":
        index = torch.as_tensor(indices, device=self.images.device)
        return Batch((self.images[index].float().div_(255), self.labels[index]))


class Batch(tuple):
    """(images, labels) already batched by `SyntheticDataset.__getitems__`; `collate` passes it through."""


def collate(samples):
    """A DataLoader's collate_fn: a Batch as the (images, labels) it holds, per-image samples as torch stacks them."""
    return tuple(samples) if isinstance(samples, Batch) else default_collate(samples)


class SyntheticImages(ImageDataModule):
    """Seeded synthetic images of CIFAR-10's (3 x 32 x 32, 10 classes) or ImageNet's (3 x 224 x 224, 1000 classes)
    shape, made in memory at setup: for throughput benchmarks (`benchmarks.framework --recipe cifar10`,
    `benchmarks.run_all`) and trial runs on machines without the data. Nothing is downloaded or read.

    Each class has a smooth random pattern and an image is its pattern plus pixel noise (`synthetic_images`), so
    training learns something and its loss falls as on real data, but accuracies say nothing about real images.
    No augmentation is applied (`augment` is accepted and ignored).

    Args:
        shape: "cifar10" or "imagenet".
        train_size: Training images, the validation split included; None: 50000 (cifar10), 2560 (imagenet).
        test_size: Test images; None: 10000 (cifar10), 512 (imagenet).
        on_device: Keep the images on the trainer's device: batches are indexed on the GPU, with no host-to-device
            copy and no DataLoader workers (num_workers must be 0). The images are the same either way (drawn on the
            host, then moved). On a CPU trainer, as off.
        seed: Seed of the images, the validation split and the probe sets.
        Others: as ImageDataModule.
    """

    def __init__(
        self,
        shape: Literal["cifar10", "imagenet"] = "cifar10",
        train_size: int | None = None,
        test_size: int | None = None,
        on_device: bool = False,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        val_size: int = 1000,
        augment: bool = False,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        seed: int = 0,
        inject_beta: float = 0.0,
        inject_carrier: Literal["dct"] = "dct",
    ) -> None:
        super().__init__(
            batch_size, eval_batch_size, val_size, augment, num_workers, pin_memory, seed, inject_beta, inject_carrier
        )
        check_choice("shape", shape, sorted(SHAPES))
        self.image_shape, self.num_classes, default_train, default_test = SHAPES[shape]
        self.shape = shape
        self.train_size = default_train if train_size is None else train_size
        self.test_size = default_test if test_size is None else test_size
        check_int("train_size", self.train_size, 2, note="(synthetic training images, the validation split included)")
        check_int("test_size", self.test_size, 1, note="(synthetic test images)")
        if on_device and num_workers:
            raise ValueError(
                f"num_workers={num_workers} is not valid with on_device=true: images kept on the GPU are indexed in "
                "the main process; use num_workers: 0, or on_device: false to generate them on the host"
            )
        self.on_device = on_device
        self._check_val_size(self.train_size)

    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        if self.on_device and trainer is not None:
            return trainer.strategy.root_device
        return torch.device("cpu")

    def _build(self) -> tuple[Dataset, Dataset, Dataset]:
        device = self._device()
        shape, classes, seed = self.image_shape, self.num_classes, self.seed
        train = SyntheticDataset(*synthetic_images(self.train_size, classes, shape, seed, split=0, device=device))
        test = SyntheticDataset(*synthetic_images(self.test_size, classes, shape, seed, split=1, device=device))
        return train, train, test

    def _pinned(self) -> bool:
        return False if self._device().type != "cpu" else super()._pinned()  # only host memory can be pinned

    def _loader(self, dataset: Dataset, batch_size: int, **kwargs):
        return super()._loader(dataset, batch_size, collate_fn=collate, **kwargs)
