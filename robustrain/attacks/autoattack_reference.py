"""Croce & Hein's own AutoAttack (fra31/auto-attack, packaged on PyPI as `pyautoattack`), run on [0, 1] images.

The optional extra `pip install -e '.[reference]'` installs pyautoattack 0.2.0, whose attack code (APGD, APGD-T, FAB,
Square, the checks) is fra31/auto-attack's at commit a392200 (January 2023) with only its imports made relative, and
whose driver (`AutoAttack`) differs in its API and in logging through the `auto-attack` logger instead of printing
(docs/evaluation.md lists the comparison). `reference_autoattack` runs it as robustrain runs its own AutoAttack:
- the standard version (APGD-CE, APGD-T with 9 targets, FAB-T with 9 targets, Square with 5000 queries, 100
  iterations, one restart each), or other components, iterations, targets and queries set on its attack objects;
- the global RNG saved and restored around it (the reference calls `torch.manual_seed(seed)` in every component);
- its log records kept off the console: its flags (zero gradients, a randomised or dynamic defence, Square beating the
  gradient attacks) come back as Python warnings, the rest is dropped; the trace function it sets to detect dynamic
  defences is put back as it was;
- every adversarial image checked against the eps-ball and [0, 1] before it is returned.
Boxes other than [0, 1] are handled by the caller, robustrain.attacks.autoattack, through UnitBoxModel.
"""

import importlib.util
import logging
import sys
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn

REFERENCE_PACKAGE = "pyautoattack"
REFERENCE_LOGGER = "auto-attack"
INSTALL_HINT = "pip install -e '.[reference]' (Croce & Hein's AutoAttack, the pyautoattack package)"
_EPS_BALL_TOLERANCE = 1e-5


def reference_available() -> bool:
    """Whether the reference implementation (pyautoattack) is installed."""
    return importlib.util.find_spec(REFERENCE_PACKAGE) is not None


def check_reference_available() -> None:
    """Raises ValueError saying how to install the reference implementation when it is missing."""
    if not reference_available():
        raise ValueError(f"autoattack implementation 'reference' is not installed: {INSTALL_HINT}")


class _Collect(logging.Handler):
    """Keeps the reference's log records instead of printing them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _set_iterations(apgd, steps: int) -> None:
    """APGD's iterations and the checkpoints its constructor derives from them (same formulas as autopgd_base)."""
    apgd.n_iter = apgd.n_iter_orig = steps
    apgd.n_iter_2 = max(int(0.22 * steps), 1)
    apgd.n_iter_min = max(int(0.06 * steps), 1)
    apgd.size_decr = max(int(0.03 * steps), 1)


def reference_autoattack(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    eps: float,
    steps: int,
    components: Sequence[str],
    n_targets: int,
    square_queries: int,
    seed: int,
    batch_size: int = 250,
) -> Tensor:
    """Adversarial images of Croce & Hein's AutoAttack (L-inf) on [0, 1] images; checked settings come from the caller
    (robustrain.attacks.autoattack).

    Args:
        model: Classifier on [0, 1] images, in the mode it should be attacked in (eval).
        images: (B, C, H, W) in [0, 1].
        labels: (B,) int64.
        eps: L-inf radius.
        steps: APGD / APGD-T / FAB iterations (the standard version: 100).
        components: Components in order (standard: apgd-ce, apgd-t, fab-t, square).
        n_targets: Target classes of apgd-t and fab-t (standard: 9).
        square_queries: Square's queries (standard: 5000).
        seed: The reference's seed (it seeds every component with it; the global RNG is restored afterwards).
        batch_size: Images per forward pass inside the reference.

    Returns:
        Adversarial images (B, C, H, W), each within eps of its image and in [0, 1] (the image itself when no
        component fooled the model).
    """
    from pyautoattack import AutoAttack  # the optional extra

    device = next(model.parameters()).device
    logger, collect = logging.getLogger(REFERENCE_LOGGER), _Collect()
    propagate, level, trace = logger.propagate, logger.level, sys.gettrace()
    logger.addHandler(collect)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    devices = [device] if device.type == "cuda" else []
    try:
        attack = AutoAttack(model, device=device, eps=eps, norm="Linf", seed=seed, version="standard")
        attack.attacks_to_run = list(components)
        _set_iterations(attack.apgd, steps)
        _set_iterations(attack.apgd_targeted, steps)
        attack.fab.n_iter = steps
        attack.apgd_targeted.n_target_classes = attack.fab.n_target_classes = n_targets
        attack.square.n_queries = square_queries
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            adv, _ = attack.run_standard_evaluation(images.detach(), labels.detach(), batch_size=batch_size)
    finally:
        sys.settrace(trace)  # its dynamic-defence check calls sys.settrace(None)
        logger.removeHandler(collect)
        logger.propagate, logger.level = propagate, level
    for record in collect.records:
        if record.levelno >= logging.WARNING:
            warnings.warn(f"reference AutoAttack: {record.getMessage()}", stacklevel=2)
    adv = adv.to(images.device)
    outside = (adv - images).abs().flatten(1).amax(1) > eps + _EPS_BALL_TOLERANCE
    outside |= (adv < 0).flatten(1).any(1) | (adv > 1).flatten(1).any(1)
    if outside.any():
        raise RuntimeError(f"the reference AutoAttack returned {int(outside.sum())} images outside the eps={eps} ball")
    return adv.detach()
