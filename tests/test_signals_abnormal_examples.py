"""robustrain.signals.abnormal_examples: Lin et al.'s abnormal adversarial examples."""

import math

import pytest
import torch

from robustrain.signals import abnormal_examples, abnormal_fraction


def test_an_example_is_abnormal_when_its_loss_falls_after_the_step():
    start = torch.tensor([1.0, 2.0, 0.5, 3.0])
    adversarial = torch.tensor([2.0, 1.0, 0.5, 0.1])
    assert abnormal_examples(start, adversarial).tolist() == [False, True, False, True]  # equal: not abnormal
    assert abnormal_fraction(start, adversarial) == 0.5


def test_empty_batch_and_shape_mismatch():
    assert math.isnan(abnormal_fraction(torch.empty(0), torch.empty(0)))
    with pytest.raises(ValueError, match="same shape"):
        abnormal_examples(torch.zeros(3), torch.zeros(4))
