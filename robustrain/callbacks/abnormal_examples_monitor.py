"""AbnormalExamplesMonitor: Lin et al. (2023)'s abnormal adversarial examples, recorded and used as a stop.

An FGSM training example is abnormal when its loss at the adversarial image is lower than where the step started
(robustrain.signals.abnormal_examples). FGSMTraining counts them in every training step from the two losses it
computes anyway and returns the counts with the loss; this callback sums them over each epoch (and, with
`every_n_train_steps`, over each run of that many steps) and over all ranks, and records the fraction. A few percent
are abnormal in healthy training; the fraction jumps when catastrophic overfitting sets in. The rule stops when it
rises above the median of its previous values by more than `threshold` (absolute by default: the fraction starts near
0, where a relative rise means little) and hands back the weights before the jump. The check itself costs nothing.

The default rule (a rise of 2 points over the previous epoch, after a 5-epoch warm-up) is the one the CO lab chose
for this signal on its tuning seeds (docs/co_lab.md); its warm-up assumes, as the lab's settings have, a few epochs
of eps warm-up before collapse is possible.
"""

from typing import Any

import lightning as L
import torch

from robustrain.callbacks.rollback_early_stopping import RollbackEarlyStopping
from robustrain.stopping import Rule
from robustrain.training import RobustClassifier

DECIDE_ON = ("epoch", "batch")


class AbnormalExamplesMonitor(RollbackEarlyStopping):
    """The share of abnormal FGSM training examples per epoch (and per `every_n_train_steps` steps), with a stop.

    Logged: `abnormal/fraction`, `abnormal/value`, `abnormal/median`, `abnormal/limit`; step-level values under
    `abnormal/batch/...`. Files: `abnormal_history.csv`, `abnormal_curves.png`, and on a stop `abnormal_stop.ckpt`.

    Args:
        **kwargs: The stop's arguments (RollbackEarlyStopping); `every_n_train_steps` records the fraction over every
            run of that many optimizer steps ("batch" records). Its default rule: a rise of 0.02 (2 points, absolute)
            over the previous epoch's fraction, after a 5-epoch warm-up.
    """

    name = "abnormal"
    default_rule = Rule(threshold=0.02, window=1, warmup_epochs=5, wait_for_lr_peak=False, scale="absolute")
    series = "fraction"
    batch_signal = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # (abnormal, examples) on this rank, this epoch / since the last step-level record: counts kept on the
        # module's device and read only at a check, so counting costs the training step no host sync
        self._epoch_counts = torch.zeros(2, dtype=torch.float64)
        self._step_counts = torch.zeros(2, dtype=torch.float64)

    def setup(self, trainer: "L.Trainer", pl_module: "L.LightningModule", stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        counts = type(pl_module).perturb_with_start_loss is not RobustClassifier.perturb_with_start_loss
        if stage == "fit" and not (isinstance(pl_module, RobustClassifier) and counts):
            raise ValueError(
                "AbnormalExamplesMonitor needs a training module whose steps count abnormal examples (FGSMTraining); "
                f"got {type(pl_module).__name__}"
            )

    # --- hooks ----------------------------------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> None:
        dtype = torch.float32 if pl_module.device.type == "mps" else torch.float64  # MPS has no float64
        self._epoch_counts = torch.zeros(2, dtype=dtype, device=pl_module.device)
        self._step_counts = torch.zeros(2, dtype=dtype, device=pl_module.device)

    def on_train_batch_end(
        self, trainer: "L.Trainer", pl_module: "L.LightningModule", outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._should_skip(trainer) or not isinstance(outputs, dict) or "abnormal" not in outputs:
            return
        for counts in (self._epoch_counts, self._step_counts):
            counts[0] += outputs["abnormal"]  # a device tensor: added on the device
            counts[1] += int(outputs["examples"])  # a Python int (the batch size)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)  # the step check, when due

    def measure_batch(self, trainer: "L.Trainer", pl_module: "L.LightningModule", batch: Any) -> dict[str, float]:
        values = self._fraction(trainer, pl_module, self._step_counts)
        self._step_counts.zero_()
        return values

    def measure_epoch(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> dict[str, float]:
        return self._fraction(trainer, pl_module, self._epoch_counts)

    def _fraction(self, trainer: "L.Trainer", pl_module: "L.LightningModule", counts: torch.Tensor) -> dict:
        """The abnormal fraction over the counted examples of all ranks (nan when none was counted)."""
        abnormal, examples = trainer.strategy.reduce(counts.to(pl_module.device), reduce_op="sum").tolist()
        return {"fraction": abnormal / examples if examples > 0 else float("nan"), "examples": float(examples)}
