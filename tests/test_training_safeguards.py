"""robustrain.training.safeguards: the non-finite guard names the tensor."""

import math

import torch

from robustrain.training.safeguards import first_non_finite


def test_first_non_finite_names_the_tensor():
    assert first_non_finite([("a", torch.ones(2)), ("b", None), ("c", torch.tensor([1, 2]))]) is None
    assert first_non_finite([("a", torch.ones(2)), ("b", torch.tensor([0.0, math.inf]))]) == "b"
    assert first_non_finite([("a", torch.tensor([math.nan]))]) == "a"
