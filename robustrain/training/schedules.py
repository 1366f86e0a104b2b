"""Learning-rate and eps schedules as pure functions of training progress, stepped every iteration."""

import math

from robustrain.core.validation import check_choice, check_in_range, check_positive_int

LR_SCHEDULES = ("cyclic", "piecewise", "cosine", "constant")


def lr_factor(schedule: str, step: int, total_steps: int, cyclic_peak: float = 0.4) -> float:
    """Multiplier of the peak learning rate after `step` optimizer steps out of `total_steps`.

    - cyclic (Wong et al. 2020): linear 0 -> 1 over the first `cyclic_peak` of training, then 1 -> 0. Evaluated at
      (step + 1) / total_steps, as fast_adversarial does, so the first update is not a zero step.
    - piecewise (Rice et al. 2020): 1, then 0.1 from 50% and 0.01 from 75% of training.
    - cosine: 0.5 * (1 + cos(pi * step / total_steps)).
    - constant: 1.
    """
    check_choice("lr_schedule", schedule, LR_SCHEDULES)
    check_positive_int("total_steps", total_steps)
    if schedule == "cyclic":
        check_in_range("cyclic_peak", cyclic_peak, 0.0, 1.0, low_open=True, high_open=True)
        t = min((step + 1) / total_steps, 1.0)
        return t / cyclic_peak if t <= cyclic_peak else (1.0 - t) / (1.0 - cyclic_peak)
    t = min(step / total_steps, 1.0)
    if schedule == "piecewise":
        return 1.0 if t < 0.5 else 0.1 if t < 0.75 else 0.01
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    return 1.0


def warmup_factor(progress_epochs: float, warmup_epochs: float) -> float:
    """Linear ramp 0 -> 1 over the first `warmup_epochs` of training (progress in fractional epochs); 1 without warm-up.

    Used to grow the attack radius eps (and its step) at the start of adversarial training: PGD training at MNIST's
    eps 0.3 from random weights can stay at chance accuracy for the whole run.
    """
    check_in_range("eps_warmup_epochs", warmup_epochs, 0.0)
    if warmup_epochs == 0:
        return 1.0
    return min(max(progress_epochs / warmup_epochs, 0.0), 1.0)


class EpsWarmup:
    """Mixin: the fraction of eps in force now, from `eps_warmup_epochs` and the trainer's progress."""

    def eps_scale(self) -> float:
        warmup = self.hparams.get("eps_warmup_epochs", 0.0)
        if not warmup or self._trainer is None:
            return 1.0
        batches_per_epoch = self.trainer.num_training_batches
        if not 0 < batches_per_epoch < float("inf"):
            return 1.0
        return warmup_factor(self.global_step / batches_per_epoch, warmup)

    def current_eps_alpha(self) -> tuple[float, float]:
        """(eps, alpha) in force at this step: the warm-up's fraction of the module's `eps` and `alpha`."""
        scale = self.eps_scale()
        return self.eps * scale, self.alpha * scale
