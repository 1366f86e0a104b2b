"""First-order spatial attack: signed-gradient PGD on (rotation, tx, ty) per example (Engstrom et al. 2019)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustrain.core.validation import check_int
from robustrain.spatial.transforms import _check_range, rotate_translate


@dataclass
class FirstOrderResult:
    """Outcome of `first_order_attack`, one row per example.

    Attributes:
        params: (B, 3) highest-loss transform visited, rows (rotation_deg, tx_px, ty_px).
        loss: (B,) cross-entropy at `params`.
        fooled: (B,) bool, True if the image was misclassified at any visited transform.
    """

    params: Tensor
    loss: Tensor
    fooled: Tensor


def first_order_attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    steps: int = 200,
    rotation_step_deg: float = 0.6,
    translation_step_px: float = 0.25,
    rotation_deg_range: float = 30.0,
    translation_px_range: float = 3.0,
    random_start: bool = False,
    generator: torch.Generator | None = None,
) -> FirstOrderResult:
    """PGD on the transform parameters: params += step * sign(grad of the loss), projected to the box.

    "Exploring the Landscape of Spatial Robustness", Engstrom et al., ICML 2019: 200 steps of at
    most ~0.6 deg / 0.25 px each, in the box [-30, 30] deg x [-3, 3] px x [-3, 3] px. The gradient
    flows through `rotate_translate` (grid_sample). Every iterate, start included, is evaluated;
    the highest-loss one is returned. Model modes are the caller's business; gradients are taken
    with `torch.autograd.grad` w.r.t. the parameters only, so the model's `.grad` is untouched.
    Inside `torch.inference_mode` this cannot work (use Trainer(inference_mode=False)).

    Args:
        model: classifier mapping (B, C, H, W) images to (B, K) logits.
        x: (B, C, H, W) images.
        y: (B,) integer labels.
        steps: gradient steps (>= 0), default 200; 0 evaluates the start only.
        rotation_step_deg: rotation step per iteration in degrees, default 0.6.
        translation_step_px: translation step per iteration and axis in pixels, default 0.25.
        rotation_deg_range: rotations are kept in [-range, range] degrees, default 30.
        translation_px_range: tx and ty are kept in [-range, range] pixels, default 3.
        random_start: start uniformly in the box instead of at the identity.
        generator: random generator on x's device for the random start.

    Returns:
        A `FirstOrderResult`.

    Raises:
        ValueError: on negative steps, step sizes or ranges, or a translation range larger than the image.
    """
    check_int("steps", steps, minimum=0)
    _check_range("rotation_step_deg", rotation_step_deg)
    _check_range("translation_step_px", translation_step_px)
    _check_range("rotation_deg_range", rotation_deg_range)
    _check_range("translation_px_range", translation_px_range)
    batch_size, _, height, width = x.shape
    if translation_px_range > min(height, width):
        raise ValueError(
            f"translation_px_range={translation_px_range!r} is larger than the image: at most "
            f"min(height, width)={min(height, width)} px is allowed."
        )
    x = x.detach()
    bound = x.new_tensor([rotation_deg_range, translation_px_range, translation_px_range])  # (3,)
    step = x.new_tensor([rotation_step_deg, translation_step_px, translation_step_px])  # (3,)
    if random_start:
        unit = torch.rand(batch_size, 3, generator=generator, device=x.device, dtype=x.dtype)  # (B, 3)
        params = (unit * 2.0 - 1.0) * bound
    else:
        params = x.new_zeros(batch_size, 3)  # (B, 3) identity
    best_params = params.clone()
    best_loss = x.new_full((batch_size,), -torch.inf)
    fooled = torch.zeros(batch_size, dtype=torch.bool, device=x.device)
    with torch.enable_grad():
        for iteration in range(steps + 1):
            params.requires_grad_(True)
            logits = model(rotate_translate(x, params[:, 0], params[:, 1:]))  # (B, K)
            loss = F.cross_entropy(logits, y, reduction="none")  # (B,)
            with torch.no_grad():
                improved = loss > best_loss
                best_loss = torch.where(improved, loss, best_loss)
                best_params = torch.where(improved.unsqueeze(1), params, best_params)
                fooled |= logits.argmax(dim=1) != y
            if iteration == steps:
                break
            (grad,) = torch.autograd.grad(loss.sum(), params)
            with torch.no_grad():
                params = torch.maximum(torch.minimum(params + step * grad.sign(), bound), -bound)  # box projection
    return FirstOrderResult(params=best_params.detach(), loss=best_loss.detach(), fooled=fooled)
