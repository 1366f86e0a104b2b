"""RollbackEarlyStopping: the one early stop of robustrain, for any signal: decide, agree, record, hand back.

A stop is a series and a rule. The series is measured by the subclass (`measure_epoch`, and for signals that can be
measured on a training batch, `measure_batch`): AliasingMonitor, GradientAlignmentMonitor, PGDEarlyStopping,
AbnormalExamplesMonitor, MaskingGapMonitor, or MetricEarlyStopping for any metric the run already logs. Everything
else lives here, written once:

- the schedule: a check at the end of every `every_n_epochs`-th epoch and, for batch signals, after every
  `every_n_train_steps`-th optimizer step, deciding on one of the two series (`decide_on`);
- the rule (robustrain.stopping.Rule, its arguments here; None takes the signal's default rule) and its decision
  through robustrain.stopping's one entry point, `decide`;
- the decision agreed across ranks (`trainer.strategy.reduce_boolean_decision`): every rank stops alike;
- the hand-back: which model a stop returns (`hand_back`). "last_check" is the weights of the last check that said
  "go on"; "best_probe" is, of the last `hand_back_window` such checks, the one whose weights scored best on a fixed
  probe (PGD-5 at step eps / 4 on 128 training images, robustrain.callbacks.probe_pgd), measured when the snapshot
  is taken; "best_val" the one with the best `val/acc_pgd`. The snapshots are CPU copies of the state dict
  (`hand_back_window` of them: about 45 MB each for PreActResNet18, 0.4 MB for SmallCNN); with a window above 1 they
  are also written to `<log_dir>/<name>_handback/`, so that a resumed run chooses among the same models;
- the record: every value logged under `<name>/<key>`, kept in `history` and rewritten to `<name>_history.csv`,
  replayable offline with other rules (`python -m robustrain.stopping.replay`);
- on a stop: `trainer.should_stop`, why, at which epoch, and the handed-back model saved to `<name>_stop.ckpt` at
  once, before any checkpoint records the stop; the weights go back into the module at `on_train_end`;
- at the end of fit: the curves with the warm-up shaded and the stop and hand-back marked (`<name>_curves.png`, and
  TensorBoard's `add_figure`);
- resumable state (`state_dict`): the history, the stop, the hand-back window and the settings it was recorded
  under. The settings are derived from the constructor's arguments (`settings()`), so every argument that changes
  what the stop decides or hands back is compared when a run resumes (robustrain.runs.resume).

The `state_key` is the callback's identity only (its class, and its `name` when that is not the class's), never its
settings: a resumed run with changed settings finds its state, and the CLI compares the settings before training.

With `monitor_only=True` it records and logs every decision, and what it would hand back, but never stops and keeps
no weights, so several stops can run side by side with only one allowed to stop the run.
"""

import ast
import copy
import dataclasses
import inspect
import math
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn

from robustrain.callbacks.probe_pgd import ProbePGD
from robustrain.callbacks.stop_figure import plot_history, plot_stop_figure
from robustrain.core.errors import BadInputError
from robustrain.core.validation import check_choice, check_file_name, check_int, check_positive_int
from robustrain.runs.atomic import atomic_savefig, atomic_write
from robustrain.runs.monitoring import tensorboard_loggers
from robustrain.runs.resume import plain
from robustrain.stopping import Decision, Rule, decide, upgrade_record, write_history_csv
from robustrain.stopping.history import check_history_path

PROGRESS_BAR_KEYS = ("value", "limit")  # shown on the progress bar as <name>/value and <name>/limit
HAND_BACK = ("last_check", "best_probe", "best_val")
RULE_ARGS = (
    "threshold",
    "window",
    "warmup_epochs",
    "wait_for_lr_peak",
    "reference",
    "direction",
    "scale",
    "patience",
    "statistic",
)
# arguments that change neither what a stop decides nor what it hands back: not compared on resume
NOT_COMPARED = ("name", "verbose", "save_checkpoint")
SCORE = "hand_back_score"  # the record key of a check's hand-back score (probe accuracy or val/acc_pgd)


def current_lr(trainer: "L.Trainer") -> float:
    """Learning rate of the first parameter group of the first optimizer (nan without one)."""
    if not trainer.optimizers:
        return math.nan
    return float(trainer.optimizers[0].param_groups[0]["lr"])


