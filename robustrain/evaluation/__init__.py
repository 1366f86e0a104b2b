"""Evaluation callbacks run by `trainer.test` (e.g. `python train.py test --config configs/eval_spatial_mnist5k.yaml`)
and the pure robust-accuracy functions they call."""

from robustrain.evaluation.aliasing_analysis import AliasingAnalysis
from robustrain.evaluation.robust_accuracy import AttackSpec, accuracy_vs_eps, headline_accuracy, robust_accuracy
from robustrain.evaluation.robustness_evaluation import RobustnessEvaluation
from robustrain.evaluation.spatial_evaluation import SpatialEvaluation
from robustrain.evaluation.spatial_report import format_table, summarize
from robustrain.spatial import shift_consistency

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
