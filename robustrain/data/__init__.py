"""Datamodules: images as float tensors in [0, 1], labels int64, a seeded held-out validation split."""

from robustrain.data.image_datamodule import ImageDataModule, probe_set_of
from robustrain.data.image_folder import ImageFolder
from robustrain.data.mnist5k import MNIST5k, load_mnist5k
from robustrain.data.synthetic import SyntheticImages
from robustrain.data.torchvision_data import TorchvisionData

__all__ = [
    "ImageDataModule",
    "ImageFolder",
    "MNIST5k",
    "SyntheticImages",
    "TorchvisionData",
    "load_mnist5k",
    "probe_set_of",
]
