"""SignalMonitor: a RollbackEarlyStopping that watches one measured signal with a median-filter rule.

The rule is robustrain.stopping's `Rule`: each new value is compared with the median of the values before it and
the run stops when it rises above (or, for signals that fall at catastrophic overfitting, falls below) a limit,
relative (median * (1 +- threshold)) or absolute (median +- threshold), after a warm-up. Every check records the
value, the median, the limit, whether it was in the warm-up and whether the learning rate was still rising, so the
history can be replayed offline with any other rule (`python -m robustrain.stopping.replay`) and gives the same
decisions. Subclasses measure (AliasingMonitor, GradientAlignmentMonitor, AbnormalExamplesMonitor, MaskingGapMonitor)
and name the recorded series that decides (`series`).
"""

from typing import Any

import lightning as L

from robustrain.callbacks.rollback_early_stopping import RollbackEarlyStopping, current_lr
from robustrain.stopping import Decision, Rule, decide
from robustrain.validation import check_file_name


class SignalMonitor(RollbackEarlyStopping):
    """Base class of the median-filter monitors: rule settings, lr tracking, the decision and its record.

    Args:
        threshold, window, warmup_epochs, wait_for_lr_peak, reference, scale: The rule (robustrain.stopping.Rule);
            its direction is the subclass's (`direction`: "rise" or "fall").
        name: Prefix of the logged values and stem of the files (`<name>_history.csv`, ...).
        monitor_only, restore, save_checkpoint, verbose: See RollbackEarlyStopping.
    """

    direction = "rise"

    def __init__(
        self,
        threshold: float,
        window: int,
        warmup_epochs: int,
        wait_for_lr_peak: bool,
        reference: str,
        scale: str,
        name: str,
        monitor_only: bool = False,
        restore: bool = True,
        save_checkpoint: bool = True,
        verbose: bool = False,
    ) -> None:
        super().__init__(monitor_only=monitor_only, restore=restore, save_checkpoint=save_checkpoint, verbose=verbose)
        self.rule = Rule(  # raises naming a bad setting
            threshold=threshold,
            window=window,
            warmup_epochs=warmup_epochs,
            wait_for_lr_peak=wait_for_lr_peak,
            reference=reference,
            direction=self.direction,
            scale=scale,
        )
        check_file_name("name", name)
        self.name = name
        self._start_lr = float("nan")

    @property
    def series(self) -> str:
        """The recorded value that decides (a key of the values a check records)."""
        raise NotImplementedError

    def on_train_start(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> None:
        super().on_train_start(trainer, pl_module)
        self._start_lr = current_lr(trainer)  # the lr before the first check, for lr_rising

    def _evaluate(self, record: dict[str, Any], previous: list[dict]) -> Decision:
        lr_before = previous[-1]["lr"] if previous else self._start_lr
        record["lr_rising"] = bool(record["lr"] > lr_before)
        record["warmup"] = self.rule.in_warmup(record["epoch"], record["lr_rising"])
        record["value"] = record[self.series]
        values, warmups = [r["value"] for r in previous], [r["warmup"] for r in previous]
        return decide(values, warmups, record["value"], record["warmup"], self.rule, name=f"{self.name}/{self.series}")

    def _settings(self) -> dict[str, Any]:
        rule = self.rule
        return {  # the rule first: the HPARAMS columns a user sorts runs by
            "threshold": rule.threshold,
            "window": rule.window,
            "warmup_epochs": rule.warmup_epochs,
            "wait_for_lr_peak": rule.wait_for_lr_peak,
            "reference": rule.reference,
            "direction": rule.direction,
            "scale": rule.scale,
            **super()._settings(),
        }

    def _plot_series(self) -> list[str]:
        return ["value", "median", "limit"]
