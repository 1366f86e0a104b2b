"""MaskingGapMonitor: the FGSM-PGD accuracy gap, the classic symptom of catastrophic overfitting, as a stop.

At catastrophic overfitting PGD accuracy falls towards 0 while FGSM accuracy rises towards 100% (Kim et al. 2021;
Wong et al. 2020): the model resists the one-step attack it trains on and nothing stronger. RobustClassifier already
measures both on the same held-out images at every validation (`val/acc_fgsm`, `val/acc_pgd`, reduced across ranks
by torchmetrics); this callback reads them at the end of each epoch and stops when the gap rises above the median of
its previous values by more than `threshold` (absolute, in accuracy: 0.2 = 20 points), handing back the weights
before the jump. It costs nothing beyond the validation the module runs anyway.

The default rule (a rise of 20 points over the previous epoch, after a 5-epoch warm-up) is the one the CO lab chose
for this signal on its tuning seeds (docs/co_lab.md); its warm-up assumes, as the lab's settings have, a few epochs
of eps warm-up before collapse is possible.
"""

import math
from typing import Any

import lightning as L

from robustrain.callbacks.rollback_early_stopping import RollbackEarlyStopping, validated_this_epoch
from robustrain.stopping import Rule


class MaskingGapMonitor(RollbackEarlyStopping):
    """val/acc_fgsm - val/acc_pgd per epoch, with a stop on its rise.

    Logged: `masking_gap/gap`, `masking_gap/value`, `masking_gap/median`, `masking_gap/limit`. Files:
    `masking_gap_history.csv`, `masking_gap_curves.png`, and on a stop `masking_gap_stop.ckpt`.

    Args:
        **kwargs: The stop's arguments (RollbackEarlyStopping). Its default rule: a rise of 0.2 (20 points,
            absolute) over the previous validation's gap, after a 5-epoch warm-up.
    """

    name = "masking_gap"
    default_rule = Rule(threshold=0.2, window=1, warmup_epochs=5, wait_for_lr_peak=False, scale="absolute")
    series = "gap"
    epoch_kind = "val"

    def setup(self, trainer: "L.Trainer", pl_module: "L.LightningModule", stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        reason = pl_module.unlogged_reason("val/masking_gap") if hasattr(pl_module, "unlogged_reason") else None
        if stage == "fit" and reason:
            raise ValueError(f"MaskingGapMonitor reads val/acc_fgsm and val/acc_pgd, but {reason}")

    def measure_epoch(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> dict[str, Any] | None:
        metrics = trainer.callback_metrics
        acc_fgsm, acc_pgd = metrics.get("val/acc_fgsm"), metrics.get("val/acc_pgd")
        if acc_fgsm is None or acc_pgd is None or not validated_this_epoch(trainer):
            return None  # no validation this epoch: nothing new to decide on
        acc_fgsm, acc_pgd = float(acc_fgsm), float(acc_pgd)
        gap = acc_fgsm - acc_pgd if math.isfinite(acc_fgsm) and math.isfinite(acc_pgd) else math.nan
        return {"gap": gap, "acc_fgsm": acc_fgsm, "acc_pgd": acc_pgd}

    def plot_series(self) -> list[str]:
        return ["value", "median", "limit", "acc_fgsm", "acc_pgd"]
