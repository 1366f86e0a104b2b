"""What every attack of robustrain.attacks guarantees: the eps-ball and image range, a higher loss, gradients whatever
the grad mode, checked parameters, the model's device."""

import pytest
import torch
import torch.nn.functional as F

from robustrain.attacks import fgsm, pgd
from robustrain.models import SmallCNN

ATTACKS = {
    "fgsm_random_clipped": lambda m, x, y, eps: fgsm(m, x, y, eps, 1.25 * eps, "random_clipped"),
    "fgsm_random_unclipped": lambda m, x, y, eps: fgsm(m, x, y, eps, 1.25 * eps, "random_unclipped"),
    "fgsm_zero": lambda m, x, y, eps: fgsm(m, x, y, eps, eps, "zero"),
    "pgd": lambda m, x, y, eps: pgd(m, x, y, eps, eps / 4, steps=5),
    "pgd_restarts": lambda m, x, y, eps: pgd(m, x, y, eps, eps / 4, steps=3, restarts=3),
}


@pytest.mark.parametrize("name", ATTACKS)
@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_attack_stays_in_eps_ball_and_image_range(trained_cnn, mnist_batch, name, eps):
    x, y = mnist_batch
    adv = ATTACKS[name](trained_cnn, x, y, eps)
    assert adv.shape == x.shape and adv.dtype == x.dtype
    assert (adv - x).abs().max() <= eps + 1e-6
    assert adv.min() >= 0.0 and adv.max() <= 1.0


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_raises_loss_over_clean(trained_cnn, mnist_batch, name):
    x, y = mnist_batch
    adv = ATTACKS[name](trained_cnn, x, y, 0.2)
    with torch.no_grad():
        assert F.cross_entropy(trained_cnn(adv), y) > F.cross_entropy(trained_cnn(x), y) + 0.5


def test_eps_zero_returns_clean_images(trained_cnn, mnist_batch):
    x, y = mnist_batch
    assert torch.equal(pgd(trained_cnn, x, y, 0.0, 0.01, steps=3), x)


def test_attack_in_inference_mode_raises_with_a_fix(trained_cnn, mnist_batch):
    x, y = mnist_batch
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode=False"):
        pgd(trained_cnn, x, y, 0.1, 0.01, steps=1)


def test_attack_under_no_grad_still_computes_gradients(trained_cnn, mnist_batch):
    x, y = mnist_batch
    with torch.no_grad():
        adv = fgsm(trained_cnn, x, y, 0.3, 0.3, "zero")
    assert (adv - x).abs().max() > 0.29


@pytest.mark.parametrize(
    "call,kwargs,match",
    [
        (fgsm, {"eps": 1.5, "alpha": 0.1}, "eps=1.5"),
        (fgsm, {"eps": -0.1, "alpha": 0.1}, "eps=-0.1"),
        (fgsm, {"eps": 0.1, "alpha": -0.1}, "alpha=-0.1"),
        (fgsm, {"eps": float("nan"), "alpha": 0.1}, "eps=nan"),
        (fgsm, {"eps": 0.1, "alpha": float("nan")}, "alpha=nan"),
        (fgsm, {"eps": 0.1, "alpha": 0.1, "init": "gaussian"}, "init='gaussian'"),
        (pgd, {"eps": 0.1, "alpha": 0.1, "steps": 0}, "steps=0"),
        (pgd, {"eps": 0.1, "alpha": 0.1, "steps": 2, "restarts": 0}, "restarts=0"),
    ],
)
def test_bad_attack_parameters_raise_naming_the_value(trained_cnn, mnist_batch, call, kwargs, match):
    x, y = mnist_batch
    with pytest.raises(ValueError, match=match):
        call(trained_cnn, x[:2], y[:2], **kwargs)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["fgsm_random_clipped", "fgsm_random_unclipped", "fgsm_zero", "pgd"])
def test_attack_moves_inputs_to_the_model_device_read_at_call_time(trained_cnn, mnist_batch, name):
    x, y = mnist_batch
    model = SmallCNN().cuda()
    adv = ATTACKS[name](model, x, y, 0.1)
    assert adv.device == next(model.parameters()).device


def test_a_step_larger_than_the_radius_is_described_and_bad_values_are_named_with_their_prefix():
    from robustrain.attacks import check_linf_params, step_warning

    assert step_warning("PGD", eps=0.3, alpha=0.1) is None and step_warning("PGD", eps=0.3, alpha=0.3) is None
    warning = step_warning("PGDEarlyStopping", eps=0.3, alpha=0.9)
    assert warning.startswith("PGDEarlyStopping: alpha=0.9 is larger than eps=0.3: every step overshoots")
    assert "eval_alpha=0.5 is larger than eval_eps=0.3" in step_warning("M", 0.3, 0.5, prefix="eval_")
    with pytest.raises(ValueError, match="eval_restarts=0 is not valid"):
        check_linf_params(0.3, 0.1, 10, 0, prefix="eval_")
