"""N-FGSM (de Jorge et al., NeurIPS 2022, "Make Some Noise"), L-inf: a signed step of alpha from a noise start of k eps,
not projected back onto the eps-ball.

As pdejorge/N-FGSM's train.py (commit on its main branch, `--unif 2 --alpha 8 --clip -1` at eps 8/255):
eta ~ U[-k eps, k eps], x + eta kept in the box; delta = eta + alpha * sign(grad_x CE(x + eta)); x + delta kept in the
box; with `clip` the perturbation is also clipped to [-clip * eps, clip * eps] (off by default: the method's point).
Deviations from that code, none of which changes the distribution of the training images:
- pixel units: the reference works on normalised images with eps / std per channel; here images are in the data's box
  and the network normalises, so eta ~ U[-k eps, k eps] in pixels is the same noise;
- the noise is drawn with one `uniform_` over the whole batch, not one call per channel, so the same seed gives other
  numbers than the reference's per-channel draws (tests/test_attacks_nfgsm.py checks the formula bit for bit against
  an independent few-line version in pixel units);
- the box is the data's `input_range` (e.g. [-beta, 1 + beta] with injected features), not only [0, 1].
Cost: one forward-backward, as FGSM. Model modes are the caller's (robustrain.core.train_eval_modes).
"""

import torch
import torch.nn.functional as F
from torch import nn

from robustrain.attacks.box import UNIT_BOX, check_box
from robustrain.attacks.inputs import check_linf_params, model_device, require_grad_mode
from robustrain.core.validation import check_in_range

NFGSM_NOISE = 2.0  # the paper's k: noise of 2 eps


def check_nfgsm_params(eps: float, alpha: float, noise: float, clip: float | None) -> None:
    """Raises ValueError naming the first N-FGSM setting outside its range."""
    check_linf_params(eps, alpha)
    check_in_range("noise", noise, 0.0, note="(the noise radius in units of eps; the paper's k = 2)")
    if clip is not None:
        check_in_range("clip", clip, 0.0, low_open=True, note="(in units of eps), or None: no clipping (the paper)")


def nfgsm(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    alpha: float,
    noise: float = NFGSM_NOISE,
    clip: float | None = None,
    box: tuple[float, float] = UNIT_BOX,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The N-FGSM training images and the per-example loss at the noisy start.

    Args:
        model: Classifier on images in the box; its mode is the caller's.
        images: Clean images (B, C, H, W) in the box; moved to the model's device.
        labels: int64 (B,) labels.
        eps: L-inf radius in [0, 1] pixel units; the noise and the clip are in units of it.
        alpha: Step size in pixel units (the paper: alpha = eps).
        noise: k: eta ~ U[-k eps, k eps] (the paper: 2; 0: plain FGSM from x without projection).
        clip: None (the paper): delta is not projected; c > 0: delta clipped to [-c eps, c eps].
        box: (lowest, highest) pixel value of the start and of the training images.

    Returns:
        (x + delta in the box, (B,) cross-entropy at x + eta), both on the model's device. The start's loss feeds
        Lin et al.'s abnormal-example signal (robustrain.signals.abnormal_examples).
    """
    check_nfgsm_params(eps, alpha, noise, clip)
    check_box(box)
    require_grad_mode()
    device = model_device(model)
    x, labels = images.detach().to(device), labels.to(device)
    low, high = box
    # the reference's arithmetic, in its order (so that a few-line transcription matches bit for bit): eta and delta
    # are kept in [low - x, high - x], i.e. x + eta and x + delta in the box
    eta = torch.empty_like(x).uniform_(-noise * eps, noise * eps)
    eta = torch.maximum(torch.minimum(eta, high - x), low - x)
    with torch.enable_grad():
        eta.requires_grad_(True)
        losses = F.cross_entropy(model(x + eta), labels, reduction="none")
        (grad,) = torch.autograd.grad(losses.mean(), eta)
    delta = eta.detach() + alpha * torch.sign(grad)
    delta = torch.maximum(torch.minimum(delta, high - x), low - x)
    if clip is not None:
        delta = delta.clamp(-clip * eps, clip * eps)
    return x + delta, losses.detach()
