"""ImageFolder: ImageNet-style `root/train/<class>/*` and `root/val/<class>/*` directories."""

from pathlib import Path

import torchvision
import torchvision.transforms as T
from torch.utils.data import Dataset

from robustrain.data.base import ImageDataModule


class ImageFolder(ImageDataModule):
    """Images from class sub-directories; `val/` is the test set, validation is held out of `train/`.

    Args:
        root: Directory with `train/` and `val/` sub-directories of class folders.
        resize_size: Shorter side after resizing, for evaluation.
        crop_size: Centre crop (evaluation) / random resized crop (training) size in pixels.
        Others: as ImageDataModule.
    """

    def __init__(
        self,
        root: str = "data/imagenet",
        resize_size: int = 256,
        crop_size: int = 224,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        val_size: int = 10000,
        augment: bool = True,
        num_workers: int = 4,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, val_size, augment, num_workers, seed)
        for split in ("train", "val"):
            if not (Path(root) / split).is_dir():
                raise ValueError(
                    f"root={root!r} has no {split}/ directory; expected root/train/<class>/ and root/val/<class>/"
                )
        if not 0 < crop_size <= resize_size:
            raise ValueError(f"crop_size={crop_size} must be in 1..resize_size={resize_size}")
        self.root, self.resize_size, self.crop_size = root, resize_size, crop_size
        self.num_classes = len(torchvision.datasets.folder.find_classes(str(Path(root) / "train"))[0])
        self.image_shape = (3, crop_size, crop_size)

    def _build(self) -> tuple[Dataset, Dataset, Dataset]:
        plain = T.Compose([T.Resize(self.resize_size), T.CenterCrop(self.crop_size), T.ToTensor()])
        augmented = T.Compose([T.RandomResizedCrop(self.crop_size), T.RandomHorizontalFlip(), T.ToTensor()])
        train = str(Path(self.root) / "train")
        return (
            torchvision.datasets.ImageFolder(train, augmented if self.augment else plain),
            torchvision.datasets.ImageFolder(train, plain),
            torchvision.datasets.ImageFolder(str(Path(self.root) / "val"), plain),
        )
