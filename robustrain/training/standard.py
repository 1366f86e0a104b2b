"""Standard training: cross-entropy on clean images."""

from robustrain.training.base import RobustClassifier


class StandardTraining(RobustClassifier):
    """Cross-entropy on clean images. Arguments: see RobustClassifier."""
