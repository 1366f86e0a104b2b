"""Loss surfaces over the rotation x translation grid, their smoothness metrics and plots."""

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


def _panels(values: Tensor, translations_px: Tensor | None) -> tuple[Tensor, list[float] | None, list[float] | None]:
    """(values as (S, R, n_tx, n_ty), tx values, ty values) for values of shape (S, R, N).

    N = n_tx * n_ty (ty fastest, grid_parameters' order) when both translation axes are in the grid, N = n_t for one
    axis (then one panel, n_ty = 1). Without translations_px the columns keep their index (one panel).
    """
    if translations_px is None:
        return values[..., None], None, None
    t = [float(v) for v in translations_px]
    n = values.shape[-1]
    if n == len(t) ** 2:
        return values.reshape(*values.shape[:-1], len(t), len(t)), t, t
    if n == len(t):
        return values[..., None], t, None
    raise ValueError(f"{n} translations per rotation do not match translations_px of length {len(t)} (or its square)")


def _draw_panel(ax, panel: Tensor, rotation_deg: Tensor | None, tx: list[float] | None, **imshow) -> object:
    """One (R, n_tx) image: rotations up (degrees), tx across (pixels), ticks at the grid's values."""
    image = ax.imshow(panel.numpy(), aspect="auto", origin="lower", **imshow)
    if tx is not None:
        ax.set_xticks(range(len(tx)), [f"{v:g}" for v in tx])
        ax.set_xlabel("tx (px)")
    else:
        ax.set_xlabel("translation index")
    if rotation_deg is not None:
        rot = [float(v) for v in rotation_deg]
        step = max(1, len(rot) // 6)
        ticks = list(range(0, len(rot), step))
        if ticks[-1] != len(rot) - 1:
            ticks.append(len(rot) - 1)
        ax.set_yticks(ticks, [f"{rot[i]:g}" for i in ticks])
        ax.set_ylabel("rotation (deg)")
    else:
        ax.set_ylabel("rotation index")
    return image


def plot_surfaces(
    surfaces: Tensor,
    titles: list[str] | None = None,
    rotation_deg: Tensor | None = None,
    value_label: str = "loss",
    translations_px: Tensor | None = None,
) -> Figure:
    """Draws loss surfaces as images sharing one colour scale: a row per surface, a panel per ty (pixels), rotations
    up (degrees, first at the bottom) and tx across (pixels).

    Args:
        surfaces: (S, R, N) surfaces, or (R, N) for one (N translations per rotation, grid_parameters' order).
        titles: one title per surface.
        rotation_deg: (R,) rotation of each row, to label the vertical axis in degrees.
        value_label: colour bar label.
        translations_px: The grid's translation values in pixels (one axis' values); N = their number squared
            (both axes: one panel per ty) or their number (one axis). None labels columns by index.

    Returns:
        A matplotlib Figure (no pyplot state; save it with `fig.savefig`), the surfaces' Axes row by row, followed by
        the colour bar's.
    """
    from matplotlib.figure import Figure

    surfaces = surfaces.detach().float().cpu()
    if surfaces.dim() == 2:
        surfaces = surfaces.unsqueeze(0)  # (R, N) -> (1, R, N)
    if titles is not None and len(titles) != surfaces.shape[0]:
        raise ValueError(f"titles has {len(titles)} entries: {surfaces.shape[0]} (one per surface) are required.")
    panels, tx, ty = _panels(surfaces, translations_px)  # (S, R, n_tx, n_ty)
    n_rows, n_cols = panels.shape[0], panels.shape[-1]
    figure = Figure(figsize=(2.6 * n_cols + 1.2, 2.8 * n_rows), layout="constrained")
    axes = figure.subplots(n_rows, n_cols, squeeze=False)
    value_min, value_max = float(surfaces.min()), float(surfaces.max())
    for r in range(n_rows):
        for c in range(n_cols):
            ax = axes[r][c]
            image = _draw_panel(ax, panels[r, :, :, c], rotation_deg, tx, vmin=value_min, vmax=value_max)
            label = titles[r] if titles is not None else ""
            ax.set_title(f"{label}{', ' if label and ty else ''}{f'ty = {ty[c]:g} px' if ty else ''}", fontsize=9)
    figure.colorbar(image, ax=axes.ravel().tolist(), label=value_label)
    return figure


def plot_heatmap(
    accuracy: Tensor,
    rotation_deg: Tensor | None = None,
    title: str = "accuracy per transform",
    value_label: str = "accuracy",
    translations_px: Tensor | None = None,
) -> Figure:
    """Draws a per-transform value (e.g. accuracy) as rotation (degrees) x tx (pixels), one panel per ty (pixels).

    Args:
        accuracy: (R, n_tx, n_ty) values indexed [rotation, tx, ty], or (R, N) with N translations per rotation
            (grid_parameters' order: ty fastest).
        rotation_deg: (R,) rotation of each row, to label the vertical axis in degrees.
        title: figure title.
        value_label: colour bar label.
        translations_px: The grid's translation values in pixels (one axis' values). None labels columns by index.

    Returns:
        A matplotlib Figure with one Axes per ty panel, then the colour bar's.
    """
    from matplotlib.figure import Figure

    accuracy = accuracy.detach().float().cpu()
    if accuracy.dim() == 3:
        accuracy = accuracy.flatten(1)  # (R, n_tx, n_ty) -> (R, n_tx * n_ty), ty fastest
    if accuracy.dim() != 2:
        raise ValueError(f"accuracy has shape {tuple(accuracy.shape)}: (R, N) or (R, N, N) is required.")
    panels, tx, ty = _panels(accuracy[None], translations_px)  # (1, R, n_tx, n_ty)
    n_cols = panels.shape[-1]
    figure = Figure(figsize=(2.6 * n_cols + 1.2, 3.6), layout="constrained")
    axes = figure.subplots(1, n_cols, squeeze=False)[0]
    vmin, vmax = float(accuracy.min()), float(accuracy.max())
    for c, ax in enumerate(axes):
        image = _draw_panel(ax, panels[0, :, :, c], rotation_deg, tx, vmin=vmin, vmax=vmax)
        if ty:
            ax.set_title(f"ty = {ty[c]:g} px", fontsize=9)
    figure.suptitle(title)
    figure.colorbar(image, ax=list(axes), label=value_label)
    return figure
