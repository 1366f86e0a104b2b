"""robustrain.data.image_folder: class directories read, a missing split named."""

import pytest
from PIL import Image

from robustrain.data import ImageFolder, load_mnist5k


def _write_image_folder(root, n_per_class=6):
    images, labels = load_mnist5k()
    for split in ("train", "val"):
        for cls in range(3):
            d = root / split / f"class{cls}"
            d.mkdir(parents=True)
            idx = (labels == cls).nonzero().flatten()[:n_per_class]
            for i in idx.tolist():
                Image.fromarray((images[i, 0] * 255).byte().numpy()).convert("RGB").save(d / f"{i}.png")


def test_image_folder_reads_class_directories(tmp_path):
    _write_image_folder(tmp_path)
    dm = ImageFolder(root=str(tmp_path), resize_size=36, crop_size=32, val_size=3, batch_size=4, num_workers=0)
    dm.setup()
    assert dm.num_classes == 3 and (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (15, 3, 18)
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (4, 3, 32, 32) and x.max() <= 1.0


def test_image_folder_without_splits_raises(tmp_path):
    with pytest.raises(ValueError, match="no train/ directory"):
        ImageFolder(root=str(tmp_path))
