"""PGD (Madry et al. 2018), L-inf, with restarts and an optional per-example early stop.

The arithmetic is torchattacks.PGD's (robustrain.attacks.steps, equal bit for bit under a fixed seed, tested); the
restart rule and the per-example early stop are robustrain's own (torchattacks has neither). Inputs and outputs are
images in [0, 1]; eps and alpha are in [0, 1] pixel units; model modes are the caller's
(robustrain.core.train_eval_modes).
"""

import torch
import torch.nn.functional as F
from torch import nn

from robustrain.attacks.box import UNIT_BOX, check_box
from robustrain.attacks.inputs import check_linf_params, model_device, require_grad_mode
from robustrain.attacks.steps import signed_steps_with_start_loss, uniform_start


def pgd(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    random_start: bool = True,
    restarts: int = 1,
    early_stop: bool = False,
    box: tuple[float, float] = UNIT_BOX,
) -> torch.Tensor:
    """PGD (Madry et al. 2018): `steps` signed-gradient steps of size alpha, each projected to the eps-ball and the box.

    The update is torchattacks.PGD's: x' = clip_[0,1](x + clip_[-eps,eps](x' + alpha * sign(grad) - x)), from x or
    from a uniform point of the eps-ball clamped to the box (robustrain.attacks.steps).

    Restarts (the one rule used for training, validation and test): an example counts as broken if *any* restart
    fools the model (Wong et al.'s PGD-50-10 and AutoAttack's rule). Each restart attacks only the examples no
    earlier restart fooled; a fooled example keeps its first fooling point, the others their highest-loss point.

    Args:
        model: Classifier on [0, 1] images; its mode is the caller's.
        images: Clean images in [0, 1], (B, C, H, W); moved to the model's device.
        labels: int64 (B,) labels.
        eps: L-inf radius in [0, 1] pixel units (8/255 on CIFAR-10, 0.3 on MNIST).
        alpha: Step size in [0, 1] pixel units (Madry et al. on CIFAR-10: 2/255).
        steps: Steps per restart.
        random_start: Start from a uniform point of the eps-ball (True, torchattacks' default) or from the images.
        restarts: Random restarts (1); an example fooled by any of them counts as broken.
        early_stop: Each example leaves the attack at the first step where it is misclassified and keeps that point
            (Wong et al.'s attack_pgd; torchattacks has no per-example stop). Only the still-correct examples are
            forwarded, so a strong attack gets cheaper as it succeeds.
        box: (lowest, highest) pixel value of the adversarial images: (0, 1) for images, a datamodule's
            `input_range` for injected features (robustrain.data.injection).

    Returns:
        The adversarial images in the box, on the model's device.
    """
    check_linf_params(eps, alpha, steps, restarts)
    check_box(box)
    require_grad_mode()
    device = model_device(model)  # torchattacks' protection kept: the inputs go to the model's device
    x, labels = images.detach().to(device), labels.to(device)
    attack_once = _pgd_early_stop if early_stop else _pgd_plain
    if restarts == 1:
        return attack_once(model, x, labels, eps, alpha, steps, random_start, box)
    adv = x.clone()
    best_loss = torch.full((len(x),), -float("inf"), device=x.device)
    todo = torch.arange(len(x), device=x.device)
    for _ in range(restarts):
        if todo.numel() == 0:
            break
        candidate = attack_once(model, x[todo], labels[todo], eps, alpha, steps, random_start, box)
        with torch.no_grad():
            logits = model(candidate)
            loss = F.cross_entropy(logits, labels[todo], reduction="none")
        fooled = logits.argmax(1) != labels[todo]
        take = fooled | (loss > best_loss[todo])
        adv[todo[take]], best_loss[todo[take]] = candidate[take], loss[take]
        todo = todo[~fooled]
    return adv


def pgd_with_start_loss(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    random_start: bool = True,
    box: tuple[float, float] = UNIT_BOX,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`pgd` with one restart and no early stop (the training attack), also returning the per-example loss where it
    started, which the first step's forward computes anyway (the abnormal-example signal needs it).

    Returns:
        (adversarial images, (B,) loss at the start), both on the model's device.
    """
    check_linf_params(eps, alpha, steps)
    check_box(box)
    require_grad_mode()
    device = model_device(model)
    x, labels = images.detach().to(device), labels.to(device)
    return _pgd_plain_with_start_loss(model, x, labels, eps, alpha, steps, random_start, box)


# _pgd_plain(_with_start_loss) and _pgd_early_stop take images and labels already detached and on the model's
# device (pgd and pgd_with_start_loss do it once)
def _pgd_plain(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    random_start: bool,
    box: tuple[float, float],
) -> torch.Tensor:
    return _pgd_plain_with_start_loss(model, images, labels, eps, alpha, steps, random_start, box)[0]


def _pgd_plain_with_start_loss(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    random_start: bool,
    box: tuple[float, float],
) -> tuple[torch.Tensor, torch.Tensor]:
    start = uniform_start(images, eps, box) if random_start else images
    return signed_steps_with_start_loss(model, images, start, labels, eps, alpha, steps, box)


def _pgd_early_stop(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    random_start: bool,
    box: tuple[float, float],
) -> torch.Tensor:
    x = images
    adv = uniform_start(x, eps, box) if random_start else x.clone()
    active = torch.arange(len(x), device=x.device)
    with torch.enable_grad():
        for _ in range(steps):
            if active.numel() == 0:
                break
            xa = adv[active].clone().requires_grad_(True)
            logits = model(xa)
            still_correct = logits.argmax(1) == labels[active]
            loss = F.cross_entropy(logits, labels[active], reduction="sum")
            (grad,) = torch.autograd.grad(loss, xa)
            keep = active[still_correct]
            stepped = xa.detach()[still_correct] + alpha * grad[still_correct].sign()
            adv[keep] = (x[keep] + (stepped - x[keep]).clamp(-eps, eps)).clamp(*box)
            active = keep
    return adv
