"""The signed-gradient steps FGSM and PGD share: torchattacks.PGD's loop and its uniform random start, bit for bit.

torchattacks' `Attack.__call__` builds an attack object, a loss module and copies of the images and labels at every
call, which costs several percent of a small network's training step; it also switches model modes and binds the
device at construction. The loop is therefore written here with torchattacks 3.5.1's float operations in their order,
so a seeded call gives torchattacks' result exactly (tests/test_attacks_steps.py compares them); model modes are the
caller's (robustrain.core.train_eval_modes). Both functions take images and labels already on the model's device.

`box` is the range the adversarial images are kept in: [0, 1] for images (torchattacks' only choice), or a
datamodule's `input_range` for data whose pixels leave [0, 1] (injected features, robustrain.data.injection).
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
    box: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """`steps` signed-gradient steps from `start`, each projected onto the eps-ball around `images` and onto the box.

    The update is torchattacks.PGD's: x' = clip_box(x + clip_[-eps,eps](x' + alpha * sign(grad) - x)).

    Args:
        model: Classifier on [0, 1] images (its mode is the caller's).
        images: The clean images x, shape (B, C, H, W), in [0, 1].
        start: The first point x', the same shape (x itself, or a random point of the eps-ball).
        labels: int64 (B,) labels whose cross-entropy the steps increase.
        eps: L-inf radius in [0, 1] pixel units.
        alpha: Step size in [0, 1] pixel units.
        steps: Number of steps.
        box: (lowest, highest) pixel value of the adversarial images.

    Returns:
        The adversarial images, detached.
    """
    return signed_steps_with_start_loss(model, images, start, labels, eps, alpha, steps, box)[0]


def signed_steps_with_start_loss(
    model: nn.Module,
    images: torch.Tensor,
    start: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    box: tuple[float, float] = (0.0, 1.0),
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """signed_steps, also returning the per-example loss at `start` (None for 0 steps), which the first step's
    forward computes anyway (the abnormal-example signal of robustrain.signals needs it)."""
    low, high = box
    adv, start_loss = start.detach(), None
    with torch.enable_grad():
        for step in range(steps):
            adv.requires_grad_(True)
            losses = F.cross_entropy(model(adv), labels, reduction="none")
            if step == 0:
                start_loss = losses.detach()
            (grad,) = torch.autograd.grad(losses.mean(), adv)
            # adv + alpha * sign(grad), in place on the fresh gradient (adv may share the caller's images at step 1)
            adv = grad.sign_().mul_(alpha).add_(adv.detach())
            delta = (adv - images).clamp_(-eps, eps)
            adv = (images + delta).clamp_(low, high)
    return adv, start_loss


def uniform_start(images: torch.Tensor, eps: float, box: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """A uniform point of the eps-ball around the images, clamped to the box (torchattacks.PGD's random start)."""
    return (images + torch.empty_like(images).uniform_(-eps, eps)).clamp_(*box)
