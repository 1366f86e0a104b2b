"""Batched evaluation of a classifier under many rotation + translation transforms per image."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustrain.core.validation import check_choice, check_positive_int
from robustrain.spatial.transforms import (
    ALIGN_CORNERS,
    affine_matrices,
    axis_mask,
    grid_parameters,
    grid_shape,
    random_parameters,
)

SELECTION_RULES = ("misclassified_then_loss", "loss")


@dataclass
class TransformEvaluation:
    """What `evaluate_transforms` measured.

    Attributes:
        robust_correct: (B,) bool, True where the image is classified correctly under every transform.
        loss: (B, T) cross-entropy per image per transform; None in early-exit mode.
        correct: (B, T) bool correctness per image per transform; None in early-exit mode.
    """

    robust_correct: Tensor
    loss: Tensor | None = None
    correct: Tensor | None = None


def _check_params(params: Tensor, batch_size: int) -> None:
    shared = params.dim() == 2 and params.shape[1] == 3
    per_example = params.dim() == 3 and params.shape[0] == batch_size and params.shape[2] == 3
    if not (shared or per_example) or params.shape[-2] < 1:
        raise ValueError(
            f"params has shape {tuple(params.shape)}: (T, 3) shared transforms or ({batch_size}, T, 3) "
            "per-example transforms of (rotation_deg, tx_px, ty_px), with T >= 1, are allowed."
        )


def _check_translations(params: Tensor, height: int, width: int) -> None:
    """rotate_translate's bound |tx| <= W, |ty| <= H, checked once per evaluation (one host sync), not per chunk."""
    too_far = params[..., 1:].abs() > params.new_tensor([width, height])  # (..., 2)
    if bool(too_far.any()):
        worst = params[..., 1:][too_far.any(dim=-1)][0].tolist()
        raise ValueError(
            f"translation_px={worst} (tx, ty) is larger than the image: |tx| <= width={width} and "
            f"|ty| <= height={height} px are allowed."
        )


def _sampling_grids(params: Tensor, height: int, width: int) -> Tensor:
    """The grid_sample grids of rotate_translate for n transforms (rows rotation_deg, tx_px, ty_px): (n, H, W, 2)."""
    theta = affine_matrices(params[:, 0], params[:, 1:], height, width)  # (n, 2, 3)
    return F.affine_grid(theta, [params.shape[0], 1, height, width], align_corners=ALIGN_CORNERS)


def _forward_chunk(model: nn.Module, x: Tensor, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
    """Loss and correctness of every image under every transform of a chunk, in one forward pass.

    The images are transformed as by rotate_translate (translations checked by the caller). Shared transforms build
    one sampling grid per transform, reused for every image, instead of one per image-transform.

    Args:
        model: classifier returning logits.
        x: (B, C, H, W) images.
        y: (B,) labels.
        params: (t, 3) transforms shared by all images, or (B, t, 3) per-example transforms.

    Returns:
        loss (B, t) and correct (B, t).
    """
    batch_size, _, height, width = x.shape
    chunk = params.shape[-2]
    images = x.unsqueeze(1).expand(-1, chunk, -1, -1, -1).flatten(0, 1)  # (B, C, H, W) -> (B*t, C, H, W)
    if params.dim() == 2:
        grids = _sampling_grids(params, height, width)  # (t, H, W, 2)
        grids = grids.unsqueeze(0).expand(batch_size, -1, -1, -1, -1).flatten(0, 1)  # -> (B*t, H, W, 2)
    else:
        grids = _sampling_grids(params.flatten(0, 1), height, width)  # (B, t, 3) -> (B*t, H, W, 2)
    transformed = F.grid_sample(images, grids, mode="bilinear", padding_mode="zeros", align_corners=ALIGN_CORNERS)
    labels = y.unsqueeze(1).expand(-1, chunk).flatten()  # (B,) -> (B*t,)
    logits = model(transformed)  # (B*t, K)
    loss = F.cross_entropy(logits, labels, reduction="none")  # (B*t,)
    correct = logits.argmax(dim=1) == labels  # (B*t,)
    return loss.view(batch_size, chunk), correct.view(batch_size, chunk)


def evaluate_transforms(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    params: Tensor,
    chunk_size: int = 32,
    early_exit: bool = False,
) -> TransformEvaluation:
    """Evaluates the model on every image under every transform, `chunk_size` transforms per forward.

    Each forward pass sees B x chunk_size transformed images, so `chunk_size` bounds peak memory
    whatever the grid size. Runs under `torch.no_grad()`; the model's train/eval mode is the
    caller's business (BatchNorm in train mode makes results depend on the chunking).

    Args:
        model: classifier mapping (N, C, H, W) images to (N, K) logits.
        x: (B, C, H, W) images.
        y: (B,) integer labels.
        params: (T, 3) transforms shared by all images, or (B, T, 3) per-example transforms,
            rows (rotation_deg, tx_px, ty_px) as in `rotate_translate`.
        chunk_size: transforms per forward pass (>= 1), default 32.
        early_exit: accuracy-only mode: images already misclassified are dropped from later chunks,
            and only `robust_correct` is returned (loss and correct are None).

    Returns:
        A `TransformEvaluation`.

    Raises:
        ValueError: on bad shapes or chunk_size < 1.
    """
    check_positive_int("chunk_size", chunk_size)
    if x.dim() != 4 or y.shape != (x.shape[0],):
        raise ValueError(f"x {tuple(x.shape)} and y {tuple(y.shape)}: (B, C, H, W) and (B,) are required.")
    batch_size = x.shape[0]
    _check_params(params, batch_size)
    params = params.to(device=x.device, dtype=x.dtype)  # (T, 3) shared or (B, T, 3)
    _check_translations(params, *x.shape[-2:])
    n_transforms = params.shape[-2]
    with torch.no_grad():
        if early_exit:
            return TransformEvaluation(robust_correct=_robust_correct_early_exit(model, x, y, params, chunk_size))
        losses, corrects = [], []
        for start in range(0, n_transforms, chunk_size):
            loss, correct = _forward_chunk(model, x, y, params[..., start : start + chunk_size, :])
            losses.append(loss)
            corrects.append(correct)
        loss, correct = torch.cat(losses, dim=1), torch.cat(corrects, dim=1)  # (B, T), (B, T)
    return TransformEvaluation(robust_correct=correct.all(dim=1), loss=loss, correct=correct)


def _robust_correct_early_exit(model: nn.Module, x: Tensor, y: Tensor, params: Tensor, chunk_size: int) -> Tensor:
    """Per-image robust correctness, forwarding only images not yet fooled (params (T, 3) or (B, T, 3))."""
    robust_correct = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)  # (B,)
    active = torch.arange(x.shape[0], device=x.device)  # indices of images still correct
    for start in range(0, params.shape[-2], chunk_size):
        chunk = params[..., start : start + chunk_size, :]
        _, correct = _forward_chunk(model, x[active], y[active], chunk if params.dim() == 2 else chunk[active])
        still_correct = correct.all(dim=1)  # (B_active,)
        robust_correct[active[~still_correct]] = False
        active = active[still_correct]
        if active.numel() == 0:
            break
    return robust_correct


