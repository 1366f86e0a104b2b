"""robustrain.attacks.box and the box argument of every attack: adversarial images stay in the data's range."""

import pytest
import torch
from torch import nn

from robustrain.attacks import UnitBoxModel, autoattack, fgsm, fgsm_with_start_loss, pgd

BOX = (-0.2, 1.2)


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    images = torch.rand(12, 1, 4, 4) * 1.4 - 0.2  # in BOX, partly outside [0, 1]
    return model, images, torch.randint(0, 10, (12,))


def _inside(adv, images, eps, box):
    return bool((adv >= box[0]).all() and (adv <= box[1]).all() and ((adv - images).abs() <= eps + 1e-6).all())


def test_fgsm_and_pgd_keep_the_images_in_the_box_and_the_ball(tiny):
    model, images, labels = tiny
    for init in ("zero", "random_clipped", "random_unclipped"):
        assert _inside(fgsm(model, images, labels, 0.3, 0.3, init, box=BOX), images, 0.3, BOX)
    for early_stop in (False, True):
        adv = pgd(model, images, labels, 0.3, 0.1, 5, restarts=2, early_stop=early_stop, box=BOX)
        assert _inside(adv, images, 0.3, BOX)
    # with the default (0, 1) box the pixels below 0 are pushed up, whatever eps allows
    assert pgd(model, images, labels, 0.05, 0.05, 1).min() >= 0


def test_unit_box_model_is_an_exact_change_of_coordinates(tiny):
    model, images, _ = tiny
    unit = UnitBoxModel(model, BOX)
    z = unit.to_unit(images)
    assert z.min() >= 0 and z.max() <= 1
    assert torch.allclose(unit.from_unit(z), images, atol=1e-6)
    assert torch.allclose(unit(z), model(images), atol=1e-5)
    with pytest.raises(ValueError, match="box=\\(1.0, 0.0\\)"):
        UnitBoxModel(model, (1.0, 0.0))


def test_autoattack_in_a_wider_box_stays_in_it(tiny):
    model, images, labels = tiny
    adv = autoattack(model, images, labels, 0.3, steps=5, components=("apgd-ce",), box=BOX)
    assert _inside(adv, images, 0.3, BOX)
    assert (model(adv).argmax(1) != labels).sum() >= (model(images).argmax(1) != labels).sum()


def test_fgsm_start_loss_is_the_loss_where_the_step_started(tiny):
    model, images, labels = tiny
    adv, start_loss = fgsm_with_start_loss(model, images, labels, 0.3, 0.3, "zero", box=BOX)
    expected = nn.functional.cross_entropy(model(images), labels, reduction="none")
    assert torch.allclose(start_loss, expected)
    torch.manual_seed(5)
    plain = fgsm(model, images, labels, 0.3, 0.3, "random_unclipped", box=BOX)
    torch.manual_seed(5)
    again, _ = fgsm_with_start_loss(model, images, labels, 0.3, 0.3, "random_unclipped", box=BOX)
    assert torch.equal(plain, again)
