"""Aliasing analysis of a trained model: Ribeiro & Schön's spectral categories per downsampling layer, per image.

Pure functions, no Lightning (`robustrain.evaluation.AliasingAnalysis` calls them per test batch). The per-layer
aliasing measure itself is `robustrain.aliasing.measure_model_aliasing`; this module adds the category fractions
(`robustrain.aliasing.category_fractions`) of every downsampling layer for every image, next to the image's
prediction, so they can be split into correctly and incorrectly classified images (their Fig. "correct vs
incorrect"), and their summaries (per layer and the equally weighted average over layers, their pie charts).
"""

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from robustrain.aliasing.categories import CATEGORIES, category_fractions
from robustrain.aliasing.layers import find_downsampling_layers, layer_stride, stride_one_output
from robustrain.core.train_eval_modes import eval_mode

SPLITS = ("all", "correct", "incorrect")


def layer_categories(
    model: nn.Module, images: Tensor, layer_names: Sequence[str] | None = None, threshold_db: float = 20.0
) -> tuple[Tensor, dict[str, dict[str, Tensor]]]:
    """Logits and per-image category fractions of each downsampling layer, in one forward pass (eval, no grad).

    Each hooked layer is re-run at stride 1 on its input (robustrain.aliasing.layers.stride_one_output) and its
    output bins are classified (robustrain.aliasing.classify_bins). Every submodule's mode is restored after.

    Args:
        model: Classifier on the images.
        images: (B, C, H, W) inputs.
        layer_names: Module paths of downsampling layers (robustrain.aliasing.find_downsampling_layers); default all.
        threshold_db: How far below each feature map's peak a folded copy still passes, in dB.

    Returns:
        (logits (B, num_classes), layer -> category (CATEGORIES) -> float32 (B,) fraction of the layer's bins).
    """
    found = find_downsampling_layers(model)
    names = list(found) if layer_names is None else list(layer_names)
    unknown = [name for name in names if name not in found]
    if unknown or not names:
        raise ValueError(
            f"layer_names {layer_names!r} must be a non-empty subset of the downsampling layers {list(found)}"
        )
    results: dict[str, dict[str, Tensor]] = {}

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            with torch.autocast(device_type=inputs[0].device.type, enabled=False):
                f_s1 = stride_one_output(module, inputs[0].detach().float())
            fractions = category_fractions(f_s1, layer_stride(module), threshold_db)
            results[name] = {k: v.cpu() for k, v in fractions.items()}

        return hook

    handles = [found[name].register_forward_hook(make_hook(name)) for name in names]
    try:  # eagerly: a compiled network would skip hooks added after compiling
        with eval_mode(model), torch.no_grad(), torch.compiler.set_stance("force_eager"):
            logits = model(images)
    finally:
        for handle in handles:
            handle.remove()
    return logits, {name: results[name] for name in names}


def category_sums(per_image: Mapping[str, Mapping[str, Tensor]], correct: Tensor) -> tuple[Tensor, Tensor]:
    """Sums of the per-image fractions per layer, split and category, and the image count per split (reducible).

    Args:
        per_image: layer -> category -> (N,) fractions (layer_categories, concatenated over batches).
        correct: bool (N,), whether each image was classified correctly.

    Returns:
        (float64 (L, len(SPLITS), len(CATEGORIES)) sums in the order of per_image, float64 (len(SPLITS),) counts).
    """
    correct = correct.bool().cpu()
    masks = torch.stack([torch.ones_like(correct), correct, ~correct]).double()  # (3, N)
    sums = torch.stack(
        [
            torch.stack([fractions[c].double().cpu() for c in CATEGORIES], dim=1)  # (N, 4)
            for fractions in per_image.values()
        ]
    )  # (L, N, 4)
    return torch.einsum("sn,lnc->lsc", masks, sums), masks.sum(1)


def categories_from_sums(layers: Sequence[str], sums: Tensor, counts: Tensor) -> dict:
    """Mean category fractions per layer and overall, for all, correctly and incorrectly classified images.

    Args:
        layers: Layer names in the order of sums' first axis.
        sums: (L, len(SPLITS), len(CATEGORIES)) sums from category_sums (possibly reduced across ranks).
        counts: (len(SPLITS),) image counts.

    Returns:
        {"layers": {layer: {split: {category: mean}}}, "overall": {split: {category: mean}}, "num_images": {split: n}}
        with split in SPLITS; "overall" is the equally weighted mean over layers (Ribeiro & Schön's outer pie).
        A split without images has None for every mean.
    """
    means = sums / counts.clamp(min=1)[None, :, None]  # (L, 3, 4)
    overall = means.mean(0)  # (3, 4)

    def table(m: Tensor) -> dict:
        return {
            s: {c: (m[i, j].item() if counts[i] > 0 else None) for j, c in enumerate(CATEGORIES)}
            for i, s in enumerate(SPLITS)
        }

    return {
        "layers": {layer: table(means[i]) for i, layer in enumerate(layers)},
        "overall": table(overall),
        "num_images": {s: int(counts[i]) for i, s in enumerate(SPLITS)},
    }


def summarize_categories(per_image: Mapping[str, Mapping[str, Tensor]], correct: Tensor) -> dict:
    """categories_from_sums(category_sums(...)) for one process: see categories_from_sums for the result."""
    return categories_from_sums(list(per_image), *category_sums(per_image, correct))
