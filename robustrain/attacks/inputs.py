"""What every attack of robustrain.attacks takes and checks: [0, 1] images and L-inf settings in pixel units, gradients
enabled, the inputs on the model's device (read at every call, as the model may have moved)."""

import torch
from torch import nn

from robustrain.core.validation import check_in_range, check_positive_int


def check_linf_params(
    eps: float, alpha: float | None = None, steps: int | None = None, restarts: int = 1, prefix: str = ""
) -> None:
    """Raises ValueError naming the first parameter outside its valid range.

    Args:
        eps: L-inf radius in [0, 1] pixel units (8/255 on CIFAR-10, 0.3 on MNIST).
        alpha: Step size in [0, 1] pixel units; None: not checked.
        steps: Steps (>= 1); None: not checked.
        restarts: Random restarts (>= 1).
        prefix: Prefix of the names in the message, as the caller's arguments are called (e.g. "eval_").
    """
    check_in_range(f"{prefix}eps", eps, 0.0, 1.0, note="(pixel units of images in [0, 1], e.g. 8/255 or 0.3)")
    if alpha is not None:
        check_in_range(
            f"{prefix}alpha", alpha, 0.0, 1.0, note="(a step in [0, 1] pixel units; 0 only leaves the start)"
        )
    if steps is not None:
        check_positive_int(f"{prefix}steps", steps)
    check_positive_int(f"{prefix}restarts", restarts)


def step_warning(who: str, eps: float, alpha: float, prefix: str = "") -> str | None:
    """What an attack step larger than its radius does (a legal setting, but almost always a slip), or None.

    A signed step of alpha > eps leaves the eps-ball on every coordinate it moves and is clipped back onto the
    ball's surface, so every PGD iterate sits on a corner of the ball: the attack searches the corners only.
    """
    if not alpha > eps:
        return None
    return (
        f"{who}: {prefix}alpha={alpha:g} is larger than {prefix}eps={eps:g}: every step overshoots the eps-ball and "
        "is clipped back onto its surface, so the attack only visits the ball's corners (usual steps are eps/4 to "
        f"eps/10); legal, but usually a slip (set {prefix}alpha below {prefix}eps)"
    )


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
