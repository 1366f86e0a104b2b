"""FGSM adversarial training (fast adversarial training, Wong et al. 2020), optionally regularized (GradAlign, ELLE)."""

from typing import Literal

import torch
from lightning.pytorch.utilities import rank_zero_warn

from robustrain.attacks import check_fgsm_init, fgsm_with_start_loss
from robustrain.core.train_eval_modes import batchnorm_mode
from robustrain.training.regularizers import Regularizer
from robustrain.training.single_step import SingleStepTraining


class FGSMTraining(SingleStepTraining):
    """FGSM adversarial training; the default is Wong et al.'s FGSM-RS ("fast is better than free").

    Args:
        eps: L-inf radius in [0, 1] pixel units (8/255 on CIFAR-10, 0.3 on MNIST).
        alpha: Step size (Wong: 1.25 * eps, i.e. 10/255 on CIFAR-10, 0.375 on MNIST).
        init: The start of the step (robustrain.attacks.fgsm): "random_clipped" (uniform in the eps-ball, x + delta
            clipped to [0, 1] before the gradient: Wong et al.'s CIFAR-10 code and torchattacks.FFGSM; the default,
            for the CIFAR-10 defaults), "random_unclipped" (the gradient at the unclipped x + delta: Wong et al.'s
            MNIST code, used by the MNIST configs) or "zero" (plain FGSM with step alpha).
        eps_warmup_epochs: Grow eps and alpha linearly from 0 over this many (fractional) epochs; 0 = off.
        regularizer: None, or GradAlign / ELLE (robustrain.training.regularizers), added to the training loss.
        **kwargs: RobustClassifier arguments (net, optimizer, lr, ..., attack_bn_mode).
    """

    def __init__(
        self,
        eps: float = 8 / 255,
        alpha: float = 10 / 255,
        init: Literal["random_unclipped", "random_clipped", "zero"] = "random_clipped",
        eps_warmup_epochs: float = 0.0,
        regularizer: Regularizer | None = None,
        **kwargs,
    ):
        check_fgsm_init(init)
        super().__init__(eps, alpha, eps_warmup_epochs, regularizer, **kwargs)
        self.init = init
        if alpha == 0:
            noise = "the random start alone (uniform noise in the eps-ball)"
            trains_on = "the clean images" if init == "zero" else noise
            rank_zero_warn(
                f"FGSMTraining alpha=0 takes no attack step: it trains on {trains_on}, which is not adversarial "
                "training (Wong et al.'s step is alpha = 1.25 eps)"
            )

    def perturb(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.perturb_with_start_loss(images, labels)[0]

    def perturb_with_start_loss(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The FGSM images and the per-example loss at the step's start (the training step counts the abnormal
        examples, whose loss falls after the step, from it)."""
        with batchnorm_mode(self.net, self.hparams.attack_bn_mode):
            eps, alpha = self.current_eps_alpha()
            return fgsm_with_start_loss(self.net, images, labels, eps, alpha, self.init, box=self.input_range)
