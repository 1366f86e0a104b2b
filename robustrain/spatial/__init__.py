"""Spatial robustness math (Engstrom et al. 2019): transforms, grid and worst-of-k evaluation, first-order attack,
loss-surface smoothness, shift consistency. Pure tensor functions, no Lightning."""

from robustrain.spatial.first_order import FirstOrderResult, first_order_attack
from robustrain.spatial.grid import (
    SELECTION_RULES,
    TransformEvaluation,
    evaluate_transforms,
    grid_accuracy,
    per_transform_accuracy,
    random_accuracy,
    random_correct,
    select_worst,
    worst_of_k,
    worst_of_k_accuracy,
)
from robustrain.spatial.shift_consistency import shift_consistency
from robustrain.spatial.surface import (
    SurfaceSmoothness,
    loss_surfaces,
    plot_heatmap,
    plot_surfaces,
    surface_gradients,
    surface_smoothness,
)
from robustrain.spatial.transforms import (
    TRANSLATION_AXES,
    axis_mask,
    grid_parameters,
    grid_shape,
    random_parameters,
    rotate_translate,
)

__all__ = [
    "SELECTION_RULES",
    "TRANSLATION_AXES",
    "FirstOrderResult",
    "SurfaceSmoothness",
    "TransformEvaluation",
    "axis_mask",
    "evaluate_transforms",
    "first_order_attack",
    "grid_accuracy",
    "grid_parameters",
    "grid_shape",
    "loss_surfaces",
    "per_transform_accuracy",
    "plot_heatmap",
    "plot_surfaces",
    "random_accuracy",
    "random_correct",
    "random_parameters",
    "rotate_translate",
    "select_worst",
    "shift_consistency",
    "surface_gradients",
    "surface_smoothness",
    "worst_of_k",
    "worst_of_k_accuracy",
]
