"""Aliasing in downsampling layers: the Grabinski et al. (2022) measure, layer hooks, Ribeiro & Schön categories."""

from robustrain.aliasing.categories import CATEGORIES, category_fractions, classify_bins
from robustrain.aliasing.layers import (
    AliasingRecorder,
    capture_aliasing,
    find_downsampling_layers,
    group_layers,
    layer_stride,
    measure_model_aliasing,
    probe_aliasing,
    stride_one_output,
)
from robustrain.aliasing.measure import (
    alias_free_spectrum,
    aliased_residual,
    aliasing_measure,
    aliasing_measures,
    folded_spectrum,
    low_band_mask,
    output_size,
    relative_aliasing_measure,
)

__all__ = [
    "CATEGORIES",
    "AliasingRecorder",
    "alias_free_spectrum",
    "aliased_residual",
    "aliasing_measure",
    "aliasing_measures",
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
    "probe_aliasing",
    "relative_aliasing_measure",
    "stride_one_output",
]
