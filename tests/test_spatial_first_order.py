"""robustrain.spatial.first_order: the first-order attack on rotation and translation."""

import pytest
import torch
import torch.nn.functional as F

from robustrain.spatial import (
    first_order_attack,
    rotate_translate,
)


def test_first_order_attack_never_lowers_the_loss_and_stays_in_box(cnet, cbatch):
    x, y = cbatch
    result = first_order_attack(cnet, x, y, steps=8, rotation_deg_range=10.0, translation_px_range=1.0)
    with torch.no_grad():
        identity_loss = F.cross_entropy(cnet(x), y, reduction="none")
        attacked = cnet(rotate_translate(x, result.params[:, 0], result.params[:, 1:]))
    assert (result.loss >= identity_loss).all()
    assert (result.loss > identity_loss + 1e-3).any()
    assert torch.allclose(result.loss, F.cross_entropy(attacked, y, reduction="none"), atol=1e-5)
    assert (result.params.abs() <= torch.tensor([10.0, 1.0, 1.0])).all()
    assert result.fooled[attacked.argmax(dim=1) != y].all()


def test_first_order_steps_are_bounded_sign_steps(cnet, cbatch):
    x, y = cbatch
    result = first_order_attack(cnet, x, y, steps=1)
    moved = result.params[result.loss > F.cross_entropy(cnet(x), y, reduction="none").detach()]
    assert moved.numel() > 0
    assert torch.allclose(moved.abs(), torch.tensor([0.6, 0.25, 0.25]).expand_as(moved))


def test_first_order_with_zero_steps_returns_identity(cnet, cbatch):
    x, y = cbatch
    result = first_order_attack(cnet, x, y, steps=0)
    assert torch.equal(result.params, torch.zeros(8, 3))
    assert not result.fooled.any()


def test_first_order_random_start_is_in_box_and_rejects_bad_values(cnet, cbatch):
    x, y = cbatch
    result = first_order_attack(cnet, x, y, steps=0, random_start=True, generator=torch.Generator().manual_seed(0))
    assert (result.params.abs() <= torch.tensor([30.0, 3.0, 3.0])).all() and result.params.abs().min() > 0
    with pytest.raises(ValueError, match="steps=-1"):
        first_order_attack(cnet, x, y, steps=-1)
    with pytest.raises(ValueError, match="translation_px_range=9"):
        first_order_attack(cnet, x, y, translation_px_range=9.0)
