"""robustrain.data.mnist5k: the real embedded digits, checked arguments, no network."""

import pytest
import torch

from robustrain.data import MNIST5k, load_mnist5k


def test_mnist5k_is_the_real_5000_digits_in_unit_range():
    images, labels = load_mnist5k()
    assert images.shape == (5000, 1, 28, 28) and images.dtype == torch.float32
    assert images.min() == 0.0 and images.max() == 1.0
    assert labels.dtype == torch.int64 and torch.equal(labels.bincount(), torch.full((10,), 500))


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


def test_padding_gives_32_pixel_digits_with_a_black_border():
    data = MNIST5k(padding=2)
    data.setup()
    image, _ = data.train_set[0]
    assert image.shape == (1, 32, 32) and data.image_shape == (1, 32, 32)
    assert image[:, :2].abs().sum() == 0 and image[:, :, -2:].abs().sum() == 0
    plain = MNIST5k()
    plain.setup()
    assert torch.equal(image[:, 2:-2, 2:-2], plain.train_set[0][0])
    with pytest.raises(ValueError, match="padding=-1"):
        MNIST5k(padding=-1)
