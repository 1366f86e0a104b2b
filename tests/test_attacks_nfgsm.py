"""robustrain.attacks.nfgsm: N-FGSM equals a transcription of pdejorge/N-FGSM's arithmetic bit for bit."""

import pytest
import torch
import torch.nn.functional as F

from robustrain.attacks import nfgsm


def _reference_nfgsm(model, x, y, eps, alpha, k, clip, low, high):
    """pdejorge/N-FGSM train.py's perturbation, in pixel units (their lower/upper limits are the box)."""
    eta = torch.zeros_like(x).uniform_(-k * eps, k * eps)
    eta = torch.max(torch.min(eta, high - x), low - x)
    eta.requires_grad = True
    loss = F.cross_entropy(model(x + eta), y)
    grad = torch.autograd.grad(loss, eta)[0].detach()
    delta = eta + alpha * torch.sign(grad)
    delta = torch.max(torch.min(delta, high - x), low - x)
    if clip is not None:
        delta = torch.max(torch.min(delta, torch.tensor(clip * eps)), torch.tensor(-clip * eps))
    return x + delta.detach()


@pytest.mark.parametrize(
    ("eps", "alpha", "k", "clip", "box"),
    [(0.2, 0.2, 2.0, None, (0.0, 1.0)), (8 / 255, 8 / 255, 2.0, 1.0, (0.0, 1.0)), (0.1, 0.1, 4.0, None, (-0.1, 1.1))],
)
def test_nfgsm_equals_the_reference_arithmetic_bit_for_bit(trained_cnn, mnist_batch, eps, alpha, k, clip, box):
    x, y = mnist_batch
    clean = x.clone()
    torch.manual_seed(3)
    expected = _reference_nfgsm(trained_cnn, x, y, eps, alpha, k, clip, *box)
    torch.manual_seed(3)
    adv, start_loss = nfgsm(trained_cnn, x, y, eps, alpha, noise=k, clip=clip, box=box)
    assert torch.equal(adv, expected)
    assert torch.equal(x, clean)
    assert start_loss.shape == (len(y),)


def test_nfgsm_is_not_projected_onto_the_eps_ball_but_stays_in_the_box(trained_cnn, mnist_batch):
    x, y = mnist_batch
    adv, _ = nfgsm(trained_cnn, x, y, 0.1, 0.1, noise=2.0)
    distance = (adv - x).abs().amax()
    assert 0.1 < distance <= 0.3 + 1e-6  # up to (k + 1) eps
    assert adv.min() >= 0 and adv.max() <= 1
    clipped, _ = nfgsm(trained_cnn, x, y, 0.1, 0.1, noise=2.0, clip=1.0)
    assert (clipped - x).abs().amax() <= 0.1 + 1e-6


def test_nfgsm_without_noise_is_one_unprojected_fgsm_step(trained_cnn, mnist_batch):
    x, y = mnist_batch
    adv, _ = nfgsm(trained_cnn, x, y, 0.1, 0.05, noise=0.0)
    x_req = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(trained_cnn(x_req), y), x_req)
    assert torch.allclose(adv, (x + 0.05 * grad.sign()).clamp(0, 1))


@pytest.mark.parametrize(
    ("kwargs", "name"), [({"noise": -1.0}, "noise"), ({"clip": 0.0}, "clip"), ({"eps": 2.0}, "eps")]
)
def test_nfgsm_refuses_bad_settings_by_name(trained_cnn, mnist_batch, kwargs, name):
    x, y = mnist_batch
    args = {"eps": 0.1, "alpha": 0.1, **kwargs}
    with pytest.raises(ValueError, match=name):
        nfgsm(trained_cnn, x, y, **args)
