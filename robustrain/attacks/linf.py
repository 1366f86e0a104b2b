"""L-inf attacks (FGSM, FGSM-RS, PGD with restarts and early stop): torchattacks' FFGSM and PGD arithmetic, bit for
bit, without its model-mode and device faults or its per-call cost.

torchattacks' `Attack.__call__` switches the model to eval() (or to train() with string-matched BatchNorm rules) and
restores only `train()`; it also binds the device at construction, and it builds an attack object, a loss module and
copies of the inputs at every call, which is several percent of a small network's training step. The loops are
therefore written here with torchattacks' float operations in their order (tests compare them with torchattacks under
a fixed seed); the inputs go to the model's device at every call, and model modes are left to the caller
(`robustrain.train_eval_modes`). Inputs and outputs are images in [0, 1]; eps and alpha are in [0, 1] pixel units.
"""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from robustrain.validation import check_choice, check_in_range, check_positive_int

# FGSM starts, named for what they do (see `fgsm`):
#   random_unclipped: delta ~ U[-eps, eps], gradient taken at the unclipped x + delta (Wong et al.'s MNIST code);
#   random_clipped:   delta ~ U[-eps, eps], x + delta clipped to [0, 1] first (Wong et al.'s CIFAR code,
#                     torchattacks FFGSM);
#   zero:             delta = 0 (plain FGSM, Goodfellow et al.).
FGSM_INITS = ("random_unclipped", "random_clipped", "zero")


def check_linf_params(eps: float, alpha: float | None = None, steps: int | None = None, restarts: int = 1) -> None:
    """Raises ValueError naming the first parameter outside its valid range."""
    check_in_range("eps", eps, 0.0, 1.0, note="(pixel units of images in [0, 1], e.g. 8/255 or 0.3)")
    if alpha is not None:
        check_in_range("alpha", alpha, 0.0, 1.0, note="(a step in [0, 1] pixel units; 0 only leaves the start)")
    if steps is not None:
        check_positive_int("steps", steps)
    check_positive_int("restarts", restarts)


def require_grad_mode() -> None:
    """Raises RuntimeError, saying how to fix it, when inference mode forbids the gradients attacks need."""
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            "adversarial attacks need gradients but inference mode is on: run the Trainer with inference_mode=False "
            "(robustrain's CLI does this by default; set trainer.inference_mode: false in your config)"
        )


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's parameters, read at every call (the model may have moved since the last one)."""
    return next(model.parameters()).device


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
    """
    check_linf_params(eps, alpha)
    check_fgsm_init(init)
    require_grad_mode()
    device = model_device(model)  # torchattacks' protection kept: the inputs go to the model's device
    x, labels = images.detach().to(device), labels.to(device)
    with torch.enable_grad():
        if init == "random_unclipped":
            delta = torch.empty_like(x).uniform_(-eps, eps).requires_grad_(True)
            loss = F.cross_entropy(model(x + delta), labels)
            (grad,) = torch.autograd.grad(loss, delta)
            delta = (delta.detach() + alpha * grad.sign()).clamp_(-eps, eps)
            return (x + delta).clamp_(0.0, 1.0)
        if init == "random_clipped":
            # torchattacks.FFGSM's start, random numbers included (randn_like then uniform_, as it draws them), so
            # that a seeded run gives its exact result (tested); written here to skip its per-call object and copies
            start = (x + torch.randn_like(x).uniform_(-eps, eps)).clamp_(0.0, 1.0)
        else:
            start = x
        return _signed_steps(model, x, start, labels, eps, alpha, 1)


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
) -> torch.Tensor:
    """PGD (Madry et al. 2018): `steps` signed-gradient steps of size alpha, each projected to the eps-ball and [0, 1].

    The update is torchattacks.PGD's: x' = clip_[0,1](x + clip_[-eps,eps](x' + alpha * sign(grad) - x)), from x or
    from a uniform point of the eps-ball clamped to [0, 1].

    Restarts (the one rule used for training, validation and test): an example counts as broken if *any* restart
    fools the model (Wong et al.'s PGD-50-10 and AutoAttack's rule). Each restart attacks only the examples no
    earlier restart fooled; a fooled example keeps its first fooling point, the others their highest-loss point.

    early_stop: each example leaves the attack at the first step where it is misclassified and keeps that point
    (Wong et al.'s attack_pgd). torchattacks has no per-example stop, so this loop is written here; it forwards only
    the still-correct examples, so a strong attack gets cheaper as it succeeds.
    """
    check_linf_params(eps, alpha, steps, restarts)
    require_grad_mode()
    device = model_device(model)  # torchattacks' protection kept: the inputs go to the model's device
    x, labels = images.detach().to(device), labels.to(device)
    attack_once = _pgd_early_stop if early_stop else _pgd_plain
    if restarts == 1:
        return attack_once(model, x, labels, eps, alpha, steps, random_start)
    adv = x.clone()
    best_loss = torch.full((len(x),), -float("inf"), device=x.device)
    todo = torch.arange(len(x), device=x.device)
    for _ in range(restarts):
        if todo.numel() == 0:
            break
        candidate = attack_once(model, x[todo], labels[todo], eps, alpha, steps, random_start)
        with torch.no_grad():
            logits = model(candidate)
            loss = F.cross_entropy(logits, labels[todo], reduction="none")
        fooled = logits.argmax(1) != labels[todo]
        take = fooled | (loss > best_loss[todo])
        adv[todo[take]], best_loss[todo[take]] = candidate[take], loss[take]
        todo = todo[~fooled]
    return adv


def _signed_steps(
    model: nn.Module,
    images: torch.Tensor,
    start: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
) -> torch.Tensor:
    """torchattacks.PGD's loop from a given start: the same float operations in the same order, so the same result
    bit for bit (tested against torchattacks with a fixed seed). Written here because torchattacks builds an attack
    object, a loss module and copies of the images and labels at every call, which costs several percent of a small
    network's training step."""
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


def _uniform_start(images: torch.Tensor, eps: float) -> torch.Tensor:
    """A uniform point of the eps-ball around the images, clamped to [0, 1] (torchattacks.PGD's random start)."""
    return (images + torch.empty_like(images).uniform_(-eps, eps)).clamp_(0.0, 1.0)


# _pgd_plain and _pgd_early_stop take images and labels already detached and on the model's device (pgd does it once)
def _pgd_plain(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    random_start: bool,
) -> torch.Tensor:
    start = _uniform_start(images, eps) if random_start else images
    return _signed_steps(model, images, start, labels, eps, alpha, steps)


def _pgd_early_stop(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    random_start: bool,
) -> torch.Tensor:
    x = images
    adv = _uniform_start(x, eps) if random_start else x.clone()
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
            adv[keep] = (x[keep] + (stepped - x[keep]).clamp(-eps, eps)).clamp(0.0, 1.0)
            active = keep
    return adv
