"""FGSM (Goodfellow et al. 2015) and FGSM-RS (Wong et al. 2020), L-inf: one signed-gradient step from a chosen start.

The "random_clipped" start and the step are torchattacks.FFGSM's arithmetic (robustrain.attacks.steps, equal bit for
bit under a fixed seed, tested); the "random_unclipped" start (Wong et al.'s MNIST code) is robustrain's own, as
torchattacks has no such attack. Inputs and outputs are images in [0, 1]; eps and alpha are in [0, 1] pixel units;
model modes are the caller's (robustrain.core.train_eval_modes).
"""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from robustrain.attacks.box import UNIT_BOX, check_box
from robustrain.attacks.inputs import check_linf_params, model_device, require_grad_mode
from robustrain.attacks.steps import signed_steps_with_start_loss
from robustrain.core.validation import check_choice

# FGSM starts, named for what they do (see `fgsm`):
#   random_unclipped: delta ~ U[-eps, eps], gradient taken at the unclipped x + delta (Wong et al.'s MNIST code);
#   random_clipped:   delta ~ U[-eps, eps], x + delta clipped to [0, 1] first (Wong et al.'s CIFAR code,
#                     torchattacks FFGSM);
#   zero:             delta = 0 (plain FGSM, Goodfellow et al.).
FGSM_INITS = ("random_unclipped", "random_clipped", "zero")


def check_fgsm_init(init: str) -> None:
    """Raises ValueError naming `init` when it is not one of FGSM_INITS."""
    check_choice("init", init, FGSM_INITS)


def fgsm(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    alpha: float,
    init: Literal["random_unclipped", "random_clipped", "zero"] = "random_unclipped",
    box: tuple[float, float] = UNIT_BOX,
) -> torch.Tensor:
    """One signed-gradient step of size alpha from a random (FGSM-RS, Wong et al. 2020) or a zero start.

    The starts (delta is the perturbation, x the clean images):
    - "random_unclipped": delta ~ U[-eps, eps]; the gradient is taken at x + delta *without* clipping it to [0, 1]
      (locuslab/fast_adversarial MNIST/train_mnist.py). On MNIST's black background clipping would zero half of the
      random start; without it the start keeps its full spread. torchattacks has no such attack, so it is written
      here (three lines).
    - "random_clipped": x + delta is clipped to [0, 1] before the gradient (fast_adversarial CIFAR10/train_fgsm.py,
      and torchattacks.FFGSM, whose result this gives bit for bit under the same seed).
    - "zero": delta = 0, i.e. plain FGSM with step alpha (torchattacks.PGD with one step and no random start).

    Every start then takes delta + alpha * sign(grad), projects it onto the eps-ball and x + delta onto [0, 1].
    alpha = 0 (e.g. the first step of an eps warm-up) returns the projected start.

    Args:
        model: Classifier on [0, 1] images; its mode is the caller's.
        images: Clean images in [0, 1], (B, C, H, W); moved to the model's device.
        labels: int64 (B,) labels.
        eps: L-inf radius in [0, 1] pixel units (8/255 on CIFAR-10, 0.3 on MNIST).
        alpha: Step size in [0, 1] pixel units (Wong et al.: 1.25 * eps).
        init: The start: "random_unclipped" (default), "random_clipped" or "zero", as above.
        box: (lowest, highest) pixel value of the adversarial images and of the clipped start: (0, 1) for images,
            a datamodule's `input_range` for injected features (robustrain.data.injection).

    Returns:
        The adversarial images in the box, on the model's device.
    """
    return fgsm_with_start_loss(model, images, labels, eps, alpha, init, box)[0]


def fgsm_with_start_loss(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    alpha: float,
    init: Literal["random_unclipped", "random_clipped", "zero"] = "random_unclipped",
    box: tuple[float, float] = UNIT_BOX,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`fgsm`, also returning the per-example cross-entropy at the point the step started from (x for "zero",
    x + delta_0 for the random starts), which the step's own forward computes. Lin et al.'s abnormal adversarial
    examples are those whose loss at the adversarial images is below it (robustrain.signals.abnormal_examples).

    Returns:
        (adversarial images, (B,) loss at the start), both on the model's device.
    """
    check_linf_params(eps, alpha)
    check_fgsm_init(init)
    check_box(box)
    require_grad_mode()
    device = model_device(model)  # torchattacks' protection kept: the inputs go to the model's device
    x, labels = images.detach().to(device), labels.to(device)
    with torch.enable_grad():
        if init == "random_unclipped":
            delta = torch.empty_like(x).uniform_(-eps, eps).requires_grad_(True)
            losses = F.cross_entropy(model(x + delta), labels, reduction="none")
            (grad,) = torch.autograd.grad(losses.mean(), delta)
            delta = (delta.detach() + alpha * grad.sign()).clamp_(-eps, eps)
            return (x + delta).clamp_(*box), losses.detach()
        if init == "random_clipped":
            # torchattacks.FFGSM's start, random numbers included (randn_like then uniform_, as it draws them), so
            # that a seeded run gives its exact result (tested); written here to skip its per-call object and copies
            start = (x + torch.randn_like(x).uniform_(-eps, eps)).clamp_(*box)
        else:
            start = x
        return signed_steps_with_start_loss(model, x, start, labels, eps, alpha, 1, box)
