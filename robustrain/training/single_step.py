"""What the single-step methods share: an eps (with its warm-up) and an optional regularizer (GradAlign, ELLE)."""

import torch

from robustrain.attacks import check_linf_params, model_device
from robustrain.training.regularizers import Regularizer
from robustrain.training.robust_classifier import RobustClassifier
from robustrain.training.schedules import EpsWarmup, warmup_factor


class SingleStepTraining(EpsWarmup, RobustClassifier):
    """Base of FGSMTraining and NFGSMTraining: the radius, its warm-up and the regularizer of the training loss.

    Args:
        eps: L-inf radius in [0, 1] pixel units.
        alpha: Step size in pixel units.
        eps_warmup_epochs: Grow eps and alpha linearly from 0 over this many (fractional) epochs; 0 = off.
        regularizer: None, or a robustrain.training.Regularizer (GradAlign, ELLE) whose weighted penalty, on the
            step's current radius, is added to the training loss; its value is logged as `train/penalty` and its
            weight as `train/penalty_weight`.
        **kwargs: RobustClassifier arguments.
    """

    def __init__(
        self,
        eps: float,
        alpha: float,
        eps_warmup_epochs: float = 0.0,
        regularizer: Regularizer | None = None,
        **kwargs,
    ) -> None:
        check_linf_params(eps, alpha)
        warmup_factor(0.0, eps_warmup_epochs)  # validates
        if regularizer is not None and not isinstance(regularizer, Regularizer):
            raise ValueError(
                f"regularizer must be a robustrain.training.Regularizer (GradAlign, ELLE) or None, got "
                f"{type(regularizer).__name__}"
            )
        super().__init__(train_eps=eps, **kwargs)
        self.eps, self.alpha = eps, alpha
        self.regularizer = regularizer

    def tensorboard_charts(self) -> dict[str, dict[str, list]]:
        charts = super().tensorboard_charts()
        if self.regularizer is not None:
            name = type(self.regularizer).__name__
            charts["robustness"][f"train/penalty: the {name} penalty"] = ["Multiline", ["^train/penalty$"]]
            charts["robustness"]["train/penalty_weight: its weight"] = ["Multiline", ["^train/penalty_weight$"]]
        return charts

    def regularization(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        if self.regularizer is None:
            return None
        device = model_device(self.net)
        images, labels = images.to(device), labels.to(device)
        eps, _ = self.current_eps_alpha()
        penalty = self.regularizer.penalty(self.net, images, labels, eps)
        # this step's weight, copied before after_step updates an adaptive one (the reference updates after backward)
        weight = torch.as_tensor(self.regularizer.current_weight(), dtype=penalty.dtype, device=penalty.device).clone()
        if self.regularizer.adaptive:
            # the weight moves with the penalty averaged over ranks, so every rank keeps the same weight
            shared = self.trainer.strategy.reduce(penalty.detach(), reduce_op="mean") if self._trainer else penalty
            self.regularizer.after_step(shared.detach())
        self.log("train/penalty", penalty.detach(), on_step=False, on_epoch=True)
        self.log("train/penalty_weight", weight.float(), on_step=False, on_epoch=True)
        return weight * penalty
