"""Penalties that keep single-step adversarial training locally linear: GradAlign and ELLE(-A).

Each is a pure function of a network and a batch (`grad_align_penalty`, `local_linearity_error`), and one class that
FGSMTraining and NFGSMTraining take as `regularizer` (one config argument):

    regularizer: {class_path: robustrain.training.GradAlign, init_args: {weight: 0.2}}

The training loss is then CE(adversarial images) + weight * penalty. The penalty's points are drawn in the eps-ball of
the step's current radius (it follows an eps warm-up) and, as in both reference codes, are not clamped to the data's
range; the network is in the mode the training step is in (training mode, as both references).
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustrain.core.validation import check_in_range
from robustrain.signals import input_gradients

MIN_GRADIENT_NORM = 1e-8  # GradAlign leaves out examples whose input gradient is smaller (see grad_align_penalty)


def _input_gradient_with_graph(model: nn.Module, points: Tensor, labels: Tensor) -> Tensor:
    """Each example's own d CE / d input at `points` (of the summed loss), kept in the graph (create_graph) so that a
    loss of it can be backpropagated."""
    points = points.detach().requires_grad_(True)
    loss = F.cross_entropy(model(points), labels, reduction="sum")
    (grad,) = torch.autograd.grad(loss, points, create_graph=True)
    return grad


def grad_align_penalty(model: nn.Module, images: Tensor, labels: Tensor, eps: float) -> Tensor:
    """Andriushchenko & Flammarion's GradAlign penalty: 1 - mean cos(grad L(x), grad L(x + eta)), eta ~ U[-eps, eps].

    As tml-epfl/understanding-fast-adv-training's train.py for FGSM training: the gradient at x is a constant
    (detached; with their zero-start FGSM it is the attack's own gradient, here it is recomputed: one more forward in
    the network's training mode, which also moves BatchNorm's running statistics once more), the one at x + eta
    (not clamped to the data's range) is differentiated through (double backprop), and examples where either gradient
    vanishes are left out of the mean. Deviation: "vanishes" is a norm of the example's own gradient (of its loss, not
    of the batch mean) below MIN_GRADIENT_NORM (1e-8), not exactly 0:
    a confidently classified digit's input gradient can be 1e-12, and 1 / |grad| of it in the double backprop made
    the training gradients non-finite on MNIST (the reference only drops exact zeros). Where every example is left
    out the penalty is 0 (the reference gives NaN).

    Returns:
        A scalar tensor in [0, 2], differentiable in the network's parameters.
    """
    grad_x = input_gradients(model, images, labels)  # (B, C, H, W), detached
    noisy = images + torch.empty_like(images).uniform_(-eps, eps)
    grad_eta = _input_gradient_with_graph(model, noisy, labels)  # (B, C, H, W), in the graph
    a, b = grad_x.flatten(1), grad_eta.flatten(1)  # (B, C, H, W) -> (B, C*H*W)
    kept = (a.norm(dim=1) > MIN_GRADIENT_NORM) & (b.detach().norm(dim=1) > MIN_GRADIENT_NORM)
    # rows left out are replaced by ones before the norms, so that no 1 / |b| of a vanishing gradient enters the
    # double backprop (torch.where would carry an inf or NaN of the unselected rows into the gradient as 0 * inf)
    ones = torch.ones_like(a)
    a, b = torch.where(kept[:, None], a, ones), torch.where(kept[:, None], b, ones)
    cos = (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1))  # (B,)
    count = kept.sum()
    mean_cos = (cos * kept).sum() / count.clamp(min=1)
    return torch.where(count > 0, 1.0 - mean_cos, torch.zeros_like(mean_cos))


def local_linearity_error(model: nn.Module, images: Tensor, labels: Tensor, eps: float) -> Tensor:
    """ELLE's local linearity error (Abad Rocamora et al., ICLR 2024): mean over the batch of
    (L(x_c) - (1 - t) L(x_a) - t L(x_b))^2 with x_a, x_b ~ U(eps-ball of x), t ~ U[0, 1], x_c = (1 - t) x_a + t x_b.

    As LIONS-EPFL/ELLE's train.py: the points are not clamped to the data's range, and x_a, x_b and x_c go through the
    network in one forward pass of 3B images (so BatchNorm sees them as one batch). Only forward losses enter: its
    gradient is one ordinary backward. Under autocast (bf16-mixed) it runs in float32, as the reference: the error is
    the square of a small difference of losses, which bf16 logits shift by 4-11% on SmallCNN.

    Returns:
        A scalar tensor >= 0, differentiable in the network's parameters.
    """
    batch = len(images)
    if torch.is_autocast_enabled(images.device.type):  # the error is a small difference of losses: bf16 loses it
        with torch.autocast(device_type=images.device.type, enabled=False):
            return local_linearity_error(model, images.float(), labels, eps)
    ab = images.repeat(2, 1, 1, 1)  # (B, C, H, W) -> (2B, C, H, W): x_a then x_b
    ab = ab + eps * (2 * torch.rand(ab.shape, device=images.device, dtype=images.dtype) - 1)
    t = torch.rand(batch, 1, 1, 1, device=images.device, dtype=images.dtype)  # (B, 1, 1, 1)
    c = (1 - t) * ab[:batch] + t * ab[batch:]
    losses = F.cross_entropy(model(torch.cat((ab, c))), labels.repeat(3), reduction="none")  # (3B,)
    t = t.flatten()
    loss_a, loss_b, loss_c = losses[:batch], losses[batch : 2 * batch], losses[2 * batch :]
    return F.mse_loss(loss_c, (1 - t) * loss_a + t * loss_b)


class Regularizer(nn.Module):
    """A penalty added to a single-step method's training loss: loss = CE(adversarial) + weight * penalty.

    Subclasses implement `penalty`; an adaptive weight (`adaptive` True) keeps its state in buffers (saved in
    checkpoints, so a resumed run goes on with the weight it had) and updates it in `after_step` from the step's
    penalty, already averaged over the ranks, so that every rank holds the same weight.
    """

    adaptive = False

    def __init__(self, weight: float) -> None:
        super().__init__()
        check_in_range("weight", weight, 0.0, note="(the penalty's weight in the training loss)")
        self.weight = float(weight)

    def penalty(self, model: nn.Module, images: Tensor, labels: Tensor, eps: float) -> Tensor:
        raise NotImplementedError

    def current_weight(self) -> Tensor | float:
        """The weight the next step's penalty gets."""
        return self.weight

    def after_step(self, penalty: Tensor) -> None:
        """Update an adaptive weight from this step's penalty (the mean over ranks); called only when `adaptive`."""


