"""N-FGSM adversarial training (de Jorge et al., NeurIPS 2022): a noise start of k eps, a step of eps, no projection."""

import torch

from robustrain.attacks.nfgsm import NFGSM_NOISE, check_nfgsm_params, nfgsm
from robustrain.core.train_eval_modes import batchnorm_mode
from robustrain.training.regularizers import Regularizer
from robustrain.training.single_step import SingleStepTraining


class NFGSMTraining(SingleStepTraining):
    """N-FGSM adversarial training (robustrain.attacks.nfgsm), with the paper's defaults.

    The training images are x + eta + alpha * sign(grad at x + eta), eta ~ U[-k eps, k eps], kept in the data's range
    and, by default, not projected back onto the eps-ball (the perturbation reaches (k + 1) eps). It costs what an
    FGSM step costs. Evaluation (val/acc_pgd) attacks the eps-ball as for every method.

    Args:
        eps: L-inf radius in [0, 1] pixel units (8/255 on CIFAR-10).
        alpha: Step size; None: eps (the paper).
        noise: k, the noise radius in units of eps (the paper: 2).
        clip: None (the paper): no projection; c > 0: the perturbation is clipped to [-c eps, c eps].
        eps_warmup_epochs: Grow eps (and with it the noise, the step and the clip) over this many epochs; 0 = off.
        regularizer: None, or GradAlign / ELLE (robustrain.training.regularizers), added to the training loss.
        **kwargs: RobustClassifier arguments (net, optimizer, lr, ..., attack_bn_mode).
    """

    def __init__(
        self,
        eps: float = 8 / 255,
        alpha: float | None = None,
        noise: float = NFGSM_NOISE,
        clip: float | None = None,
        eps_warmup_epochs: float = 0.0,
        regularizer: Regularizer | None = None,
        **kwargs,
    ):
        alpha = eps if alpha is None else alpha
        check_nfgsm_params(eps, alpha, noise, clip)
        super().__init__(eps, alpha, eps_warmup_epochs, regularizer, **kwargs)
        self.noise, self.clip = noise, clip

    def perturb(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.perturb_with_start_loss(images, labels)[0]

    def perturb_with_start_loss(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The N-FGSM images and the per-example loss at the noisy start (for the abnormal-example count)."""
        with batchnorm_mode(self.net, self.hparams.attack_bn_mode):
            eps, alpha = self.current_eps_alpha()
            return nfgsm(self.net, images, labels, eps, alpha, self.noise, self.clip, box=self.input_range)
