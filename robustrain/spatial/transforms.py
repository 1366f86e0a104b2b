"""Rotation + translation of image batches with per-example parameters, and the parameter grids of Engstrom et al."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from robustrain.core.validation import check_choice, check_in_range, check_positive_int

# One convention for both affine_grid and grid_sample: with align_corners=False the normalised
# coordinate of pixel index u is (2u + 1) / W - 1, so one pixel is exactly 2 / W normalised units,
# the image centre ((W - 1) / 2 in pixel indices) is 0, and the identity matrix samples every pixel
# centre. A mismatch between the two calls shifts or scales the image (the spatial-pytorch bug).
ALIGN_CORNERS = False
TRANSLATION_AXES = ("both", "x", "y")


def _check_range(name: str, value: float) -> None:
    check_in_range(name, value, 0.0)


def _check_count(name: str, value: int) -> None:
    check_positive_int(name, value)


def _check_inputs(x: Tensor, rotation_deg: Tensor, translation_px: Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"x has shape {tuple(x.shape)}: a batch (B, C, H, W) is required.")
    batch_size, _, height, width = x.shape
    if rotation_deg.shape != (batch_size,):
        raise ValueError(f"rotation_deg has shape {tuple(rotation_deg.shape)}: ({batch_size},) is required.")
    if translation_px.shape != (batch_size, 2):
        raise ValueError(f"translation_px has shape {tuple(translation_px.shape)}: ({batch_size}, 2) is required.")
    limits_px = translation_px.new_tensor([width, height])
    too_far = translation_px.detach().abs() > limits_px  # (B, 2); one host sync per call
    if bool(too_far.any()):
        worst = translation_px.detach()[too_far.any(dim=1)][0].tolist()
        raise ValueError(
            f"translation_px={worst} (tx, ty) is larger than the image: |tx| <= width={width} and "
            f"|ty| <= height={height} px are allowed."
        )


def affine_matrices(rotation_deg: Tensor, translation_px: Tensor, height: int, width: int) -> Tensor:
    """Builds the normalised affine_grid matrices of `rotate_translate`.

    The forward map, in pixel units about the image centre with y pointing down, is
    p_out = R(rotation) p_in + t. affine_grid wants the inverse map from output to input coordinates
    in normalised units n = S p, S = diag(2 / W, 2 / H): n_in = S R^-1 S^-1 n_out - S R^-1 t.
    The diagonal is exactly cos(angle), so zero parameters give exactly the identity matrix.

    Args:
        rotation_deg: (B,) rotation in degrees, positive = counter-clockwise as displayed.
        translation_px: (B, 2) translation (tx, ty) in pixels, +tx moves content right, +ty down.
        height: image height H in pixels.
        width: image width W in pixels.

    Returns:
        (B, 2, 3) matrices for `torch.nn.functional.affine_grid` with align_corners=False.
    """
    angle_rad = torch.deg2rad(rotation_deg)
    cos, sin = torch.cos(angle_rad), torch.sin(angle_rad)  # (B,), (B,)
    tx_px, ty_px = translation_px[:, 0], translation_px[:, 1]  # (B,), (B,)
    # R^-1 for a display-counter-clockwise rotation with y down: [[cos, -sin], [sin, cos]].
    inv_tx_px = cos * tx_px - sin * ty_px
    inv_ty_px = sin * tx_px + cos * ty_px
    row_x = torch.stack([cos, -sin * (height / width), -inv_tx_px * (2.0 / width)], dim=-1)  # (B, 3)
    row_y = torch.stack([sin * (width / height), cos, -inv_ty_px * (2.0 / height)], dim=-1)  # (B, 3)
    return torch.stack([row_x, row_y], dim=1)  # (B, 2, 3)


def rotate_translate(x: Tensor, rotation_deg: Tensor, translation_px: Tensor) -> Tensor:
    """Rotates each image about its centre, then translates it; bilinear, zero fill, one grid_sample.

    Rotation is isotropic in pixel units on non-square images. Zero parameters reproduce the input,
    integer translations are exact pixel shifts with zero fill, and +90 deg equals
    `torch.rot90(x, 1, dims=(-2, -1))` on square images. Differentiable in x and in both parameters.

    Args:
        x: (B, C, H, W) images, any value range (zero fill means value 0 outside the image).
        rotation_deg: (B,) rotation angles in degrees; positive = counter-clockwise as displayed
            (row 0 at the top), the direction of `torch.rot90` and the opposite of
            `torchvision.transforms.functional.affine`, whose positive angle is clockwise.
        translation_px: (B, 2) translations (tx, ty) in pixels, applied after the rotation;
            +tx moves content right, +ty moves content down. |tx| <= W and |ty| <= H.

    Returns:
        (B, C, H, W) transformed images, same dtype and device as x.

    Raises:
        ValueError: on wrong shapes or a translation larger than the image.
    """
    rotation_deg = torch.as_tensor(rotation_deg, dtype=x.dtype, device=x.device)
    translation_px = torch.as_tensor(translation_px, dtype=x.dtype, device=x.device)
    _check_inputs(x, rotation_deg, translation_px)
    _, _, height, width = x.shape
    theta = affine_matrices(rotation_deg, translation_px, height, width)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=ALIGN_CORNERS)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=ALIGN_CORNERS)


def _symmetric_linspace(value_range: float, count: int) -> Tensor:
    values = torch.linspace(-value_range, value_range, count, dtype=torch.float64)
    if count % 2 == 1:
        values[count // 2] = 0.0  # exact identity (also count == 1, where linspace would give -range)
    return values


def axis_mask(translation_axes: str = "both") -> Tensor:
    """(3,) multiplier of (rotation_deg, tx_px, ty_px) rows that zeroes the axes not translated."""
    _check_axes(translation_axes)
    return torch.tensor([1.0, float(translation_axes in ("both", "x")), float(translation_axes in ("both", "y"))])


def grid_shape(n_rotations: int, n_translations: int, translation_axes: str = "both") -> tuple[int, ...]:
    """The grid's order, rotation first: `grid_parameters(...).view(*grid_shape(...), 3)` indexes
    [rotation, tx, ty] for "both" and [rotation, t] for "x" or "y"; so does any (T,) per-transform measure."""
    _check_axes(translation_axes)
    if translation_axes == "both":
        return (n_rotations, n_translations, n_translations)
    return (n_rotations, n_translations)


def _check_axes(translation_axes: str) -> None:
    check_choice("translation_axes", translation_axes, TRANSLATION_AXES)


def grid_parameters(
    rotation_deg_range: float = 30.0,
    n_rotations: int = 31,
    translation_px_range: float = 3.0,
    n_translations: int = 5,
    translation_axes: str = "both",
) -> Tensor:
    """The grid of Engstrom et al. 2019: linspace rotations x linspace tx x linspace ty.

    The CIFAR-10 defaults give 31 x 5 x 5 = 775 transforms (2 deg steps, tx, ty in
    {-3, -1.5, 0, 1.5, 3}). Odd counts include exactly 0, so the identity is in the grid;
    a count of 1 gives only 0.

    Args:
        rotation_deg_range: rotations span [-range, range] degrees.
        n_rotations: number of rotations.
        translation_px_range: tx and ty each span [-range, range] pixels.
        n_translations: number of translations per axis.
        translation_axes: "both" (the full grid), or "x" / "y": only that axis translated (the other one 0).

    Returns:
        (T, 3) float32 rows (rotation_deg, tx_px, ty_px), T = n_rotations * n_translations**2 for "both" and
        n_rotations * n_translations otherwise, in the order of `grid_shape` (rotation first).

    Raises:
        ValueError: on a negative range or a count < 1.
    """
    _check_range("rotation_deg_range", rotation_deg_range)
    _check_range("translation_px_range", translation_px_range)
    _check_count("n_rotations", n_rotations)
    _check_count("n_translations", n_translations)
    rotations_deg = _symmetric_linspace(rotation_deg_range, n_rotations)
    translations_px = _symmetric_linspace(translation_px_range, n_translations)
    rot, tx, ty = torch.meshgrid(rotations_deg, translations_px, translations_px, indexing="ij")  # 3 x (R, N, N)
    params = torch.stack([rot, tx, ty], dim=-1).reshape(-1, 3).float()  # (R, N, N, 3) -> (R*N*N, 3)
    _check_axes(translation_axes)
    if translation_axes == "both":
        return params
    view = params.view(*grid_shape(n_rotations, n_translations), 3)  # (R*N*N, 3) -> (R, Ntx, Nty, 3)
    middle = n_translations // 2  # the exact 0 of odd counts
    if translation_axes == "x":
        return view[:, :, middle].reshape(-1, 3).clone()  # ty = 0: (R, Ntx, 3) -> (R*Ntx, 3)
    return view[:, middle, :].reshape(-1, 3).clone()  # tx = 0: (R, Nty, 3) -> (R*Nty, 3)


def random_parameters(
    n: int,
    rotation_deg_range: float = 30.0,
    translation_px_range: float = 3.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Draws transforms uniformly from the continuous box [-rot, rot] x [-t, t] x [-t, t].

    Args:
        n: number of transforms (>= 1).
        rotation_deg_range: rotations are uniform in [-range, range] degrees.
        translation_px_range: tx and ty are uniform in [-range, range] pixels, independently.
        generator: random generator, for reproducible draws; must live on `device`.
        device: device of the result (default CPU).

    Returns:
        (n, 3) float32 rows (rotation_deg, tx_px, ty_px).

    Raises:
        ValueError: on a negative range or n < 1.
    """
    _check_count("n", n)
    _check_range("rotation_deg_range", rotation_deg_range)
    _check_range("translation_px_range", translation_px_range)
    unit = torch.rand(n, 3, generator=generator, device=device) * 2.0 - 1.0  # (n, 3) in [-1, 1)
    scale = unit.new_tensor([rotation_deg_range, translation_px_range, translation_px_range])
    return unit * scale