class GradAlign(Regularizer):
    """GradAlign (Andriushchenko & Flammarion, NeurIPS 2020): weight * (1 - cos(grad at x, grad at x + eta)).

    Costs about 3x an FGSM step (two more input gradients, one of them double-backpropagated).

    Args:
        weight: lambda. The reference scripts use 0.2 at eps 8/255 on CIFAR-10 and grow it with eps
            (0.02 * 10^(eps * 255 / 8)); choose it per setting.
    """

    def __init__(self, weight: float = 0.2) -> None:
        super().__init__(weight)

    def penalty(self, model: nn.Module, images: Tensor, labels: Tensor, eps: float) -> Tensor:
        return grad_align_penalty(model, images, labels, eps)


class ELLE(Regularizer):
    """ELLE / ELLE-A (Abad Rocamora et al., ICLR 2024): weight * local linearity error on three points of the eps-ball.

    With `adaptive` (ELLE-A, LIONS-EPFL/ELLE's `--lambda_schedule onoff`) the weight starts at 0; after every step,
    when the step's error exceeds the mean of all earlier steps' errors by more than `sensitivity` standard deviations
    (once there are at least 3), the weight is set to `weight`, else it decays by `decay`. The statistics run over
    the whole training, as in the reference's list of every error (kept here as count, mean and sum of squared
    deviations, updated on the device). A step's loss uses the weight from before its own update, as the reference
    (which updates after backward). With `accumulate_grad_batches` > 1 the statistics move once per batch, not per
    optimizer step. The reference's loop also calls `optimizer.step()` twice per batch (a second clip-and-step after
    the scheduler's step), under which its published weights were tuned; robustrain steps once.

    Args:
        weight: lambda (ELLE), or the value ELLE-A switches on to (the reference: 1000 constant at eps 8/255 on
            CIFAR-10, 5000 at 10-20/255; ELLE-A 4000 at every eps). The error's scale depends on the data and eps:
            choose it per setting.
        adaptive: ELLE-A's schedule instead of a constant weight.
        decay: ELLE-A's decay per step (the reference: 0.99).
        sensitivity: ELLE-A's threshold in standard deviations (the reference: 2).
    """

    def __init__(self, weight: float = 1000.0, adaptive: bool = False, decay: float = 0.99, sensitivity: float = 2.0):
        super().__init__(weight)
        check_in_range("decay", decay, 0.0, 1.0, note="(ELLE-A's decay of the weight per step)")
        check_in_range("sensitivity", sensitivity, 0.0, note="(ELLE-A's threshold in standard deviations)")
        self.adaptive, self.decay, self.sensitivity = adaptive, decay, sensitivity
        # ELLE-A's state, float64 on the module's device: weight now, errors seen, their mean and sum of squares
        self.register_buffer("adaptive_state", torch.zeros(4, dtype=torch.float64))

    def penalty(self, model: nn.Module, images: Tensor, labels: Tensor, eps: float) -> Tensor:
        return local_linearity_error(model, images, labels, eps)

    def current_weight(self) -> Tensor | float:
        return self.adaptive_state[0] if self.adaptive else self.weight

    def after_step(self, penalty: Tensor) -> None:
        state = elle_a_update(self.adaptive_state, penalty, self.weight, self.decay, self.sensitivity)
        self.adaptive_state.copy_(state)


def elle_a_update(state: Tensor, error: Tensor, weight: float, decay: float, sensitivity: float) -> Tensor:
    """ELLE-A's step: (weight now, count, mean, M2) of the earlier errors and this step's error -> the next state.

    The weight becomes `weight` when count >= 3 and error > mean + sensitivity * std (std over the earlier errors,
    population), else it is multiplied by `decay`; then the error joins the statistics (Welford's update). All tensor
    operations, so no value leaves the device.
    """
    current, count, mean, m2 = state.unbind()
    error = error.detach().to(state.dtype)
    std = (m2 / count.clamp(min=1)).sqrt()
    jump = (count >= 3) & (error > mean + sensitivity * std)
    current = torch.where(jump, torch.full_like(current, weight), current * decay)
    count = count + 1
    diff = error - mean
    mean = mean + diff / count
    m2 = m2 + diff * (error - mean)
    return torch.stack([current, count, mean, m2])
