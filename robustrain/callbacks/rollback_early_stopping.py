"""RollbackEarlyStopping: the machinery shared by robustrain's early-stopping callbacks.

A subclass measures something (aliasing, PGD accuracy) and decides with its rule through robustrain.stopping's one
entry point (`decide`); this base class
- keeps a CPU copy of the weights from the last check that said "go on" (or from the start of training),
- agrees on the decision across ranks (`trainer.strategy.reduce_boolean_decision`),
- logs every value under `<name>/<key>`, records it in `history` and rewrites `<log_dir>/<name>_history.csv`,
- on a stop: sets `trainer.should_stop`, logs why, at which epoch, with the values, and saves the kept weights to
  `<log_dir>/<name>_stop.ckpt` at once, before any checkpoint records the stop; when training has ended
  (`on_train_end`) it loads them back into the LightningModule,
- at the end of fit: draws the curves to `<log_dir>/<name>_curves.png` and, with a TensorBoardLogger, `add_figure`,
- keeps all resumable state in `state_dict` (the history, the stop, and the settings it was recorded under), so a
  resumed run decides identically.

The `state_key` is the callback's identity only (its class, and its `name` when that is not the class's), never its
settings: a resumed run with changed settings finds its state, and the CLI compares the settings before training
(robustrain.runs.resume) instead of silently starting a new, shorter history. Subclasses report their settings in
`_settings()`; settings a subclass fills in at setup from the module (e.g. PGDEarlyStopping's eps) count as given.

With `monitor_only=True` it records and logs every decision but never stops and keeps no weights, so several of
these callbacks can run side by side with only one allowed to stop the run.
"""

import ast
import copy
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn

from robustrain.callbacks.stop_figure import plot_history, plot_stop_figure
from robustrain.core.errors import BadInputError
from robustrain.runs.atomic import atomic_savefig
from robustrain.runs.monitoring import tensorboard_loggers
from robustrain.runs.resume import plain
from robustrain.stopping import Decision, upgrade_record, write_history_csv
from robustrain.stopping.history import check_history_path

PROGRESS_BAR_KEYS = ("value", "limit")  # shown on the progress bar as <name>/value and <name>/limit


def current_lr(trainer: "L.Trainer") -> float:
    """Learning rate of the first parameter group of the first optimizer (nan without one)."""
    if not trainer.optimizers:
        return math.nan
    return float(trainer.optimizers[0].param_groups[0]["lr"])


