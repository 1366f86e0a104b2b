"""Matplotlib figures of the robustness and aliasing reports: accuracy vs eps, category pies and boxes, spectra.

Each function takes plain numbers (report values) and returns a Figure; callers save it or send it to TensorBoard.
"""

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from robustrain.aliasing import CATEGORIES

# Ribeiro & Schön's colour bar order: non-aliased, aliased, aliased-tangled, no-pass
CATEGORY_COLORS = {"non_aliased": "#4c72b0", "aliased": "#c44e52", "tangled": "#dd8452", "no_pass": "#b0b0b0"}


def plot_accuracy_vs_eps(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str = "") -> Figure:
    """Accuracy (%) against eps for one or more models: name -> (eps list, accuracy fractions)."""
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    for name, (eps, acc) in curves.items():
        ax.plot(eps, 100 * np.asarray(acc, dtype=float), marker="o", label=name)
    ax.set_xlabel("eps (L-inf, pixel units in [0, 1])")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        ax.legend(fontsize=8)
    ax.set_title(title or "PGD accuracy vs eps")
    fig.tight_layout()
    return fig


def plot_category_pies(layers: Mapping[str, Mapping[str, float]], overall: Mapping[str, float]) -> Figure:
    """One pie per downsampling layer plus the equally weighted overall pie (fractions per category)."""
    panels = {"overall": overall, **layers}
    fig = Figure(figsize=(2.6 * len(panels), 3.0))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (name, fractions) in zip(axes[0], panels.items()):
        values = [fractions[c] or 0.0 for c in CATEGORIES]
        ax.pie(
            values,
            colors=[CATEGORY_COLORS[c] for c in CATEGORIES],
            startangle=90,
            autopct=lambda p: f"{p:.0f}%" if p >= 5 else "",
            textprops={"fontsize": 7},
        )
        ax.set_title(name, fontsize=9)
    fig.legend(CATEGORIES, loc="lower center", ncol=len(CATEGORIES), fontsize=8)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def plot_category_boxes(
    per_image: Mapping[str, Mapping[str, Sequence[float]]], correct: Sequence[bool], category: str = "aliased"
) -> Figure:
    """Box plots of one category's per-image fraction per layer, correctly vs incorrectly classified images."""
    correct = np.asarray(correct, dtype=bool)
    fig = Figure(figsize=(1.8 + 1.4 * len(per_image), 3.5))
    ax = fig.subplots()
    data, positions, colors = [], [], []
    for i, fractions in enumerate(per_image.values()):
        values = np.asarray(fractions[category], dtype=float)
        for j, (mask, color) in enumerate(((correct, "#55a868"), (~correct, "#c44e52"))):
            data.append(values[mask] if mask.any() else np.array([np.nan]))
            positions.append(3 * i + j)
            colors.append(color)
    boxes = ax.boxplot(data, positions=positions, widths=0.8, patch_artist=True, showfliers=False)
    for patch, color in zip(boxes["boxes"], colors):
        patch.set_facecolor(color)
    ax.set_xticks([3 * i + 0.5 for i in range(len(per_image))], list(per_image), fontsize=8)
    ax.set_ylabel(f"fraction of bins: {category}")
    ax.legend(boxes["boxes"][:2], ["correct", "incorrect"], fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def plot_spectra(spectra: Mapping[str, np.ndarray], log: bool = True) -> Figure:
    """Mean |FFT| (fftshifted, DC in the centre) of perturbations: one image per attack and channel, shared scale."""
    arrays = {name: np.asarray(s, dtype=float) for name, s in spectra.items()}
    n_channels = max(a.shape[0] for a in arrays.values())
    fig = Figure(figsize=(2.8 * len(arrays), 2.6 * n_channels))
    axes = fig.subplots(n_channels, len(arrays), squeeze=False)
    values = np.concatenate([a.ravel() for a in arrays.values()])
    tiny = max(values[values > 0].min(), 1e-12) if (values > 0).any() else 1e-12
    vmin, vmax = (np.log10(tiny), np.log10(max(values.max(), tiny))) if log else (0.0, values.max())
    image = None
    for j, (name, a) in enumerate(arrays.items()):
        for c in range(a.shape[0]):
            shown = np.log10(np.maximum(a[c], tiny)) if log else a[c]
            image = axes[c][j].imshow(shown, cmap="viridis", vmin=vmin, vmax=vmax)
            axes[c][j].set_title(f"{name} ch{c}", fontsize=8)
            axes[c][j].axis("off")
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="log10 mean |FFT|" if log else "mean |FFT|")
    return fig
