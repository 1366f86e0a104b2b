"""Standard training: cross-entropy on clean images."""

from robustrain.training.robust_classifier import RobustClassifier


class StandardTraining(RobustClassifier):
    """Cross-entropy on clean images. Arguments: see RobustClassifier (no training radius: eval_eps defaults 8/255)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(train_eps=None, **kwargs)