class RollbackEarlyStopping(L.Callback):
    """Base class: check, decide, agree, log, record; on a stop hand back the previous check's weights.

    Subclasses set `name` (metric prefix and file stem), call `_run_check` from their hooks with the measured values,
    and implement `_evaluate(record, previous)`, which fills `value` and returns the rule's Decision
    (robustrain.stopping.decide); the base records its `median` and `limit` beside the value. `_plot_series` names
    the keys the end-of-fit figure draws.

    Args:
        monitor_only: Record and log every decision, never stop the run (and keep no copy of the weights).
        restore: On a stop, load the weights of the last check that said "go on" back into the LightningModule.
        save_checkpoint: On a stop, save the model it hands back to `<log_dir>/<name>_stop.ckpt` via
            trainer.save_checkpoint, before `last.ckpt` records the stop; its epoch and global step are those of the
            stop, its weights the restored ones.
        verbose: Log a line for every check (the stop is always logged).

    Attributes:
        history: One dict per check, oldest first (see robustrain.stopping.history).
        stopped_epoch: Epoch at which the stop was decided, or None.
        restored_epoch: Epoch whose end-of-epoch weights were restored (-1: the weights at the start of fit), or None.
        stopping_reason_message: Why it stopped, or None.
        stop_checkpoint_path: Where the restored model was saved, or None.
    """

    name = "rollback"

    def __init__(
        self, monitor_only: bool = False, restore: bool = True, save_checkpoint: bool = True, verbose: bool = False
    ) -> None:
        super().__init__()
        self.monitor_only = monitor_only
        self.restore = restore
        self.save_checkpoint = save_checkpoint
        self.verbose = verbose
        self.history: list[dict] = []
        self.stopped_epoch: int | None = None
        self.restored_epoch: int | None = None
        self.stopping_reason_message: str | None = None
        self.stop_checkpoint_path: str | None = None
        self._snapshot: dict[str, torch.Tensor] | None = None
        self._snapshot_epoch: int | None = None
        self._restore_pending = False
        self._dir: Path | None = None

    # --- resumable state ------------------------------------------------------------------------------------------
    @property
    def state_key(self) -> str:
        """The class, plus the name when it is not the class's default (see the module docstring)."""
        if self.name == type(self).name:
            return type(self).__qualname__
        return self._generate_state_key(name=self.name)

    def state_dict(self) -> dict[str, Any]:
        return {
            "history": copy.deepcopy(self.history),
            "stopped_epoch": self.stopped_epoch,
            "restored_epoch": self.restored_epoch,
            "stopping_reason_message": self.stopping_reason_message,
            # the handed-back model's file (in the version folder), so a resume or a test can tell it is missing
            "stop_checkpoint": self.stop_checkpoint_name if self.stop_checkpoint_path is not None else None,
            "settings": plain(self._settings()),  # plain data: checkpoints are read weights-only
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [upgrade_record(r) for r in copy.deepcopy(state_dict.get("history", []))]
        self.stopped_epoch = state_dict.get("stopped_epoch")
        self.restored_epoch = state_dict.get("restored_epoch")
        self.stopping_reason_message = state_dict.get("stopping_reason_message")
        recorded, now = state_dict.get("settings"), plain(self._settings())
        if recorded is not None and recorded != now:
            keys = [k for k in {**recorded, **now} if recorded.get(k) != now.get(k)]
            changed = ", ".join(f"{k} {recorded.get(k)!r} -> {now.get(k)!r}" for k in keys)
            rank_zero_warn(
                f"{type(self).__name__} ({self.name}) resumes with changed settings ({changed}): its history "
                f"({len(self.history)} checks) continues under the new ones"
            )

    def on_load_checkpoint(self, trainer: "L.Trainer", pl_module: "L.LightningModule", checkpoint: dict) -> None:
        """Finds this callback's state in checkpoints written when the key held settings (`AliasingMonitor{...}`)."""
        states = checkpoint.get("callbacks")
        if not isinstance(states, dict) or self.state_key in states:
            return
        found = [key for key in states if self._is_legacy_key(key)]
        if len(found) == 1:
            states[self.state_key] = states[found[0]]

    def _is_legacy_key(self, key: str) -> bool:
        """Whether `key` is this callback's key as written before keys stopped holding settings."""
        prefix = type(self).__qualname__ + "{"
        if not key.startswith(prefix):
            return False
        try:
            settings = ast.literal_eval(key[len(prefix) - 1 :])
        except (ValueError, SyntaxError):
            return False
        return isinstance(settings, dict) and settings.get("name", type(self).name) == self.name

    # --- hooks ----------------------------------------------------------------------------------------------------
    def _should_skip(self, trainer: "L.Trainer") -> bool:
        return trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking or bool(trainer.fast_dev_run)

    def on_train_start(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> None:
        # trainer.log_dir broadcasts from rank 0: resolve it here, on every rank, never inside rank-zero-only code
        self._dir = Path(trainer.log_dir or trainer.default_root_dir)
        # before the first epoch, not at its end; on every rank, agreed, so that no rank trains on alone
        history = self._dir / f"{self.name}_history.csv"
        try:
            check_history_path(history)
            in_the_way = None
        except BadInputError as error:
            in_the_way = error
        if trainer.strategy.reduce_boolean_decision(in_the_way is not None, all=False):
            raise in_the_way or BadInputError(f"{history} is not a file on the writing rank's filesystem")
        if not self._should_skip(trainer):
            # A stop at the first check hands back the weights training started from (fresh or resumed).
            self._take_snapshot(pl_module, trainer.current_epoch - 1)

    def on_fit_end(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> None:
        if self._should_skip(trainer) or not self.history:
            return
        self._draw_curves(trainer)

    # --- driver ---------------------------------------------------------------------------------------------------
    def _run_check(
        self, trainer: "L.Trainer", pl_module: "L.LightningModule", kind: str, values: dict[str, float], decide: bool
    ) -> bool:
        """Evaluate, agree across ranks, record, log and (unless monitor-only) stop. Returns whether it stopped.

        `values` must already be identical on every rank (reduced); `decide=False` records without a decision.
        """
        previous = [r for r in self.history if r["kind"] == kind]
        record: dict[str, Any] = {"epoch": trainer.current_epoch, "step": trainer.global_step, "kind": kind}
        record["lr"] = current_lr(trainer)
        record.update(values)
        # this epoch's validation ran before on_train_epoch_end: keep its robust accuracy beside the check
        acc_pgd = trainer.callback_metrics.get("val/acc_pgd")
        record["val_acc_pgd"] = float(acc_pgd) if acc_pgd is not None and kind != "batch" else math.nan
        decision = self._evaluate(record, previous)
        record["median"], record["limit"] = decision.median, decision.limit
        should_stop, reason = decision.should_stop, decision.reason
        if not decide:  # recorded series that does not drive the decision
            should_stop, reason = False, None
        # every rank computed the same values; agree anyway, so one rank's non-finite value stops them all
        should_stop = trainer.strategy.reduce_boolean_decision(bool(should_stop), all=False)
        record["should_stop"] = should_stop
        record["reason"] = reason or ""
        self.history.append(record)
        self._log_record(pl_module, record)
        stopping = should_stop and not self.monitor_only
        if stopping:
            self._stop(trainer, pl_module, record)
        elif reason and (self.verbose or should_stop):
            prefix = "monitor only, would stop: " if should_stop else ""
            rank_zero_info(f"{type(self).__name__} epoch {record['epoch']}: {prefix}{reason}")
        self._write_history(trainer)
        return stopping

    def _evaluate(self, record: dict[str, Any], previous: list[dict]) -> Decision:
        """Fill record["value"] and decide with the rule; `previous`: the earlier records of its kind."""
        raise NotImplementedError

    def _plot_series(self) -> list[str]:
        return ["value", "median", "limit"]

    # --- monitoring (TensorBoard custom scalars and hparams) --------------------------------------------------------
    def tensorboard_charts(self) -> dict[str, dict[str, list]]:
        """The custom-scalar chart (SummaryWriter.add_custom_scalars layout) of the decision: the monitored value as a
        line in a band from its median to the stop limit (a Margin chart), so the run stops where the line leaves the
        band on the limit's side (above it for a rule on a rise, below for one on a fall)."""
        value, median, limit = (f"{self.name}/{key}" for key in ("value", "median", "limit"))
        falls = getattr(getattr(self, "rule", None), "direction", "rise") == "fall"
        band = [limit, median] if falls else [median, limit]
        side = "below" if falls else "above"
        title = f"{self.name}: value, in the band from median to limit; stops {side} the band"
        return {self.name: {title: ["Margin", [value, *band]]}}

    def hparams(self) -> dict[str, Any]:
        """This callback's settings, for the hparams record (keys prefixed with the callback's name)."""
        return {f"{self.name}/{k}": v for k, v in self._settings().items()}

    def _settings(self) -> dict[str, Any]:
        return {"monitor_only": self.monitor_only, "restore": self.restore}

    def decision(self) -> tuple[float, float, float]:
        """(stop epoch, handed-back epoch, that epoch's val/acc_pgd) of this rule: the stop it took, or for a
        monitor-only rule the stop it would have taken and the check before it; -1 for the weights of the start of
        fit, nan where there is none."""
        decided = next((r for r in self.history if r.get("should_stop")), None)
        stopped = math.nan if decided is None else float(decided["epoch"])
        restored = math.nan
        if self.restored_epoch is not None:
            restored = float(self.restored_epoch)
        elif decided is not None:  # monitor-only (or restore off): the check before the stop
            before = [
                r["epoch"] for r in self.history if r["epoch"] < decided["epoch"] and r["kind"] == decided["kind"]
            ]
            restored = float(before[-1]) if before else -1.0
        acc = math.nan
        if math.isfinite(restored):
            hits = [r.get("val_acc_pgd", math.nan) for r in self.history if r["epoch"] == restored]
            acc = float(hits[-1]) if hits and hits[-1] is not None else math.nan
        return stopped, restored, acc

    def outcome(self) -> dict[str, float]:
        """How the run ended for this rule, as the hparams record's metrics: `<name>/stopped_epoch`,
        `<name>/restored_epoch` and `<name>/restored_val_acc_pgd` for a stop that acts; `<name>/would_stop_epoch`,
        `<name>/would_hand_back_epoch` and `<name>/would_hand_back_val_acc_pgd` for a monitor-only one, which
        restores nothing (see `decision`)."""
        stopped, restored, acc = self.decision()
        if self.monitor_only:
            keys = ("would_stop_epoch", "would_hand_back_epoch", "would_hand_back_val_acc_pgd")
        else:
            keys = ("stopped_epoch", "restored_epoch", "restored_val_acc_pgd")
        return {f"{self.name}/{key}": value for key, value in zip(keys, (stopped, restored, acc), strict=True)}

    def handed_back_val_acc_pgd(self) -> float | None:
        """The val/acc_pgd of the model this stop handed back (the run's `hp_metric`), or None when it did not act."""
        if self.monitor_only or self.stopped_epoch is None or self.restored_epoch is None:
            return None
        return self.decision()[2]

    def _keep_weights(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> None:
        """Called by subclasses at an epoch end whose checks all said "go on": these weights become the fallback."""
        self._take_snapshot(pl_module, trainer.current_epoch)

    def _take_snapshot(self, pl_module: "L.LightningModule", epoch: int) -> None:
        if self.monitor_only or not self.restore:
            return
        self._snapshot = {k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()}
        self._snapshot_epoch = epoch

    def _stop(self, trainer: "L.Trainer", pl_module: "L.LightningModule", record: dict[str, Any]) -> None:
        trainer.should_stop = True
        self._restore_pending = True
        self.stopped_epoch = record["epoch"]
        self.stopping_reason_message = record["reason"]
        if self.restore and self._snapshot is not None:
            self.restored_epoch = self._snapshot_epoch
        rank_zero_info(
            f"{type(self).__name__} stops training at epoch {record['epoch']} "
            f"(step {record['step']}): {record['reason']}"
        )
        if self.save_checkpoint:
            self._save_handed_back(trainer, pl_module)

    def _save_handed_back(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> None:
        """Write `<name>_stop.ckpt` (the weights handed back) now, before any checkpoint records the stop.

        This runs inside the epoch-end hook that decided the stop, and Lightning runs ModelCheckpoint's epoch-end
        hooks after every other callback's, so `last.ckpt` records the stop only once the handed-back model is on
        disk: a kill or a full disk while this file is written leaves the previous epoch's `last.ckpt`, from which
        the run resumes and decides again. The module keeps the trained weights until `on_train_end` (the other
        monitors of this epoch measure the model that was trained); they are swapped in only for the save.
        """
        path = self._log_dir(trainer) / self.stop_checkpoint_name
        trained = None
        if self.restore and self._snapshot is not None:
            trained = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
            pl_module.load_state_dict(self._snapshot)
        try:
            # collective: every rank calls it, rank 0 writes (atomically); the optimizer state too, as last.ckpt
            trainer.save_checkpoint(path, weights_only=False)
        finally:
            if trained is not None:
                pl_module.load_state_dict(trained)
        self.stop_checkpoint_path = str(path)

    @property
    def stop_checkpoint_name(self) -> str:
        """The file, in the run's version folder, of the model a stop hands back."""
        return f"{self.name}_stop.ckpt"

    def on_train_end(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> None:
        # The weights are handed back here, after the last epoch's hooks, so that every other monitor of that epoch
        # measured the model that was actually trained.
        if self._should_skip(trainer) or not self._restore_pending:
            return
        self._restore_pending = False
        restored = "kept the current weights"
        if self.restore and self._snapshot is not None:
            pl_module.load_state_dict(self._snapshot)  # restored_epoch was set when the stop was decided
            when = "the start of fit" if self._snapshot_epoch < 0 else f"the end of epoch {self._snapshot_epoch}"
            restored = f"restored the weights from {when}"
        if self.stop_checkpoint_path is not None:
            restored += f", saved to {self.stop_checkpoint_path}"
        rank_zero_info(f"{type(self).__name__} stopped at epoch {self.stopped_epoch}: {restored}")

    # --- output ---------------------------------------------------------------------------------------------------
    def _log_dir(self, trainer: "L.Trainer") -> Path:
        return self._dir if self._dir is not None else Path(trainer.default_root_dir)

    def _log_record(self, pl_module: "L.LightningModule", record: dict[str, Any]) -> None:
        metrics = {
            f"{self.name}/{k}" if record["kind"] != "batch" else f"{self.name}/batch/{k}": float(v)
            for k, v in record.items()
            if k not in ("epoch", "step", "kind", "lr", "reason") and isinstance(v, (int, float)) and v is not None
        }
        on_step = record["kind"] == "batch"
        # the value and its limit also on the progress bar (epoch-level checks): the numbers the stop decides on
        keys = [] if on_step else [f"{self.name}/{k}" for k in PROGRESS_BAR_KEYS]
        shown = {key: metrics.pop(key) for key in keys if key in metrics}
        # values are identical on every rank (reduced before): averaging them changes nothing, and keeps Lightning quiet
        pl_module.log_dict(metrics, on_step=on_step, on_epoch=not on_step, sync_dist=True)
        if shown:
            pl_module.log_dict(shown, on_step=False, on_epoch=True, sync_dist=True, prog_bar=True)

    @rank_zero_only
    def _write_history(self, trainer: "L.Trainer") -> None:
        write_history_csv(self.history, self._log_dir(trainer) / f"{self.name}_history.csv")

    @rank_zero_only
    def _draw_curves(self, trainer: "L.Trainer") -> None:
        kinds = [r["kind"] for r in self.history]
        kind = max(set(kinds), key=lambda k: (k != "batch", kinds.count(k)))  # epoch-level records first
        records = [r for r in self.history if r["kind"] == kind]
        x = "step" if kind == "batch" else "epoch"
        if x == "epoch":
            fig = plot_stop_figure(
                records,
                self._plot_series(),
                f"{type(self).__name__} ({kind})",
                self.stopped_epoch,
                self.restored_epoch,
                value_label=self.name,
            )
        else:
            fig = plot_history(records, self._plot_series(), f"{type(self).__name__} ({kind})", x=x)
        atomic_savefig(fig, self._log_dir(trainer) / f"{self.name}_curves.png", dpi=120)
        for logger in tensorboard_loggers(trainer):
            logger.experiment.add_figure(f"{self.name}/curves", fig, global_step=trainer.global_step)
