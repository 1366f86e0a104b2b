"""L-inf attacks (FGSM, FGSM-RS, PGD) through torchattacks, wrapped so its model-mode and device faults cannot leak.

torchattacks' `Attack.__call__` switches the model to eval() (or to train() with string-matched BatchNorm rules) and
restores only `train()`; it also binds the device at construction. We therefore build the attack on the model's
current device at every call and run its `forward` directly, leaving model modes to the caller
(`robustrain.modes`). Inputs and outputs are images in [0, 1]; eps and alpha are in [0, 1] pixel units.
"""

from typing import Literal

import torch
import torch.nn.functional as F
import torchattacks
from torch import nn

FGSM_INITS = ("random", "zero")


def check_linf_params(eps: float, alpha: float | None = None, steps: int | None = None, restarts: int = 1) -> None:
    """Raises ValueError naming the first parameter outside its valid range."""
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"eps={eps} must be in [0, 1] (pixel units of images in [0, 1], e.g. 8/255 or 0.3)")
    if alpha is not None and not alpha > 0.0:
        raise ValueError(f"alpha={alpha} must be > 0 (step size in [0, 1] pixel units)")
    if steps is not None and steps < 1:
        raise ValueError(f"steps={steps} must be >= 1")
    if restarts < 1:
        raise ValueError(f"restarts={restarts} must be >= 1")


def require_grad_mode() -> None:
    """Raises RuntimeError, saying how to fix it, when inference mode forbids the gradients attacks need."""
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            "adversarial attacks need gradients but inference mode is on: run the Trainer with inference_mode=False "
            "(robustrain's CLI does this by default; set trainer.inference_mode: false in your config)"
        )


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's parameters (torchattacks must be told it at every call)."""
    return next(model.parameters()).device


def fgsm(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    alpha: float,
    init: Literal["random", "zero"] = "random",
) -> torch.Tensor:
    """One signed-gradient step of size alpha from a random (FGSM-RS, Wong et al. 2020) or zero start.

    "random": delta ~ U[-eps, eps], clamped so x + delta is in [0, 1] (torchattacks.FFGSM); "zero": delta = 0
    (torchattacks.PGD with one step and no random start). Then x + delta + alpha * sign(grad) is projected onto the
    eps-ball around x and onto [0, 1].
    """
    check_linf_params(eps, alpha)
    if init not in FGSM_INITS:
        raise ValueError(f"init={init!r} is not valid; choose one of {list(FGSM_INITS)}")
    require_grad_mode()
    with torch.enable_grad():
        if init == "random":
            attack = torchattacks.FFGSM(model, eps=eps, alpha=alpha)
        else:
            attack = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=1, random_start=False)
        attack.set_device(model_device(model))
        return attack.forward(images, labels).detach()


def pgd(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    random_start: bool = True,
    restarts: int = 1,
) -> torch.Tensor:
    """PGD (Madry et al. 2018): `steps` signed-gradient steps of size alpha, each projected to the eps-ball and [0, 1].

    With restarts > 1 each example keeps the restart with the highest loss (Wong et al.'s PGD-50-10 protocol).
    """
    check_linf_params(eps, alpha, steps, restarts)
    require_grad_mode()
    best, best_loss = images.detach().clone(), None
    with torch.enable_grad():
        for _ in range(restarts):
            attack = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start)
            attack.set_device(model_device(model))
            adv = attack.forward(images, labels).detach()
            if restarts == 1:
                return adv
            with torch.no_grad():
                loss = F.cross_entropy(model(adv), labels, reduction="none")
            if best_loss is None:
                best, best_loss = adv, loss
            else:
                better = loss > best_loss
                best[better], best_loss = adv[better], torch.where(better, loss, best_loss)
    return best
