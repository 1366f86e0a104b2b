"""robustrain.attacks.fgsm: FGSM and FGSM-RS starts against a step computed by hand."""

import pytest
import torch
import torch.nn.functional as F

from robustrain.attacks import fgsm


def _hand_fgsm_rs(model, x, y, eps, alpha, clip_start, seed):
    """FGSM-RS written out by hand, as fast_adversarial does (MNIST: clip_start=False; CIFAR-10: clip_start=True)."""
    torch.manual_seed(seed)
    if clip_start:  # torchattacks.FFGSM draws randn_like(x) and overwrites it with uniform_: the RNG advances twice
        torch.randn_like(x)
    delta = torch.empty_like(x).uniform_(-eps, eps)
    start = (x + delta).clamp(0, 1) if clip_start else x + delta
    start = start.detach().requires_grad_(True)
    grad = torch.autograd.grad(F.cross_entropy(model(start), y), start)[0]
    step = (start.detach() + alpha * grad.sign() - x).clamp(-eps, eps)
    return (x + step).clamp(0, 1)


@pytest.mark.parametrize("init,clip_start", [("random_unclipped", False), ("random_clipped", True)])
def test_fgsm_random_starts_match_a_step_computed_by_hand(trained_cnn, mnist_batch, init, clip_start):
    x, y = mnist_batch
    expected = _hand_fgsm_rs(trained_cnn, x, y, 0.3, 0.375, clip_start, seed=7)
    torch.manual_seed(7)
    adv = fgsm(trained_cnn, x, y, 0.3, 0.375, init)
    torch.testing.assert_close(adv, expected, atol=1e-6, rtol=0)


def test_fgsm_unclipped_start_differs_from_the_clipped_one_on_black_background(trained_cnn, mnist_batch):
    """On MNIST's zero background, clipping the start throws away the negative half of delta before the gradient."""
    x, y = mnist_batch
    torch.manual_seed(3)
    unclipped = fgsm(trained_cnn, x, y, 0.3, 0.375, "random_unclipped")
    torch.manual_seed(3)
    clipped = fgsm(trained_cnn, x, y, 0.3, 0.375, "random_clipped")
    assert (unclipped - clipped).abs().max() > 0.1


def test_fgsm_with_zero_step_returns_the_projected_start(trained_cnn, mnist_batch):
    x, y = mnist_batch
    adv = fgsm(trained_cnn, x, y, 0.3, 0.0, "zero")
    torch.testing.assert_close(adv, x)
