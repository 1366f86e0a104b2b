"""Evaluation callbacks run by `trainer.test` (e.g. `python train.py test --config configs/eval_spatial_mnist5k.yaml`)
and the pure robust-accuracy functions they call."""

from robustrain.evaluation.aliasing_analysis import AliasingAnalysis
from robustrain.evaluation.robust import AttackSpec, accuracy_vs_eps, headline_accuracy, robust_accuracy
from robustrain.evaluation.robustness_evaluation import RobustnessEvaluation
from robustrain.evaluation.spatial_evaluation import (
    SpatialEvaluation,
    format_table,
    shift_consistency,
    summarize,
)

__all__ = [
    "AliasingAnalysis",
    "AttackSpec",
    "RobustnessEvaluation",
    "SpatialEvaluation",
    "accuracy_vs_eps",
    "format_table",
    "headline_accuracy",
    "robust_accuracy",
    "shift_consistency",
    "summarize",
]
