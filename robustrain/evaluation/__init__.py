"""Evaluation callbacks run by `trainer.test` (e.g. `python train.py test --config configs/eval_spatial_mnist5k.yaml`)."""

from robustrain.evaluation.spatial import SpatialEvaluation, format_table, shift_consistency, spatial_grid, summarize

__all__ = ["SpatialEvaluation", "format_table", "shift_consistency", "spatial_grid", "summarize"]
