"""A tiny folder in torchvision's CIFAR-10 format, written by the tests that need CIFAR-10 on disk."""

import pickle
from pathlib import Path

import numpy as np


def write_cifar10_folder(root, n_train: int = 60, n_test: int = 20, seed: int = 0) -> None:
    """A tiny folder in torchvision's CIFAR-10 format: cifar-10-batches-py with pickled rows of 3072 uint8 (the R, G
    and B planes), labels and the metadata."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def batch(n):
        return {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(rng.integers(0, 10, n))}

    per_batch = -(-n_train // 5)
    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch(per_batch)))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(n_test)))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))
