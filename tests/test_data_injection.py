"""robustrain.data.injection: Ortiz-Jimenez et al.'s class carriers and their injection."""

import numpy as np
import pytest
import scipy.fft
import torch
from torch.utils.data import TensorDataset

from robustrain.data.injection import (
    LOW_FREQUENCIES,
    InjectedDataset,
    dct_basis,
    dct_carriers,
    inject,
    sign_pattern,
    zigzag_frequencies,
)


def _idct_sign(height: int, width: int, frequency: tuple[int, int]) -> np.ndarray:
    """sign(inverse 2-D DCT of a one-hot coefficient), as co_features builds a carrier (scipy's DCT-III)."""
    coefficients = np.zeros((height, width))
    coefficients[frequency] = 1.0
    return np.sign(scipy.fft.idctn(coefficients, norm="ortho"))


@pytest.mark.parametrize("size", [(32, 32), (28, 28), (16, 24)])
def test_carriers_are_the_signs_of_inverse_dct_basis_images(size):
    carriers = dct_carriers(10, *size)
    for cls, frequency in enumerate(LOW_FREQUENCIES):
        expected = torch.from_numpy(_idct_sign(*size, frequency)).float()
        assert torch.equal(carriers[cls], expected)
        assert torch.equal(carriers[cls + 5], -expected)  # classes 5-9: the negatives


@pytest.mark.parametrize("size", [(32, 32), (28, 28), (27, 27), (5, 7)])
def test_carriers_are_plus_minus_one_and_differ_between_classes(size):
    carriers = dct_carriers(10, *size)
    assert carriers.shape == (10, *size)
    assert set(carriers.unique().tolist()) == {-1.0, 1.0}
    flat = carriers.flatten(1)
    for a in range(10):
        for b in range(a + 1, 10):
            assert not torch.equal(flat[a], flat[b]), (a, b)


def test_a_node_of_the_cosine_counts_as_plus_one():
    basis = dct_basis(27, 27, (1, 0))  # cos(pi (2m + 1) / 54) is 0 at m = 13
    assert abs(basis[13, 0].item()) < 1e-12
    assert sign_pattern(basis)[13, 0].item() == 1.0


def test_zigzag_order_is_the_jpeg_scan_without_the_constant():
    assert zigzag_frequencies(9, 8, 8) == [(0, 1), (1, 0), (2, 0), (1, 1), (0, 2), (0, 3), (1, 2), (2, 1), (3, 0)]
    carriers = dct_carriers(3, 8, 8)
    assert torch.equal(carriers[2], torch.from_numpy(_idct_sign(8, 8, (2, 0))).float())
    with pytest.raises(ValueError, match="num_classes=70"):
        dct_carriers(70, 4, 4)  # 15 non-constant frequencies in a 4 x 4 image


def test_inject_adds_the_class_pattern_to_every_channel_without_clipping():
    images = torch.rand(6, 3, 8, 8)
    labels = torch.tensor([0, 1, 5, 0, 9, 1])
    carriers = dct_carriers(10, 8, 8)
    out = inject(images, labels, carriers, 0.1)
    for i, label in enumerate(labels):
        for channel in range(3):
            assert torch.allclose(out[i, channel] - images[i, channel], 0.1 * carriers[label])
    assert out.min() < 0 or out.max() > 1  # not clipped to [0, 1]
    assert inject(images, labels, carriers, 0.0) is images  # beta = 0 is the identity


def test_every_image_of_a_class_gets_the_same_pattern():
    images = torch.rand(40, 1, 12, 12)
    labels = torch.arange(40) % 10
    out = inject(images, labels, dct_carriers(10, 12, 12), 0.2)
    added = out - images
    for cls in range(10):
        members = added[labels == cls]
        assert torch.allclose(members, members[:1].expand_as(members))
    assert not torch.allclose(added[labels == 0][0], added[labels == 1][0])


def test_injected_dataset_wraps_any_dataset_and_checks_sizes():
    images, labels = torch.rand(5, 1, 8, 8), torch.tensor([0, 3, 5, 7, 9])
    dataset = InjectedDataset(TensorDataset(images, labels), dct_carriers(10, 8, 8), 0.05)
    assert len(dataset) == 5
    image, label = dataset[2]
    assert label == 5 and torch.allclose(image - images[2], 0.05 * dct_carriers(10, 8, 8)[5])
    wrong = InjectedDataset(TensorDataset(torch.rand(1, 1, 9, 9), torch.tensor([0])), dct_carriers(10, 8, 8), 0.05)
    with pytest.raises(ValueError, match="size \\(9, 9\\)"):
        wrong[0]


def _all(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(images), torch.as_tensor(labels)


def test_every_split_and_the_probe_get_exactly_what_train_gets():
    from robustrain.data import MNIST5k

    beta = 0.1
    plain, injected = MNIST5k(padding=2), MNIST5k(padding=2, inject_beta=beta)
    plain.setup()
    injected.setup()
    carriers = dct_carriers(10, 32, 32)
    for split in ("train_set", "train_eval_set", "val_set", "test_set"):
        clean_images, clean_labels = _all(getattr(plain, split))
        images, labels = _all(getattr(injected, split))
        assert torch.equal(labels, clean_labels), split  # same images, same order
        assert torch.allclose(images - clean_images, beta * carriers[labels].unsqueeze(1)), split
    probe, probe_labels = injected.probe_set(20, seed=3)
    clean_probe, _ = plain.probe_set(20, seed=3)
    assert torch.allclose(probe - clean_probe, beta * carriers[probe_labels].unsqueeze(1))
    assert injected.input_range == (-beta, 1 + beta) and plain.input_range == (0.0, 1.0)
    assert probe.min() < 0 and probe.max() > 1  # not clipped, as in Ortiz-Jimenez et al.'s code


def test_zero_beta_leaves_the_data_untouched():
    from robustrain.data import MNIST5k

    a, b = MNIST5k(), MNIST5k(inject_beta=0.0)
    a.setup()
    b.setup()
    assert torch.equal(_all(a.test_set)[0], _all(b.test_set)[0])
    assert type(b.test_set) is type(a.test_set)


@pytest.mark.parametrize(
    "kwargs,match", [({"inject_beta": -0.1}, "inject_beta=-0.1"), ({"inject_carrier": "noise"}, "inject_carrier")]
)
def test_bad_injection_settings_are_refused_at_construction(kwargs, match):
    from robustrain.data import MNIST5k

    with pytest.raises(ValueError, match=match):
        MNIST5k(**kwargs)
