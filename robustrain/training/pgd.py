"""PGD adversarial training (Madry et al. 2018)."""

import torch

from robustrain.attacks import check_linf_params, pgd_with_start_loss
from robustrain.core.train_eval_modes import batchnorm_mode
from robustrain.training.robust_classifier import RobustClassifier
from robustrain.training.schedules import EpsWarmup, warmup_factor


class PGDTraining(EpsWarmup, RobustClassifier):
    """PGD adversarial training (Madry et al. 2018; Rice et al. 2020's recipe: eps 8/255, step 2/255, 10 steps).

    Args:
        eps: L-inf radius in [0, 1] pixel units.
        alpha: Step size.
        steps: PGD steps per training batch.
        random_start: Start from a uniform point of the eps-ball.
        eps_warmup_epochs: Grow eps and alpha linearly from 0 over this many (fractional) epochs; 0 = off.
        **kwargs: RobustClassifier arguments.
    """

    def __init__(
        self,
        eps: float = 8 / 255,
        alpha: float = 2 / 255,
        steps: int = 10,
        random_start: bool = True,
        eps_warmup_epochs: float = 0.0,
        **kwargs,
    ):
        check_linf_params(eps, alpha, steps)
        warmup_factor(0.0, eps_warmup_epochs)  # validates
        super().__init__(train_eps=eps, **kwargs)
        self.eps, self.alpha, self.steps, self.random_start = eps, alpha, steps, random_start

    def perturb(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.perturb_with_start_loss(images, labels)[0]

    def perturb_with_start_loss(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The PGD images (one restart of robustrain.attacks.pgd) and the per-example loss where the attack started,
        from which the training step counts the examples whose loss the attack lowered (the abnormal-example signal,
        robustrain.callbacks.AbnormalExamplesMonitor)."""
        with batchnorm_mode(self.net, self.hparams.attack_bn_mode):
            eps, alpha = self.current_eps_alpha()
            return pgd_with_start_loss(
                self.net, images, labels, eps, alpha, self.steps, self.random_start, box=self.input_range
            )
