"""Gradient alignment (Andriushchenko & Flammarion, NeurIPS 2020): how linear the loss is inside the eps-ball.

cos(grad_x L(x, y), grad_x L(x + eta, y)) with eta ~ U[-eps, eps]^d, averaged over examples. Near 1 while FGSM
training is healthy; it falls towards 0 when the network becomes locally highly non-linear, which is when
catastrophic overfitting sets in (their Fig. 4: about 0.98 -> 0.05 on CIFAR-10 PreActResNet18 at eps 8/255).

As their monitoring code (tml-epfl/understanding-fast-adv-training, utils.get_grad_np / avg_cos_np): the network in
the caller's mode (they use eval mode), the noisy point clamped to the data's range, and a cosine with a zero
gradient counted as 1.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def input_gradients(model: nn.Module, images: Tensor, labels: Tensor) -> Tensor:
    """d (sum of the per-example cross-entropy) / d input, at the given images (so each row is that example's own
    gradient, whatever the batch size). Runs with gradients on, also inside no_grad code."""
    with torch.enable_grad():
        x = images.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x), labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def cosine_per_example(a: Tensor, b: Tensor) -> Tensor:
    """Cosine between the flattened rows of a and b, (B, ...) x (B, ...) -> (B,); 1 where either row is zero."""
    a, b = a.flatten(1).double(), b.flatten(1).double()  # (B, C, H, W) -> (B, C*H*W)
    norms = a.norm(dim=1) * b.norm(dim=1)
    cos = (a * b).sum(dim=1) / norms
    return torch.where(norms > 0, cos, torch.ones_like(cos)).float()


def gradient_alignment(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    eps: float,
    box: tuple[float, float] = (0.0, 1.0),
) -> Tensor:
    """Per-example cosine between the input gradients at x and at clamp(x + eta, box), eta ~ U[-eps, eps].

    Args:
        model: The network, in whatever mode the caller set (eval mode for a monitor).
        images: (B, C, H, W) clean images in the data's range.
        labels: (B,) labels.
        eps: L-inf radius of the noise, in pixel units.
        box: The data's value range; the noisy images are clamped to it ((0, 1) for plain images).

    Returns:
        (B,) cosines in [-1, 1]; the noise comes from torch's global generator (seed it, or fork it, to reproduce).
    """
    grad_x = input_gradients(model, images, labels)
    noisy = (images + torch.empty_like(images).uniform_(-eps, eps)).clamp_(*box)
    grad_eta = input_gradients(model, noisy, labels)
    return cosine_per_example(grad_x, grad_eta)
