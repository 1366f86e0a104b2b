"""Adversarial attacks on [0, 1] images, via torchattacks with explicit model modes and devices."""

from robustrain.attacks.autoattack import (
    AUTOATTACK_COMPONENTS,
    AUTOATTACK_STANDARD,
    autoattack,
    check_autoattack_params,
)
from robustrain.attacks.linf import (
    FGSM_INITS,
    check_fgsm_init,
    check_linf_params,
    fgsm,
    model_device,
    pgd,
    require_grad_mode,
)

__all__ = [
    "AUTOATTACK_COMPONENTS",
    "AUTOATTACK_STANDARD",
    "FGSM_INITS",
    "autoattack",
    "check_autoattack_params",
    "check_fgsm_init",
    "check_linf_params",
    "fgsm",
    "model_device",
    "pgd",
    "require_grad_mode",
]
