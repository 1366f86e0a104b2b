"""robustrain.data.torchvision_data: local files only, clear errors for a missing dataset or no network."""

import urllib.error

import numpy as np
import pytest
import torch
import torchvision
from _cifar10_folder import write_cifar10_folder

from robustrain.data import TorchvisionData, load_mnist5k


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


def test_a_cifar10_format_copy_reads_without_the_checksums(tmp_path):
    write_cifar10_folder(tmp_path)
    with pytest.raises(ValueError, match="was not found under root"):
        TorchvisionData(name="cifar10", root=str(tmp_path), val_size=10)  # md5 sums differ from the official files
    dm = TorchvisionData(name="cifar10", root=str(tmp_path), val_size=10, verify_files=False, inject_beta=8 / 255)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (50, 10, 20)
    x, _ = dm.val_set[0]
    assert x.shape == (3, 32, 32) and dm.input_range == (-8 / 255, 1 + 8 / 255)
