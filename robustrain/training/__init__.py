"""Lightning modules: one per training mode, all sharing RobustClassifier's optimisation and evaluation."""

from robustrain.training.fgsm import FGSMTraining
from robustrain.training.pgd import PGDTraining
from robustrain.training.robust_classifier import RobustClassifier, network_of
from robustrain.training.schedules import LR_SCHEDULES, EpsWarmup, lr_factor, warmup_factor
from robustrain.training.standard import StandardTraining
from robustrain.training.worst_of_k import WorstOfKSpatialTraining

__all__ = [
    "EpsWarmup",
    "FGSMTraining",
    "LR_SCHEDULES",
    "PGDTraining",
    "RobustClassifier",
    "StandardTraining",
    "WorstOfKSpatialTraining",
    "lr_factor",
    "network_of",
    "warmup_factor",
]
