"""ImageFolder: ImageNet-style `root/train/<class>/*` and `root/val/<class>/*` directories."""

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torchvision
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import Dataset

from robustrain.core.errors import BadInputError
from robustrain.core.validation import check_int
from robustrain.data.image_datamodule import ImageDataModule


def load_rgb(path: str) -> Image.Image:
    """torchvision's default loader, with the failing file named in the error."""
    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")
    except OSError as error:
        raise OSError(f"image {path} cannot be read: {error}") from error


def unreadable_images(paths: Sequence[str]) -> list[tuple[str, str]]:
    """(path, reason) for every file whose image header PIL cannot read (cheap: the pixels are not decoded)."""
    bad = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image.size  # noqa: B018 - the header is parsed here
        except (OSError, ValueError) as error:
            bad.append((path, str(error)))
    return bad


class ImageFolder(ImageDataModule):
    """Images from class sub-directories; `val/` is the test set, validation is held out of `train/`.

    Args:
        root: Directory with `train/` and `val/` sub-directories of class folders.
        resize_size: Shorter side after resizing, for evaluation.
        crop_size: Centre crop (evaluation) / random resized crop (training) size in pixels.
        check_images: Read every image's header at setup, so a corrupt file is reported before training starts
            (decoding errors later still name the file).
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
        pin_memory: bool | None = None,
        seed: int = 0,
        check_images: bool = True,
        inject_beta: float = 0.0,
        inject_carrier: Literal["dct"] = "dct",
    ) -> None:
        super().__init__(
            batch_size, eval_batch_size, val_size, augment, num_workers, pin_memory, seed, inject_beta, inject_carrier
        )
        for split in ("train", "val"):
            if not (Path(root) / split).is_dir():
                raise ValueError(
                    f"root={root!r} has no {split}/ directory; expected root/train/<class>/ and root/val/<class>/"
                )
        check_int("crop_size", crop_size, 1, resize_size, note="(at most resize_size)")
        self.root, self.resize_size, self.crop_size, self.check_images = root, resize_size, crop_size, check_images
        self.num_classes = len(torchvision.datasets.folder.find_classes(str(Path(root) / "train"))[0])
        self.image_shape = (3, crop_size, crop_size)

    def _build(self) -> tuple[Dataset, Dataset, Dataset]:
        plain = T.Compose([T.Resize(self.resize_size), T.CenterCrop(self.crop_size), T.ToTensor()])
        augmented = T.Compose([T.RandomResizedCrop(self.crop_size), T.RandomHorizontalFlip(), T.ToTensor()])
        train, val = str(Path(self.root) / "train"), str(Path(self.root) / "val")
        sets = (
            torchvision.datasets.ImageFolder(train, augmented if self.augment else plain, loader=load_rgb),
            torchvision.datasets.ImageFolder(train, plain, loader=load_rgb),
            torchvision.datasets.ImageFolder(val, plain, loader=load_rgb),
        )
        if self.check_images:
            bad = unreadable_images([p for s in (sets[0], sets[2]) for p, _ in s.samples])
            if bad:
                listed = "; ".join(f"{p} ({reason})" for p, reason in bad[:3])
                raise BadInputError(
                    f"{len(bad)} image(s) under root={self.root!r} cannot be read: {listed}"
                    + (" ..." if len(bad) > 3 else "")
                    + "; remove or replace them (check_images: false skips this check)"
                )
        return sets
