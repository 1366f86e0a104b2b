"""The signed-gradient steps FGSM and PGD share: torchattacks.PGD's loop and its uniform random start, bit for bit.

torchattacks' `Attack.__call__` builds an attack object, a loss module and copies of the images and labels at every
call, which costs several percent of a small network's training step; it also switches model modes and binds the
device at construction. The loop is therefore written here with torchattacks 3.5.1's float operations in their order,
so a seeded call gives torchattacks' result exactly (tests/test_attacks_steps.py compares them); model modes are the
caller's (robustrain.train_eval_modes). Both functions take images and labels already on the model's device.
"""

import torch
import torch.nn.functional as F
from torch import nn


def signed_steps(
    model: nn.Module,
    images: torch.Tensor,
    start: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
) -> torch.Tensor:
    """`steps` signed-gradient steps from `start`, each projected onto the eps-ball around `images` and onto [0, 1].

    The update is torchattacks.PGD's: x' = clip_[0,1](x + clip_[-eps,eps](x' + alpha * sign(grad) - x)).

    Args:
        model: Classifier on [0, 1] images (its mode is the caller's).
        images: The clean images x, shape (B, C, H, W), in [0, 1].
        start: The first point x', the same shape (x itself, or a random point of the eps-ball).
        labels: int64 (B,) labels whose cross-entropy the steps increase.
        eps: L-inf radius in [0, 1] pixel units.
        alpha: Step size in [0, 1] pixel units.
        steps: Number of steps.

    Returns:
        The adversarial images, detached.
    """
    adv = start.detach()
    with torch.enable_grad():
        for _ in range(steps):
            adv.requires_grad_(True)
            loss = F.cross_entropy(model(adv), labels)
            (grad,) = torch.autograd.grad(loss, adv)
            # adv + alpha * sign(grad), in place on the fresh gradient (adv may share the caller's images at step 1)
            adv = grad.sign_().mul_(alpha).add_(adv.detach())
            delta = (adv - images).clamp_(-eps, eps)
            adv = (images + delta).clamp_(0.0, 1.0)
    return adv


def uniform_start(images: torch.Tensor, eps: float) -> torch.Tensor:
    """A uniform point of the eps-ball around the images, clamped to [0, 1] (torchattacks.PGD's random start)."""
    return (images + torch.empty_like(images).uniform_(-eps, eps)).clamp_(0.0, 1.0)
