"""GradientAlignmentMonitor: Andriushchenko & Flammarion (2020)'s gradient alignment, recorded and used as a stop.

Every `every_n_epochs` epochs the mean cosine between the input gradients at x and at x + eta (eta ~ U[-eps, eps])
is measured on a fixed, seeded probe of training images (robustrain.signals.gradient_alignment), the network in
eval mode (or with BatchNorm on batch statistics, `probe_batchnorm`). It is near 1 while FGSM training is healthy
and falls when the network turns locally non-linear, which is what catastrophic overfitting is; the rule stops when
it falls below the median of its previous values by more than `threshold` and hands back the weights before the fall.
Optionally it is also measured on the clean training batch every `every_n_train_steps` steps ("batch" records), so a
collapse inside an epoch is seen when it happens.

Cost per check: two input gradients per probe image (about two thirds of an FGSM training step on the same
images). The noise comes from a generator seeded by (seed, epoch or step, rank) inside `torch.random.fork_rng`, so
the check neither depends on nor changes the training's random stream. Under DDP the probe is split across ranks
and the cosine sums are all-reduced, so every rank takes the same decision.

The default rule (a fall of 0.2 in cosine below the median of the last 3 checks, after a 5-epoch warm-up) is the one
the CO lab chose for this signal on its tuning seeds (docs/co_lab.md); its warm-up assumes, as the lab's settings
have, a few epochs of eps warm-up before collapse is possible.
"""

import math
from typing import Any, Literal

import lightning as L
import torch

from robustrain.attacks import UNIT_BOX
from robustrain.callbacks.probe_pgd import module_eval_setting, probe_share
from robustrain.callbacks.rollback_early_stopping import RollbackEarlyStopping
from robustrain.core.train_eval_modes import PROBE_BATCHNORM_MODES, probe_mode
from robustrain.core.validation import check_choice, check_in_range, check_positive_int
from robustrain.signals import gradient_alignment
from robustrain.stopping import Rule
from robustrain.training import network_of


class GradientAlignmentMonitor(RollbackEarlyStopping):
    """Gradient alignment on a fixed probe set (and optionally on training batches), with a stop on its fall.

    Logged: `grad_align/cosine` (the mean cosine), `grad_align/value`, `grad_align/median`, `grad_align/limit`;
    on-the-fly values under `grad_align/batch/...`. Files: `grad_align_history.csv`, `grad_align_curves.png`, and
    on a stop `grad_align_stop.ckpt`.

    Args:
        eps: Radius of the noise, in pixel units; None = the module's `eval_eps` (its threat model), read at setup.
        probe_size: Probe images, from `trainer.datamodule.probe_set(probe_size, probe_seed)`.
        probe_seed: Seed choosing them.
        probe_batchnorm: "eval" (running statistics) or "train" (the probe's batch statistics, running statistics
            untouched); see robustrain.core.train_eval_modes.probe_mode.
        seed: Seed of the noise (combined with the epoch or step and the rank).
        **kwargs: The stop's arguments (RollbackEarlyStopping). Its default rule: a fall of 0.2 in cosine
            (absolute) below the median of the last 3 checks, after a 5-epoch warm-up.
    """

    name = "grad_align"
    default_rule = Rule(
        threshold=0.2, window=3, warmup_epochs=5, wait_for_lr_peak=False, direction="fall", scale="absolute"
    )
    series = "cosine"
    epoch_kind = "probe"
    batch_signal = True
    batch_images = True

    def __init__(
        self,
        eps: float | None = None,
        probe_size: int = 100,
        probe_seed: int = 0,
        probe_batchnorm: Literal["eval", "train"] = "eval",
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        if eps is not None:
            check_in_range("eps", eps, 0.0, 1.0, low_open=True, note="(pixel units) or None for the module's eval_eps")
        check_positive_int("probe_size", probe_size)
        check_choice("probe_batchnorm", probe_batchnorm, PROBE_BATCHNORM_MODES)
        super().__init__(**kwargs)
        self.eps = eps
        self.probe_size, self.probe_seed, self.seed = probe_size, probe_seed, seed
        self.probe_batchnorm = probe_batchnorm
        self._images: torch.Tensor | None = None  # this rank's share of the probe
        self._labels: torch.Tensor | None = None

    def setup(self, trainer: "L.Trainer", pl_module: "L.LightningModule", stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if self.eps is None:
            who = "GradientAlignmentMonitor(eps=None)"
            self.eps = module_eval_setting(pl_module, "eps", who, "give eps explicitly")
        if stage != "fit" or not self.every_n_epochs:
            return
        self._images, self._labels = probe_share(trainer, self.probe_size, self.probe_seed, "GradientAlignmentMonitor")

    # --- measurement ----------------------------------------------------------------------------------------------
    def measure_epoch(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> dict[str, float]:
        return self._measure(trainer, pl_module, self._images, self._labels, trainer.current_epoch)

    def measure_batch(self, trainer: "L.Trainer", pl_module: "L.LightningModule", batch: Any) -> dict[str, float]:
        return self._measure(trainer, pl_module, batch[0], batch[1], trainer.global_step)

    def _measure(
        self, trainer: "L.Trainer", pl_module: "L.LightningModule", images: Any, labels: Any, when: int
    ) -> dict[str, float]:
        """The mean cosine over the images of all ranks (noise seeded by `when`, the RNG stream untouched)."""
        net = network_of(pl_module)
        device = pl_module.device
        sums = torch.zeros(2, dtype=torch.float64, device=device)  # (sum of cosines, count)
        if images is not None and len(images):
            box = getattr(pl_module, "input_range", UNIT_BOX)
            devices = [device] if device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices), probe_mode(net, self.probe_batchnorm):
                torch.manual_seed(self.seed + 1000003 * when + 7919 * trainer.global_rank)
                cos = gradient_alignment(net, images.to(device), labels.to(device), self.eps, box)
            sums[0], sums[1] = cos.double().sum(), len(cos)
        sums = trainer.strategy.reduce(sums, reduce_op="sum")
        return {"cosine": (sums[0] / sums[1]).item() if sums[1] > 0 else math.nan}
