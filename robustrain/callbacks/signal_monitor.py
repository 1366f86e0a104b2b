"""SignalMonitor: a RollbackEarlyStopping that watches one measured signal with a median-filter rule.

The rule is robustrain.stopping's `Rule`: each new value is compared with the median of the values before it and
the run stops when it rises above (or, for signals that fall at catastrophic overfitting, falls below) a limit,
relative (median * (1 +- threshold)) or absolute (median +- threshold), after a warm-up. Every check records the
value, the median, the limit, whether it was in the warm-up and whether the learning rate was still rising, so the
history can be replayed offline with any other rule (`python -m robustrain.stopping.replay`) and gives the same
decisions. Subclasses measure (AliasingMonitor, GradientAlignmentMonitor, AbnormalExamplesMonitor, MaskingGapMonitor)
and name the recorded series that decides (`series`). ProbeSignalMonitor adds the schedule of the monitors that
measure a fixed probe at epoch ends and, optionally, training batches every n steps (aliasing, gradient alignment).
"""

from typing import Any

import lightning as L

from robustrain.callbacks.rollback_early_stopping import RollbackEarlyStopping, current_lr
from robustrain.core.validation import check_choice, check_file_name, check_int, check_positive_int
from robustrain.stopping import Decision, Rule, decide

PROBE_DECIDE_ON = ("probe", "batch")


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


class ProbeSignalMonitor(SignalMonitor):
    """A SignalMonitor measured on a fixed probe at the end of every `every_n_epochs`-th epoch ("probe" records) and,
    optionally, on the clean training batch after every `every_n_train_steps`-th optimizer step ("batch" records),
    deciding on one of the two series (`decide_on`).

    Subclasses keep these arguments in their own constructor's signature (what LightningCLI reads), pass them here
    and measure: `_measure_probe(trainer, pl_module)` and `_measure_batch(trainer, pl_module, batch)`, each returning
    the recorded values of one check over all ranks.

    Args:
        every_n_epochs: Measure on the probe at the end of every n-th epoch; 0 = never (then decide_on="batch").
        every_n_train_steps: Also measure on the training batch after every n-th optimizer step; 0 = never.
        batch_probe_size: Images of the training batch the on-the-fly check uses (its first ones); None = all.
        decide_on: "probe" (the epoch-end series) or "batch" (the on-the-fly series).
        The others: see SignalMonitor.
    """

    def __init__(
        self,
        threshold: float,
        window: int,
        warmup_epochs: int,
        wait_for_lr_peak: bool,
        reference: str,
        scale: str,
        name: str,
        *,
        every_n_epochs: int,
        every_n_train_steps: int,
        batch_probe_size: int | None,
        decide_on: str,
        monitor_only: bool = False,
        restore: bool = True,
        save_checkpoint: bool = True,
        verbose: bool = False,
    ) -> None:
        super().__init__(
            threshold,
            window,
            warmup_epochs,
            wait_for_lr_peak,
            reference,
            scale,
            name,
            monitor_only=monitor_only,
            restore=restore,
            save_checkpoint=save_checkpoint,
            verbose=verbose,
        )
        check_int("every_n_epochs", every_n_epochs, 0)
        check_int("every_n_train_steps", every_n_train_steps, 0)
        if batch_probe_size is not None:  # None: the whole batch
            check_positive_int("batch_probe_size", batch_probe_size)
        check_choice("decide_on", decide_on, PROBE_DECIDE_ON)
        if decide_on == "probe":
            check_int(
                "every_n_epochs", every_n_epochs, 1, note="with decide_on='probe' (the probe is measured at epoch ends)"
            )
        else:
            check_int(
                "every_n_train_steps",
                every_n_train_steps,
                1,
                note="with decide_on='batch' (the on-the-fly measurements)",
            )
        self.every_n_epochs = every_n_epochs
        self.every_n_train_steps = every_n_train_steps
        self.batch_probe_size = batch_probe_size
        self.decide_on = decide_on

    def _measure_probe(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> dict[str, float]:
        raise NotImplementedError

    def _measure_batch(self, trainer: "L.Trainer", pl_module: "L.LightningModule", batch: Any) -> dict[str, float]:
        raise NotImplementedError

    def on_train_batch_end(
        self, trainer: "L.Trainer", pl_module: "L.LightningModule", outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        n = self.every_n_train_steps
        if not n or self._should_skip(trainer) or trainer.global_step % n != 0:
            return
        values = self._measure_batch(trainer, pl_module, batch)
        self._run_check(trainer, pl_module, "batch", values, decide=self.decide_on == "batch")

    def on_train_epoch_end(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> None:
        if self._should_skip(trainer) or self.stopped_epoch == trainer.current_epoch:
            return  # a batch-level stop this epoch was decided already
        n = self.every_n_epochs
        if n and (trainer.current_epoch + 1) % n == 0:
            values = self._measure_probe(trainer, pl_module)
            if self._run_check(trainer, pl_module, "probe", values, decide=self.decide_on == "probe"):
                return
            self._keep_weights(trainer, pl_module)
        elif self.decide_on == "batch":
            self._keep_weights(trainer, pl_module)
