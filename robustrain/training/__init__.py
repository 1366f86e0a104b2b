"""Lightning modules: one per training mode, all sharing RobustClassifier's optimisation and evaluation."""

from robustrain.training.fgsm import FGSMTraining
from robustrain.training.nfgsm import NFGSMTraining
from robustrain.training.pgd import PGDTraining
from robustrain.training.regularizers import ELLE, GradAlign, Regularizer
from robustrain.training.robust_classifier import RobustClassifier, network_of
from robustrain.training.schedules import LR_SCHEDULES, EpsWarmup, lr_factor, warmup_factor
from robustrain.training.single_step import SingleStepTraining
from robustrain.training.standard import StandardTraining
from robustrain.training.worst_of_k import WorstOfKSpatialTraining

__all__ = [
    "ELLE",
    "EpsWarmup",
    "FGSMTraining",
    "GradAlign",
    "NFGSMTraining",
    "LR_SCHEDULES",
    "PGDTraining",
    "Regularizer",
    "RobustClassifier",
    "SingleStepTraining",
    "StandardTraining",
    "WorstOfKSpatialTraining",
    "lr_factor",
    "network_of",
    "warmup_factor",
]