def validated_this_epoch(trainer: "L.Trainer") -> bool:
    """Whether a validation ran at the end of this epoch (`check_val_every_n_epoch`), so `val/...` metrics are new."""
    return (trainer.current_epoch + 1) % (getattr(trainer, "check_val_every_n_epoch", 1) or 1) == 0


def choose_hand_back(candidates: list[tuple[int, float]], policy: str) -> int | None:
    """The epoch a stop hands back, of (epoch, score) candidates oldest first (the retained window).

    "last_check": the newest. "best_probe" / "best_val": the best score, the newest of equal ones; a candidate
    without a finite score (the weights of the start of fit, an epoch without validation) only when none has one.
    None when there is no candidate.
    """
    check_choice("hand_back", policy, HAND_BACK)
    if not candidates:
        return None
    scored = [(score, i) for i, (_, score) in enumerate(candidates) if math.isfinite(score)]
    if policy == "last_check" or not scored:
        return candidates[-1][0]
    return candidates[max(scored)[1]][0]


class RollbackEarlyStopping(L.Callback):
    """The early stop: measure (subclass), decide with the rule, agree across ranks, record, hand back a model.

    Subclasses set the class attributes below and measure: `measure_epoch(trainer, pl_module)` returns the values of
    one epoch-end check over all ranks (a dict holding the decision's series `series`, or None when there is nothing
    new to decide on), and batch signals `measure_batch(trainer, pl_module, batch)`. Their constructors take their
    own arguments and pass `**kwargs` on to this one, which holds every argument a stop shares; `settings()` reads
    them all back.

    Class attributes:
        name: Default metric prefix and file stem.
        default_rule: The rule's defaults for this signal (a None rule argument takes the default's value).
        series: The recorded value that decides.
        epoch_kind: The history's `kind` of the epoch-end checks.
        batch_signal: Whether the signal can be measured after training steps (`every_n_train_steps`).
        batch_images: Whether that measurement uses the batch's images (so `batch_probe_size` applies).

    Args:
        threshold, window, warmup_epochs, wait_for_lr_peak, reference, direction, scale, patience, statistic: The
            rule (robustrain.stopping.Rule); None takes the signal's default (`default_rule`, in each class's docs).
            With patience p > 1 a check past the limit is pending until p in a row stop the run; a pending check's
            weights never join the hand-back window, so every policy hands back a model from before the fall.
            statistic="best" sets the limit from the best of the window instead of its median (the history's and
            the logged `median` then hold that best).
        every_n_epochs: Check at the end of every n-th epoch; 0 = never (then decide_on="batch").
        every_n_train_steps: Batch signals: also check after every n-th optimizer step; 0 = never.
        batch_probe_size: Images of the training batch that a step check measures (its first ones); None = all.
        decide_on: The series that decides: "batch" (the step checks) or the epoch-end one ("epoch", or the name of
            its kind, e.g. "probe"); None = the epoch-end one.
        hand_back: Which model a stop returns: "last_check" (the weights of the last check that said "go on"),
            "best_probe" (of the last `hand_back_window` such checks, the best PGD-5 accuracy on 128 fixed training
            images) or "best_val" (of those, the best `val/acc_pgd`).
        hand_back_window: How many of the latest "go on" checks a best_* hand-back chooses from (CPU copies).
        name: Prefix of the logged values and stem of the files; None = the class's. Give a second stop of the
            same class another name to record both side by side.
        monitor_only: Record and log every decision and what it would hand back, never stop, keep no weights.
        restore: On a stop, load the handed-back weights into the LightningModule (else keep the trained ones).
        save_checkpoint: On a stop, save the handed-back model to `<log_dir>/<name>_stop.ckpt` (trainer.save_checkpoint,
            epoch and step of the stop, optimizer state included) before `last.ckpt` records the stop.
        verbose: Log a line for every check (the stop is always logged).

    Attributes:
        history: One dict per check, oldest first (see robustrain.stopping.history).
        candidates: (epoch, hand-back score) of every epoch end whose checks said "go on", oldest first; epoch -1:
            the weights training started from.
        stopped_epoch: Epoch at which the stop was decided, or None.
        restored_epoch: Epoch whose end-of-epoch weights were handed back (-1: the start of fit), or None.
        stopping_reason_message: Why it stopped, or None.
        stop_checkpoint_path: Where the handed-back model was saved, or None.
    """

    name = "rollback"
    default_rule = Rule()
    series = "value"
    epoch_kind = "epoch"
    batch_signal = False
    batch_images = False

    def __init__(
        self,
        threshold: float | None = None,
        window: int | None = None,
        warmup_epochs: int | None = None,
        wait_for_lr_peak: bool | None = None,
        reference: Literal["window", "restart"] | None = None,
        direction: Literal["rise", "fall"] | None = None,
        scale: Literal["relative", "absolute"] | None = None,
        patience: int | None = None,
        statistic: Literal["median", "best"] | None = None,
        every_n_epochs: int = 1,
        every_n_train_steps: int = 0,
        batch_probe_size: int | None = None,
        decide_on: str | None = None,
        hand_back: Literal["last_check", "best_probe", "best_val"] = "last_check",
        hand_back_window: int = 5,
        name: str | None = None,
        monitor_only: bool = False,
        restore: bool = True,
        save_checkpoint: bool = True,
        verbose: bool = False,
    ) -> None:
        super().__init__()
        rule_args = (
            threshold,
            window,
            warmup_epochs,
            wait_for_lr_peak,
            reference,
            direction,
            scale,
            patience,
            statistic,
        )
        given = dict(zip(RULE_ARGS, rule_args, strict=True))
        # the signal's default rule with the given arguments; raises naming a bad one
        self.rule = dataclasses.replace(self.default_rule, **{k: v for k, v in given.items() if v is not None})
        self.name = type(self).name if name is None else name
        check_file_name("name", self.name)
        check_int("every_n_epochs", every_n_epochs, 0)
        check_int("every_n_train_steps", every_n_train_steps, 0)
        where = f"{type(self).__name__} measures only at epoch ends"
        if not self.batch_signal:
            check_int("every_n_train_steps", every_n_train_steps, 0, 0, note=f"({where})")
        if batch_probe_size is not None:  # None: the whole batch
            check_positive_int("batch_probe_size", batch_probe_size)
            if not self.batch_images:
                raise ValueError(
                    f"batch_probe_size={batch_probe_size}, but {type(self).__name__}'s step checks measure no images: "
                    "leave it None"
                )
        kinds = (self.epoch_kind, "epoch", "batch") if self.batch_signal else (self.epoch_kind, "epoch")
        check_choice("decide_on", self.epoch_kind if decide_on is None else decide_on, kinds)
        self.decide_on = "batch" if decide_on == "batch" else self.epoch_kind
        if self.decide_on == "batch":
            check_int("every_n_train_steps", every_n_train_steps, 1, note="with decide_on='batch' (the step checks)")
        else:
            check_int("every_n_epochs", every_n_epochs, 1, note=f"with decide_on={self.decide_on!r} (epoch ends)")
        check_choice("hand_back", hand_back, HAND_BACK)
        check_positive_int("hand_back_window", hand_back_window)
        self.every_n_epochs = every_n_epochs
        self.every_n_train_steps = every_n_train_steps
        self.batch_probe_size = batch_probe_size
        self.hand_back = hand_back
        self.hand_back_window = hand_back_window
        self.monitor_only = monitor_only
        self.restore = restore
        self.save_checkpoint = save_checkpoint
        self.verbose = verbose
        self.history: list[dict] = []
        self.candidates: list[tuple[int, float]] = []
        self.stopped_epoch: int | None = None
        self.restored_epoch: int | None = None
        self.stopping_reason_message: str | None = None
        self.stop_checkpoint_path: str | None = None
        self._weights: dict[int, dict[str, torch.Tensor]] = {}  # epoch -> CPU state dict, for the retained window
        self._previous_window: set[int] = set()  # epochs whose files the last written checkpoint may still need
        self._probe = ProbePGD() if hand_back == "best_probe" else None
        self._start_lr = math.nan
        self._restore_pending = False
        self._dir: Path | None = None

    # --- what it is: settings, identity, resumable state ------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """Every argument that changes what this stop decides or hands back, from its constructors' signatures (the
        rule's resolved values first: the HPARAMS columns a user sorts runs by), so none can be left out by hand."""
        out = {key: getattr(self.rule, key) for key in RULE_ARGS}
        for cls in reversed(type(self).__mro__):
            if not (isinstance(cls, type) and issubclass(cls, RollbackEarlyStopping)):
                continue
            for param in inspect.signature(cls.__init__).parameters.values():
                skip = param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL) or param.name == "self"
                if not skip and param.name not in out and param.name not in NOT_COMPARED:
                    out[param.name] = self._setting(param.name)
        return out

    def _setting(self, name: str) -> Any:
        """The value of the argument `name` as a resume compares it (a subclass may keep an older spelling)."""
        return getattr(self, name)

    @property
    def state_key(self) -> str:
        """The class, plus the name when it is not the class's default (see the module docstring)."""
        if self.name == type(self).name:
            return type(self).__qualname__
        return self._generate_state_key(name=self.name)

    def state_dict(self) -> dict[str, Any]:
        return {
            "history": copy.deepcopy(self.history),
            "candidates": [list(c) for c in self.candidates],
            "stopped_epoch": self.stopped_epoch,
            "restored_epoch": self.restored_epoch,
            "stopping_reason_message": self.stopping_reason_message,
            # the handed-back model's file (in the version folder), so a resume or a test can tell it is missing
            "stop_checkpoint": self.stop_checkpoint_name if self.stop_checkpoint_path is not None else None,
            "settings": plain(self.settings()),  # plain data: checkpoints are read weights-only
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [upgrade_record(r) for r in copy.deepcopy(state_dict.get("history", []))]
        if "candidates" in state_dict:
            self.candidates = [(int(e), float(s)) for e, s in state_dict["candidates"]]
        else:  # written before hand-back windows: the start of training and every epoch-end check were candidates
            epochs = sorted({int(r["epoch"]) for r in self.history if r["kind"] == self.epoch_kind})
            self.candidates = [(e, math.nan) for e in [-1, *epochs]] if epochs else []
        self.stopped_epoch = state_dict.get("stopped_epoch")
        self.restored_epoch = state_dict.get("restored_epoch")
        self.stopping_reason_message = state_dict.get("stopping_reason_message")
        recorded, now = state_dict.get("settings"), plain(self.settings())
        if recorded is not None:
            keys = [k for k in recorded if k in now and recorded[k] != now[k]]  # a key one side lacks: older version
            if keys:
                changed = ", ".join(f"{k} {recorded[k]!r} -> {now[k]!r}" for k in keys)
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

    # --- measuring (subclasses) -----------------------------------------------------------------------------------
    def measure_epoch(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> dict[str, float] | None:
        """The values of an epoch-end check over all ranks, holding `series`; None when there is nothing new."""
        raise NotImplementedError

    def measure_batch(self, trainer: "L.Trainer", pl_module: "L.LightningModule", batch: Any) -> dict[str, float]:
        """Batch signals: the values of a step check on the batch (its first `batch_probe_size` images)."""
        raise NotImplementedError

    def plot_series(self) -> list[str]:
        """The record keys the end-of-fit figure draws."""
        return ["value", "median", "limit"]

    def _probe_score(self, record: dict[str, Any]) -> float | None:
        """The "best_probe" score when this stop's own check is that very measurement (PGDEarlyStopping on the same
        probe), so that it is not measured twice; None otherwise."""
        return None

    # --- hooks ----------------------------------------------------------------------------------------------------
    def _should_skip(self, trainer: "L.Trainer") -> bool:
        return trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking or bool(trainer.fast_dev_run)

    def setup(self, trainer: "L.Trainer", pl_module: "L.LightningModule", stage: str) -> None:
        if stage == "fit" and self._probe is not None and self._probe.images is None:
            self._probe.setup(trainer, pl_module, type(self).__name__)
        if stage == "fit" and self.hand_back == "best_val":
            reason = pl_module.unlogged_reason("val/acc_pgd") if hasattr(pl_module, "unlogged_reason") else None
            if reason:
                raise ValueError(f"{type(self).__name__}(hand_back='best_val') chooses by val/acc_pgd, but {reason}")

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
        self._start_lr = current_lr(trainer)  # the lr before the first check, for lr_rising
        if self._should_skip(trainer):
            return
        # A stop at the first check hands back the weights training started from (fresh or resumed); a resumed
        # best_* hand-back also gets back the window's earlier snapshots from its files.
        start = trainer.current_epoch - 1
        if not self.candidates:
            self.candidates.append((start, math.nan))
        if self.monitor_only or not self.restore:
            return
        if self._keeps_files():
            self._load_window_files(trainer, start)
        if self.candidates[-1][0] != start and self.candidates[-1][0] not in self._weights:
            # resumed after an epoch without a check, whose weights no file kept: the resumed ones stand in
            self.candidates.append((start, math.nan))
        if self.candidates[-1][0] == start and start not in self._weights:
            self._take_snapshot(pl_module, start)

    def on_train_batch_end(
        self, trainer: "L.Trainer", pl_module: "L.LightningModule", outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        n = self.every_n_train_steps
        if not n or self._should_skip(trainer) or trainer.global_step % n != 0:
            return
        if self.batch_images:
            batch = (batch[0][: self.batch_probe_size], batch[1][: self.batch_probe_size], *batch[2:])
        values = self.measure_batch(trainer, pl_module, batch)
        self._run_check(trainer, pl_module, "batch", values, decide=self.decide_on == "batch")
        self._write_history(trainer)

    def on_train_epoch_end(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> None:
        if self._should_skip(trainer) or self.stopped_epoch == trainer.current_epoch:
            return  # a step-level stop this epoch was decided already
        n = self.every_n_epochs
        values = self.measure_epoch(trainer, pl_module) if n and (trainer.current_epoch + 1) % n == 0 else None
        if values is not None:
            decides = self.decide_on == self.epoch_kind
            stopped = self._run_check(trainer, pl_module, self.epoch_kind, values, decide=decides)
            if not stopped and not self._pending():
                self._keep(trainer, pl_module, self.history[-1])
            self._write_history(trainer)  # once, with the check's hand-back score (or after its stop's model)
        elif self.decide_on == "batch" and not self._pending():
            self._keep(trainer, pl_module, None)

    def on_fit_end(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> None:
        if self._should_skip(trainer) or not self.history:
            return
        self._draw_curves(trainer)

    def on_train_end(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> None:
        # The weights are handed back here, after the last epoch's hooks, so that every other monitor of that epoch
        # measured the model that was actually trained.
        if self._should_skip(trainer) or not self._restore_pending:
            return
        self._restore_pending = False
        restored = "kept the current weights"
        if self.restore and self.restored_epoch is not None:
            pl_module.load_state_dict(self._weights[self.restored_epoch])
            when = "the start of fit" if self.restored_epoch < 0 else f"the end of epoch {self.restored_epoch}"
            restored = f"handed back the weights from {when} ({self.hand_back})"
        if self.stop_checkpoint_path is not None:
            restored += f", saved to {self.stop_checkpoint_path}"
        rank_zero_info(f"{type(self).__name__} stopped at epoch {self.stopped_epoch}: {restored}")

    # --- deciding -------------------------------------------------------------------------------------------------
    def _run_check(
        self, trainer: "L.Trainer", pl_module: "L.LightningModule", kind: str, values: dict[str, float], decide: bool
    ) -> bool:
        """Evaluate, agree across ranks, record, log and (unless monitor-only) stop. Returns whether it stopped.

        `values` must already be identical on every rank (reduced); `decide=False` records without a decision. The
        caller writes the history file once the check is complete (`_write_history`).
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
        # past the limit but not (yet) for `patience` checks: these weights are not handed back
        record["pending"] = bool(decide and decision.past and not should_stop)
        if kind != "batch":  # the epoch a stop at this check hands back (or would): charted beside the decision
            chosen = choose_hand_back(self._window(before=record["epoch"]), self.hand_back)
            record["hand_back_epoch"] = -1 if chosen is None else chosen
        self.history.append(record)
        self._log_record(pl_module, record)
        stopping = should_stop and not self.monitor_only
        if stopping:
            self._stop(trainer, pl_module, record)
        elif reason and (self.verbose or should_stop):
            prefix = "monitor only, would stop: " if should_stop else ""
            rank_zero_info(f"{type(self).__name__} epoch {record['epoch']}: {prefix}{reason}")
        return stopping

    def _evaluate(self, record: dict[str, Any], previous: list[dict]) -> Decision:
        """Fill the record's `value` (its `series`), `lr_rising` and `warmup`, and decide with the rule."""
        lr_before = previous[-1]["lr"] if previous else self._start_lr
        record["lr_rising"] = bool(record["lr"] > lr_before)
        record["warmup"] = self.rule.in_warmup(record["epoch"], record["lr_rising"])
        record["value"] = record[self.series]
        values, warmups = [r["value"] for r in previous], [r.get("warmup", False) for r in previous]
        return decide(values, warmups, record["value"], record["warmup"], self.rule, name=f"{self.name}/{self.series}")

    # --- hand-back ------------------------------------------------------------------------------------------------
    def _keep(self, trainer: "L.Trainer", pl_module: "L.LightningModule", record: dict[str, Any] | None) -> None:
        """An epoch end whose checks all said "go on": its weights join the hand-back window, with their score."""
        epoch = trainer.current_epoch
        score = math.nan
        if self.hand_back == "best_val":
            score = self._val_acc_pgd(trainer)
        elif self.hand_back == "best_probe":
            own = self._probe_score(record) if record is not None else None
            score = own if own is not None else self._probe.score(trainer, pl_module)
        if record is not None and self.hand_back != "last_check":
            record[SCORE] = score
        self.candidates.append((epoch, score))
        self._take_snapshot(pl_module, epoch)

    def _pending(self) -> bool:
        """Whether the latest deciding check lies past the limit without having stopped yet (patience)."""
        kind = "batch" if self.decide_on == "batch" else self.epoch_kind
        latest = next((r for r in reversed(self.history) if r["kind"] == kind), None)
        return bool(latest is not None and latest.get("pending"))

    def _val_acc_pgd(self, trainer: "L.Trainer") -> float:
        acc = trainer.callback_metrics.get("val/acc_pgd")
        return float(acc) if validated_this_epoch(trainer) and acc is not None else math.nan

    def _window(self, before: int | None = None) -> list[tuple[int, float]]:
        """The retained candidates (the newest `hand_back_window`, one for "last_check"), those before `before`."""
        kept = [c for c in self.candidates if before is None or c[0] < before]
        return kept[-(1 if self.hand_back == "last_check" else self.hand_back_window) :]

    def _take_snapshot(self, pl_module: "L.LightningModule", epoch: int) -> None:
        if self.monitor_only or not self.restore:
            return
        self._weights[epoch] = {k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()}
        window = {e for e, _ in self._window()}
        for old in [e for e in self._weights if e not in window]:
            del self._weights[old]
        if self._keeps_files():
            # the previous window's files stay one epoch longer: the last checkpoint written still names them
            self._sync_window_files(epoch, window | self._previous_window)
            self._previous_window = window

    def _keeps_files(self) -> bool:
        return self.hand_back != "last_check" and self.hand_back_window > 1 and self.restore and not self.monitor_only

    def _window_file(self, epoch: int) -> Path:
        return self._log_dir() / f"{self.name}_handback" / f"epoch={epoch}.pt"

    @rank_zero_only
    def _sync_window_files(self, epoch: int, keep: set[int]) -> None:
        """Write the new snapshot (weights only) and remove the files of epochs not in `keep`."""
        path = self._window_file(epoch)
        path.parent.mkdir(parents=True, exist_ok=True)
        weights = self._weights[epoch]
        atomic_write(path, lambda f: torch.save(weights, f))
        for old in path.parent.glob("epoch=*.pt"):
            if int(old.stem.split("=", 1)[1]) not in keep:
                old.unlink(missing_ok=True)

    def _load_window_files(self, trainer: "L.Trainer", start: int) -> None:
        """On resume: the window's snapshots from their files, the resumed epoch's included (so a resume from a
        checkpoint written inside an epoch still hands back that epoch's end). What every rank can read is loaded;
        a candidate whose file some rank lacks leaves the window on every rank, so that all hand back alike."""
        for epoch, _ in self._window():
            path = self._window_file(epoch)
            if not trainer.strategy.reduce_boolean_decision(path.is_file(), all=True):
                if epoch != start:  # the resumed epoch's weights are the module's own
                    rank_zero_warn(
                        f"{type(self).__name__} ({self.name}): no {path}; epoch {epoch} cannot be handed back"
                    )
                    self.candidates = [c for c in self.candidates if c[0] != epoch]
                continue
            self._weights[epoch] = torch.load(path, map_location="cpu", weights_only=True)
        self._previous_window = {e for e, _ in self._window()}

    def _stop(self, trainer: "L.Trainer", pl_module: "L.LightningModule", record: dict[str, Any]) -> None:
        trainer.should_stop = True
        self._restore_pending = True
        self.stopped_epoch = record["epoch"]
        self.stopping_reason_message = record["reason"]
        if self.restore:
            window = [c for c in self._window() if c[0] in self._weights]
            self.restored_epoch = choose_hand_back(window, self.hand_back)
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
        if self.restore and self.restored_epoch is not None:
            trained = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
            pl_module.load_state_dict(self._weights[self.restored_epoch])
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

    # --- what the user reads: outcome, hparams, charts --------------------------------------------------------------
    def decision(self) -> tuple[float, float, float]:
        """(stop epoch, handed-back epoch, that epoch's val/acc_pgd) of this stop: the stop it took, or for a
        monitor-only one the stop it would have taken and what its hand-back policy would have returned; -1 for the
        weights of the start of fit, nan where there is none."""
        decided = next((r for r in self.history if r.get("should_stop")), None)
        stopped = math.nan if decided is None else float(decided["epoch"])
        restored = math.nan
        if self.restored_epoch is not None:
            restored = float(self.restored_epoch)
        elif decided is not None:  # monitor-only (or restore off): what the policy would have chosen
            chosen = choose_hand_back(self._window(before=decided["epoch"]), self.hand_back)
            restored = -1.0 if chosen is None else float(chosen)
        acc = math.nan
        if math.isfinite(restored):
            hits = [r.get("val_acc_pgd", math.nan) for r in self.history if r["epoch"] == restored]
            acc = float(hits[-1]) if hits and hits[-1] is not None else math.nan
        return stopped, restored, acc

    def outcome(self) -> dict[str, float]:
        """How the run ended for this stop, as the hparams record's metrics: `<name>/stopped_epoch`,
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

    def hparams(self) -> dict[str, Any]:
        """This stop's settings, for the hparams record (keys prefixed with the stop's name)."""
        return {f"{self.name}/{k}": v for k, v in self.settings().items()}

    @property
    def reference_name(self) -> str:
        """What the history's `median` holds: "median", or with statistic="best", e.g. "best of the last 5"."""
        return "median" if self.rule.statistic == "median" else f"best of the last {self.rule.window}"

    def tensorboard_charts(self) -> dict[str, dict[str, list]]:
        """The custom-scalar charts (SummaryWriter.add_custom_scalars layout) of the decision: the monitored value
        as a line in a band from its median to the stop limit (a Margin chart), so the run stops where the line
        leaves the band on the limit's side (above it for a rule on a rise, below for one on a fall); and, one line
        each (TensorBoard colours lines by run), the warm-up (1: no decision), the stop (1: decided, or for a
        monitor-only stop would be) and the epoch a stop at each check hands back (or would). Flags read best with
        TensorBoard's smoothing at 0; the figure under IMAGES draws the same with the warm-up shaded."""
        value, median, limit = (f"{self.name}/{key}" for key in ("value", "median", "limit"))
        reference = self.reference_name
        falls = self.rule.direction == "fall"
        band = [limit, median] if falls else [median, limit]
        side = "below" if falls else "above"
        would = " (monitor only: would)" if self.monitor_only else ""
        return {
            self.name: {
                f"{self.name}: value, in the band from {reference} to limit; stops {side} the band": [
                    "Margin",
                    [value, *band],
                ],
                f"{self.name}: warm-up (1: no decision)": ["Multiline", [f"{self.name}/warmup"]],
                f"{self.name}: stop decided (1){would}": ["Multiline", [f"{self.name}/should_stop"]],
                f"{self.name}: the epoch a stop here hands back ({self.hand_back}){would}": [
                    "Multiline",
                    [f"{self.name}/hand_back_epoch"],
                ],
            }
        }

    # --- output ---------------------------------------------------------------------------------------------------
    def _log_dir(self, trainer: "L.Trainer | None" = None) -> Path:
        if self._dir is not None:
            return self._dir
        return Path(trainer.default_root_dir) if trainer is not None else Path(".")

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
        title = f"{type(self).__name__} ({kind})"
        if kind != "batch":
            stopped, handed_back, _ = self.decision()
            fig = plot_stop_figure(
                records,
                self.plot_series(),
                title,
                None if math.isnan(stopped) else int(stopped),
                None if math.isnan(handed_back) else int(handed_back),
                value_label=self.name,
                monitor_only=self.monitor_only,
                hand_back=self.hand_back,
                labels={"median": self.reference_name},
            )
        else:
            fig = plot_history(records, self.plot_series(), title, x="step", labels={"median": self.reference_name})
        atomic_savefig(fig, self._log_dir(trainer) / f"{self.name}_curves.png", dpi=120)
        for logger in tensorboard_loggers(trainer):
            logger.experiment.add_figure(f"{self.name}/curves", fig, global_step=trainer.global_step)
