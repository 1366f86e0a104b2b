"""Abnormal adversarial examples (Lin et al., NeurIPS 2023, tmllab/2023_NeurIPS_AAER).

An FGSM training example is *abnormal* when its loss at the adversarial point is lower than at the point the step
started from: the one-step attack made it easier, not harder. A few exist in healthy training; their number rises
sharply when catastrophic overfitting sets in. The training step already computes both losses (the attack's
forward at the start, the training forward at the adversarial point), so the signal costs nothing.
"""

from torch import Tensor


def abnormal_examples(loss_start: Tensor, loss_adversarial: Tensor) -> Tensor:
    """(B,) bool: loss at the start of the FGSM step > loss at its adversarial point (AAER's loss_before > loss_after).

    Args:
        loss_start: (B,) per-example loss where the step started (x for a zero start, x + delta_0 for a random one).
        loss_adversarial: (B,) per-example loss at the adversarial images.
    """
    if loss_start.shape != loss_adversarial.shape:
        raise ValueError(
            f"loss_start and loss_adversarial must have the same shape, got {tuple(loss_start.shape)} and "
            f"{tuple(loss_adversarial.shape)}"
        )
    return loss_start > loss_adversarial


def abnormal_fraction(loss_start: Tensor, loss_adversarial: Tensor) -> float:
    """The share of abnormal examples in a batch, in [0, 1] (nan for an empty batch)."""
    flags = abnormal_examples(loss_start, loss_adversarial)
    return flags.float().mean().item() if flags.numel() else float("nan")