def grid_accuracy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    params: Tensor | None = None,
    chunk_size: int = 32,
    early_exit: bool = True,
) -> Tensor:
    """Grid (robust) accuracy: an image counts only if it is correct under every transform.

    Args:
        model: classifier returning logits.
        x: (B, C, H, W) images.
        y: (B,) labels.
        params: (T, 3) transforms; default `grid_parameters()` (31 rotations x 5 x 5 translations,
            +-30 deg, +-3 px: the CIFAR-10 grid of Engstrom et al.).
        chunk_size: transforms per forward pass.
        early_exit: drop fooled images from later chunks (same result, less compute).

    Returns:
        Scalar float tensor in [0, 1].
    """
    params = grid_parameters() if params is None else params
    result = evaluate_transforms(model, x, y, params, chunk_size=chunk_size, early_exit=early_exit)
    return result.robust_correct.float().mean()


def per_transform_accuracy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    rotation_deg_range: float = 30.0,
    n_rotations: int = 31,
    translation_px_range: float = 3.0,
    n_translations: int = 5,
    chunk_size: int = 32,
) -> tuple[Tensor, Tensor]:
    """Accuracy of each grid transform, averaged over the images (the one-axis ImageNet experiment's measure).

    Args:
        model: classifier returning logits.
        x: (B, C, H, W) images.
        y: (B,) labels.
        rotation_deg_range: rotations span [-range, range] degrees.
        n_rotations: number of rotations.
        translation_px_range: tx and ty each span [-range, range] pixels.
        n_translations: translations per axis.
        chunk_size: transforms per forward pass.

    Returns:
        (mean, accuracy): the scalar accuracy over all B x T transformed copies, and the
        (n_rotations, n_translations, n_translations) accuracy indexed [rotation, tx, ty];
        `accuracy.flatten(1)` is the (n_rotations, n_translations**2) heatmap.
    """
    params = grid_parameters(rotation_deg_range, n_rotations, translation_px_range, n_translations)
    correct = evaluate_transforms(model, x, y, params, chunk_size=chunk_size).correct.float()  # (B, T)
    accuracy = correct.mean(dim=0).view(grid_shape(n_rotations, n_translations))  # (T,) -> (R, N, N)
    return correct.mean(), accuracy


def random_correct(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    rotation_deg_range: float = 30.0,
    translation_px_range: float = 3.0,
    generator: torch.Generator | None = None,
    translation_axes: str = "both",
) -> Tensor:
    """Per image, whether it is classified correctly under one uniformly random transform: (B,) bool.

    Args:
        model: classifier returning logits.
        x: (B, C, H, W) images.
        y: (B,) labels.
        rotation_deg_range: rotations uniform in [-range, range] degrees.
        translation_px_range: tx, ty uniform in [-range, range] pixels.
        generator: random generator on x's device, for reproducible draws.
        translation_axes: "both", or "x" / "y": the other axis is not translated (its draw is zeroed).
    """
    params = random_parameters(x.shape[0], rotation_deg_range, translation_px_range, generator, x.device)
    params = params * axis_mask(translation_axes).to(x.device)  # (B, 3), untranslated axes zeroed
    return evaluate_transforms(model, x, y, params.unsqueeze(1), chunk_size=1).robust_correct  # (B, 3) -> (B, 1, 3)


