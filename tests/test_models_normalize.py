"""robustrain.models.normalize: normalisation is every network's first layer ([0, 1] inputs)."""

import pytest
import torch

from robustrain.models import SmallCNN


def test_normalisation_is_the_first_layer():
    net = SmallCNN(normalization="mnist")
    assert net.normalize(torch.full((1, 1, 2, 2), 0.1307)).abs().max() < 1e-6
    with pytest.raises(ValueError, match="normalization='imagenet21k'"):
        SmallCNN(normalization="imagenet21k")
