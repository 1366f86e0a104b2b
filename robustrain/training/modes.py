"""Training modes: standard, FGSM (fast adversarial training, Wong et al. 2020) and PGD (Madry et al. 2018)."""

from typing import Literal

import torch

from robustrain.attacks import check_fgsm_init, check_linf_params, fgsm, pgd
from robustrain.modes import batchnorm_mode
from robustrain.training.base import RobustClassifier
from robustrain.training.schedules import warmup_factor


class _EpsWarmup:
    """Mixin: the fraction of eps in force now, from `eps_warmup_epochs` and the trainer's progress."""

    def eps_scale(self) -> float:
        warmup = self.hparams.get("eps_warmup_epochs", 0.0)
        if not warmup or self._trainer is None:
            return 1.0
        batches_per_epoch = self.trainer.num_training_batches
        if not 0 < batches_per_epoch < float("inf"):
            return 1.0
        return warmup_factor(self.global_step / batches_per_epoch, warmup)


class StandardTraining(RobustClassifier):
    """Cross-entropy on clean images. Arguments: see RobustClassifier."""


class FGSMTraining(_EpsWarmup, RobustClassifier):
    """FGSM adversarial training; the default is Wong et al.'s FGSM-RS ("fast is better than free").

    Args:
        eps: L-inf radius in [0, 1] pixel units (8/255 on CIFAR-10, 0.3 on MNIST).
        alpha: Step size (Wong: 1.25 * eps, i.e. 10/255 on CIFAR-10, 0.375 on MNIST).
        init: The start of the step (robustrain.attacks.fgsm): "random_clipped" (uniform in the eps-ball, x + delta
            clipped to [0, 1] before the gradient: Wong et al.'s CIFAR-10 code and torchattacks.FFGSM; the default,
            for the CIFAR-10 defaults), "random_unclipped" (the gradient at the unclipped x + delta: Wong et al.'s
            MNIST code, used by the MNIST configs) or "zero" (plain FGSM with step alpha).
        eps_warmup_epochs: Grow eps and alpha linearly from 0 over this many (fractional) epochs; 0 = off.
        **kwargs: RobustClassifier arguments (net, optimizer, lr, ..., attack_bn_mode).
    """

    def __init__(
        self,
        eps: float = 8 / 255,
        alpha: float = 10 / 255,
        init: Literal["random_unclipped", "random_clipped", "zero"] = "random_clipped",
        eps_warmup_epochs: float = 0.0,
        **kwargs,
    ):
        check_linf_params(eps, alpha)
        warmup_factor(0.0, eps_warmup_epochs)  # validates
        check_fgsm_init(init)
        super().__init__(**kwargs)

    def perturb(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        hp = self.hparams
        with batchnorm_mode(self.net, hp.attack_bn_mode):
            scale = self.eps_scale()
            return fgsm(self.net, images, labels, hp.eps * scale, hp.alpha * scale, hp.init)


class PGDTraining(_EpsWarmup, RobustClassifier):
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
        super().__init__(**kwargs)

    def perturb(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        hp = self.hparams
        with batchnorm_mode(self.net, hp.attack_bn_mode):
            scale = self.eps_scale()
            return pgd(self.net, images, labels, hp.eps * scale, hp.alpha * scale, hp.steps, hp.random_start)
