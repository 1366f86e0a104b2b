"""Adversarial attacks on images in [0, 1] (or any box, box.py), L-inf, one per file, with explicit modes and devices.

What comes from torchattacks 3.5.1 and what is robustrain's own:
- fgsm.py (FGSM, FGSM-RS) and pgd.py (PGD) run robustrain's own loops (steps.py) with torchattacks.FFGSM's and
  torchattacks.PGD's float operations in their order: a seeded call equals torchattacks' result bit for bit (tested),
  without its per-call objects, copies and mode switching. The unclipped FGSM-RS start, PGD's restart rule and its
  per-example early stop are robustrain's own (torchattacks has none of them).
- nfgsm.py (N-FGSM, de Jorge et al. 2022) is robustrain's own: torchattacks has none (checked against the
  reference's arithmetic in tests/test_attacks_nfgsm.py).
- autoattack.py composes AutoAttack from torchattacks' own components (APGD, APGD-T, FAB, Square), called through
  their `forward`, with robustrain's iterations, targets, RNG and device handling; with implementation="reference"
  it runs Croce & Hein's own code instead (autoattack_reference.py, the optional `.[reference]` extra).
"""

from robustrain.attacks.autoattack import (
    AUTOATTACK_COMPONENTS,
    AUTOATTACK_IMPLEMENTATIONS,
    AUTOATTACK_STANDARD,
    autoattack,
    check_autoattack_params,
)
from robustrain.attacks.box import UNIT_BOX, UnitBoxModel, check_box
from robustrain.attacks.fgsm import FGSM_INITS, check_fgsm_init, fgsm, fgsm_with_start_loss
from robustrain.attacks.inputs import check_linf_params, model_device, require_grad_mode, step_warning
from robustrain.attacks.nfgsm import NFGSM_NOISE, check_nfgsm_params, nfgsm
from robustrain.attacks.pgd import pgd, pgd_with_start_loss

__all__ = [
    "AUTOATTACK_COMPONENTS",
    "AUTOATTACK_IMPLEMENTATIONS",
    "AUTOATTACK_STANDARD",
    "FGSM_INITS",
    "NFGSM_NOISE",
    "UNIT_BOX",
    "UnitBoxModel",
    "autoattack",
    "check_autoattack_params",
    "check_box",
    "check_fgsm_init",
    "check_linf_params",
    "check_nfgsm_params",
    "fgsm",
    "fgsm_with_start_loss",
    "model_device",
    "nfgsm",
    "pgd",
    "pgd_with_start_loss",
    "require_grad_mode",
    "step_warning",
]
