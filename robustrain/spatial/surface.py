"""Loss surfaces over the rotation x translation grid, their smoothness metrics and plots (the 000 blog)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:  # matplotlib is imported only when plotting
    from matplotlib.figure import Figure


@dataclass
class SurfaceSmoothness:
    """Smoothness of a batch of loss surfaces; each field is (S,), one value per surface.

    Attributes:
        gradient_mean: mean of |grad Z| over the grid (numpy.gradient, unit spacing).
        gradient_std: population standard deviation (ddof=0, as numpy.std) of |grad Z|.
        total_variation: sum |diff along axis 0| + sum |diff along axis 1|.
    """

    gradient_mean: Tensor
    gradient_std: Tensor
    total_variation: Tensor


def loss_surfaces(loss: Tensor, n_rotations: int) -> Tensor:
    """Reshapes per-transform losses of `grid_parameters` order into surfaces Z (rotation x translation).

    Args:
        loss: (B, T) losses, transforms in `grid_parameters` order (rotation outermost).
        n_rotations: number of rotations in the grid; T must be a multiple of it.

    Returns:
        (B, n_rotations, T // n_rotations) surfaces. With both translation axes in the grid, the
        second axis runs over (tx, ty) pairs with ty fastest, so a gradient along it also crosses
        from one tx row to the next; use a grid with one translation value per axis, or
        `.view(B, R, N, N)` and pick a slice, where that matters.

    Raises:
        ValueError: if T is not a positive multiple of n_rotations.
    """
    if loss.dim() != 2:
        raise ValueError(f"loss has shape {tuple(loss.shape)}: (B, T) is required.")
    if n_rotations < 1 or loss.shape[1] % n_rotations != 0:
        raise ValueError(
            f"n_rotations={n_rotations!r} is not allowed: a positive divisor of T={loss.shape[1]} is required."
        )
    return loss.view(loss.shape[0], n_rotations, -1)  # (B, T) -> (B, R, T/R)


def _gradient_along(z: Tensor, dim: int) -> Tensor:
    """numpy.gradient along one axis, unit spacing, edge_order=1: central inside, one-sided at the ends."""
    size = z.shape[dim]
    if size < 2:
        raise ValueError(f"surface has {size} value(s) along axis {dim}: at least 2 are required for a gradient.")
    first = z.narrow(dim, 1, 1) - z.narrow(dim, 0, 1)
    last = z.narrow(dim, size - 1, 1) - z.narrow(dim, size - 2, 1)
    inner = (z.narrow(dim, 2, size - 2) - z.narrow(dim, 0, size - 2)) / 2
    return torch.cat([first, inner, last], dim=dim)


def surface_gradients(z: Tensor) -> tuple[Tensor, Tensor]:
    """The two gradients of each surface, equal to `numpy.gradient(z[i])` (unit spacing).

    Args:
        z: (S, M, N) surfaces, M, N >= 2.

    Returns:
        (d/d axis 0, d/d axis 1), each (S, M, N).
    """
    if z.dim() != 3:
        raise ValueError(f"z has shape {tuple(z.shape)}: (S, M, N) surfaces are required.")
    return _gradient_along(z, 1), _gradient_along(z, 2)


def surface_smoothness(z: Tensor) -> SurfaceSmoothness:
    """Mean and std of the gradient magnitude and the total variation of each surface.

    Args:
        z: (S, M, N) surfaces, M, N >= 2 (e.g. from `loss_surfaces`).

    Returns:
        A `SurfaceSmoothness` of (S,) tensors.
    """
    grad_0, grad_1 = surface_gradients(z)
    magnitude = torch.sqrt(grad_0**2 + grad_1**2).flatten(1)  # (S, M, N) -> (S, M*N)
    total_variation = z.diff(dim=1).abs().flatten(1).sum(1) + z.diff(dim=2).abs().flatten(1).sum(1)
    return SurfaceSmoothness(
        gradient_mean=magnitude.mean(dim=1),
        gradient_std=magnitude.std(dim=1, correction=0),
        total_variation=total_variation,
    )


def _extent(rotation_deg: Tensor | None, n_columns: int) -> list[float] | None:
    """imshow extent (origin="lower") that puts each row at its rotation in degrees."""
    if rotation_deg is None:
        return None
    first_deg, last_deg = float(rotation_deg[0]), float(rotation_deg[-1])
    half_step_deg = (last_deg - first_deg) / (2 * (len(rotation_deg) - 1)) if len(rotation_deg) > 1 else 0.5
    return [-0.5, n_columns - 0.5, first_deg - half_step_deg, last_deg + half_step_deg]


def plot_surfaces(
    surfaces: Tensor,
    titles: list[str] | None = None,
    rotation_deg: Tensor | None = None,
    value_label: str = "loss",
) -> Figure:
    """Draws surfaces side by side as images sharing one colour scale (rows = rotations, first at the bottom).

    Args:
        surfaces: (S, M, N) surfaces, or (M, N) for one.
        titles: one title per surface.
        rotation_deg: (M,) rotation of each row, to label the vertical axis in degrees.
        value_label: colour bar label.

    Returns:
        A matplotlib Figure (no pyplot state; save it with `fig.savefig`), one Axes per surface
        followed by the colour bar's.
    """
    from matplotlib.figure import Figure

    surfaces = surfaces.detach().float().cpu()
    if surfaces.dim() == 2:
        surfaces = surfaces.unsqueeze(0)  # (M, N) -> (1, M, N)
    if titles is not None and len(titles) != surfaces.shape[0]:
        raise ValueError(f"titles has {len(titles)} entries: {surfaces.shape[0]} (one per surface) are required.")
    figure = Figure(figsize=(3.0 * surfaces.shape[0] + 1.0, 4.0), layout="constrained")
    axes = figure.subplots(1, surfaces.shape[0], squeeze=False)[0]
    value_min, value_max = float(surfaces.min()), float(surfaces.max())
    extent = _extent(rotation_deg, surfaces.shape[2])
    for index, (ax, surface) in enumerate(zip(axes, surfaces)):
        image = ax.imshow(surface.numpy(), aspect="auto", origin="lower", vmin=value_min, vmax=value_max, extent=extent)
        ax.set_xlabel("translation index")
        ax.set_ylabel("rotation (deg)" if rotation_deg is not None else "rotation index")
        if titles is not None:
            ax.set_title(titles[index])
    figure.colorbar(image, ax=list(axes), label=value_label)
    return figure


def plot_heatmap(
    accuracy: Tensor,
    rotation_deg: Tensor | None = None,
    title: str = "accuracy per transform",
    value_label: str = "accuracy",
) -> Figure:
    """Draws a per-transform value (e.g. accuracy) over rotations x translations.

    Args:
        accuracy: (n_rotations, n_translations) values, or (n_rotations, n_tx, n_ty), flattened
            to (n_rotations, n_tx * n_ty) with ty fastest.
        rotation_deg: (n_rotations,) rotation of each row, to label the vertical axis in degrees.
        title: axes title.
        value_label: colour bar label.

    Returns:
        A matplotlib Figure with the heatmap Axes first and the colour bar's second.
    """
    from matplotlib.figure import Figure

    accuracy = accuracy.detach().float().cpu()
    if accuracy.dim() == 3:
        accuracy = accuracy.flatten(1)  # (R, N, N) -> (R, N*N)
    if accuracy.dim() != 2:
        raise ValueError(f"accuracy has shape {tuple(accuracy.shape)}: (R, N) or (R, N, N) is required.")
    figure = Figure(figsize=(5.0, 4.0), layout="constrained")
    ax = figure.subplots()
    image = ax.imshow(accuracy.numpy(), aspect="auto", origin="lower", extent=_extent(rotation_deg, accuracy.shape[1]))
    ax.set_xlabel("translation index")
    ax.set_ylabel("rotation (deg)" if rotation_deg is not None else "rotation index")
    ax.set_title(title)
    figure.colorbar(image, ax=ax, label=value_label)
    return figure
