"""Adversarial attacks on [0, 1] images, via torchattacks with explicit model modes and devices."""

from robustrain.attacks.linf import (
    FGSM_INITS,
    check_fgsm_init,
    check_linf_params,
    fgsm,
    model_device,
    pgd,
    require_grad_mode,
)

__all__ = ["FGSM_INITS", "check_fgsm_init", "check_linf_params", "fgsm", "model_device", "pgd", "require_grad_mode"]
