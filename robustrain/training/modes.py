"""Training modes: standard, FGSM (fast adversarial training, Wong et al. 2020) and PGD (Madry et al. 2018)."""

from typing import Literal

import torch

from robustrain.attacks import FGSM_INITS, check_linf_params, fgsm, pgd
from robustrain.modes import batchnorm_mode
from robustrain.training.base import RobustClassifier


class StandardTraining(RobustClassifier):
    """Cross-entropy on clean images. Arguments: see RobustClassifier."""


class FGSMTraining(RobustClassifier):
    """FGSM adversarial training; the default is Wong et al.'s FGSM-RS ("fast is better than free").

    Args:
        eps: L-inf radius in [0, 1] pixel units (8/255 on CIFAR-10, 0.3 on MNIST).
        alpha: Step size (Wong: 1.25 * eps, i.e. 10/255 on CIFAR-10, 0.375 on MNIST).
        init: "random" (uniform in the eps-ball, clamped to [0, 1]) or "zero" (plain FGSM with step alpha).
        **kwargs: RobustClassifier arguments (net, optimizer, lr, ..., attack_bn_mode).
    """

    def __init__(self, eps: float = 8 / 255, alpha: float = 10 / 255, init: Literal["random", "zero"] = "random", **kwargs):
        check_linf_params(eps, alpha)
        if init not in FGSM_INITS:
            raise ValueError(f"init={init!r} is not valid; choose one of {list(FGSM_INITS)}")
        super().__init__(**kwargs)

    def perturb(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        hp = self.hparams
        with batchnorm_mode(self.net, hp.attack_bn_mode):
            return fgsm(self.net, images, labels, hp.eps, hp.alpha, hp.init)


class PGDTraining(RobustClassifier):
    """PGD adversarial training (Madry et al. 2018; Rice et al. 2020's recipe: eps 8/255, step 2/255, 10 steps).

    Args:
        eps: L-inf radius in [0, 1] pixel units.
        alpha: Step size.
        steps: PGD steps per training batch.
        random_start: Start from a uniform point of the eps-ball.
        **kwargs: RobustClassifier arguments.
    """

    def __init__(
        self, eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 10, random_start: bool = True, **kwargs
    ):
        check_linf_params(eps, alpha, steps)
        super().__init__(**kwargs)

    def perturb(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        hp = self.hparams
        with batchnorm_mode(self.net, hp.attack_bn_mode):
            return pgd(self.net, images, labels, hp.eps, hp.alpha, hp.steps, random_start=hp.random_start)
