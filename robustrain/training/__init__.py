"""Lightning modules: one per training mode, all sharing RobustClassifier's optimisation and evaluation."""

from robustrain.training.base import RobustClassifier
from robustrain.training.modes import FGSMTraining, PGDTraining, StandardTraining
from robustrain.training.schedules import LR_SCHEDULES, lr_factor
from robustrain.training.spatial import WorstOfKSpatialTraining

__all__ = [
    "FGSMTraining",
    "LR_SCHEDULES",
    "PGDTraining",
    "RobustClassifier",
    "StandardTraining",
    "WorstOfKSpatialTraining",
    "lr_factor",
]
