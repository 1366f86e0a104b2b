"""Aliasing in downsampling layers: the Grabinski et al. (2022) measure, layer hooks, Ribeiro & Schön categories."""

from robustrain.aliasing.categories import CATEGORIES, category_fractions, classify_bins
from robustrain.aliasing.layers import (
    AliasingRecorder,
    capture_aliasing,
    find_downsampling_layers,
    group_layers,
    layer_stride,
    measure_model_aliasing,
    stride_one_output,
)
from robustrain.aliasing.measure import (
    alias_free_spectrum,
    aliased_residual,
    aliasing_measure,
    folded_spectrum,
    low_band_mask,
    output_size,
)

__all__ = [
    "CATEGORIES",
    "AliasingRecorder",
    "alias_free_spectrum",
    "aliased_residual",
    "aliasing_measure",
    "capture_aliasing",
    "category_fractions",
    "classify_bins",
    "find_downsampling_layers",
    "folded_spectrum",
    "group_layers",
    "layer_stride",
    "low_band_mask",
    "measure_model_aliasing",
    "output_size",
    "stride_one_output",
]