def random_accuracy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    rotation_deg_range: float = 30.0,
    translation_px_range: float = 3.0,
    generator: torch.Generator | None = None,
    translation_axes: str = "both",
) -> Tensor:
    """Accuracy under one uniformly random transform per image (the "random" column of Engstrom et al.; arguments
    as in `random_correct`).

    Returns:
        Scalar float tensor in [0, 1].
    """
    correct = random_correct(model, x, y, rotation_deg_range, translation_px_range, generator, translation_axes)
    return correct.float().mean()


def select_worst(loss: Tensor, correct: Tensor, rule: str = "misclassified_then_loss") -> Tensor:
    """Picks each example's worst candidate transform; ties go to the first candidate.

    Args:
        loss: (B, K) loss of each candidate.
        correct: (B, K) bool, whether each candidate is classified correctly.
        rule: "misclassified_then_loss" (a misclassified candidate first, the highest loss among
            them, else the highest loss: Engstrom et al.'s TensorFlow code) or "loss" (the highest
            loss only: their spatial-pytorch code).

    Returns:
        (B,) long index of the selected candidate.

    Raises:
        ValueError: on an unknown rule or mismatched shapes.
    """
    check_choice("rule", rule, SELECTION_RULES)
    if loss.dim() != 2 or loss.shape != correct.shape:
        raise ValueError(f"loss {tuple(loss.shape)} and correct {tuple(correct.shape)} must both be (B, K).")
    highest_loss = loss.argmax(dim=1)  # (B,)
    if rule == "loss":
        return highest_loss
    wrong = ~correct.bool()
    highest_wrong_loss = torch.where(wrong, loss, torch.full_like(loss, -torch.inf)).argmax(dim=1)  # (B,)
    return torch.where(wrong.any(dim=1), highest_wrong_loss, highest_loss)


def worst_of_k(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    k: int = 10,
    rotation_deg_range: float = 30.0,
    translation_px_range: float = 3.0,
    rule: str = "misclassified_then_loss",
    include_identity: bool = False,
    generator: torch.Generator | None = None,
    chunk_size: int = 32,
    translation_axes: str = "both",
) -> tuple[Tensor, Tensor]:
    """Worst-of-k search: per example, k uniformly random transforms, keep the worst (no grad).

    Use it both to evaluate and to pick worst-of-k training images
    (`rotate_translate(x, params[:, 0], params[:, 1:])`); put BatchNorm in eval mode first if
    the search should not depend on the batch.

    Args:
        model: classifier returning logits.
        x: (B, C, H, W) images.
        y: (B,) labels.
        k: random candidates per example (>= 1), default 10.
        rotation_deg_range: rotations uniform in [-range, range] degrees.
        translation_px_range: tx, ty uniform in [-range, range] pixels.
        rule: selection rule of `select_worst`.
        include_identity: also offer the untransformed image as a candidate (k + 1 in all, as in
            spatial-pytorch); it wins ties.
        generator: random generator on x's device, for reproducible draws.
        chunk_size: candidates per forward pass.
        translation_axes: "both", or "x" / "y": the other axis is not translated (its draws are zeroed).

    Returns:
        (params, correct): the selected (B, 3) transforms and (B,) bool correctness under them.

    Raises:
        ValueError: on k < 1 or an unknown rule.
    """
    check_positive_int("k", k)
    check_choice("rule", rule, SELECTION_RULES)
    batch_size = x.shape[0]
    draws = random_parameters(batch_size * k, rotation_deg_range, translation_px_range, generator, x.device)
    draws = draws * axis_mask(translation_axes).to(x.device)  # untranslated axes zeroed
    candidates = draws.view(batch_size, k, 3)  # (B*k, 3) -> (B, k, 3)
    if include_identity:
        candidates = torch.cat([candidates.new_zeros(batch_size, 1, 3), candidates], dim=1)  # (B, k+1, 3)
    result = evaluate_transforms(model, x, y, candidates, chunk_size=chunk_size)
    index = select_worst(result.loss, result.correct, rule)  # (B,)
    rows = torch.arange(batch_size, device=x.device)
    return candidates[rows, index].to(x.dtype), result.correct[rows, index]


def worst_of_k_accuracy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    k: int = 10,
    rotation_deg_range: float = 30.0,
    translation_px_range: float = 3.0,
    rule: str = "misclassified_then_loss",
    include_identity: bool = False,
    generator: torch.Generator | None = None,
    chunk_size: int = 32,
    translation_axes: str = "both",
) -> Tensor:
    """Accuracy under the worst-of-k transform of each image (arguments as in `worst_of_k`).

    Returns:
        Scalar float tensor in [0, 1].
    """
    _, correct = worst_of_k(
        model,
        x,
        y,
        k,
        rotation_deg_range,
        translation_px_range,
        rule,
        include_identity,
        generator,
        chunk_size,
        translation_axes,
    )
    return correct.float().mean()
