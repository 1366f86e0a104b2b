"""RunSummary: what a `fit` did, told in a few aligned lines on rank zero when it ends.

The CLI installs it in every run (`robustrain.cli`); any Trainer can take it too. At the end of fit it logs, through
Lightning's rank-zero logging:
- the epochs run and why training ended (a stop callback, Lightning's EarlyStopping, max_epochs or max_steps);
- the best `val/acc_pgd`, its epoch and the checkpoint that holds it (a ModelCheckpoint monitoring it);
- every early stop built on RollbackEarlyStopping: stopped at epoch N and handed back epoch M, or never fired with the
  closest it came (the largest rise, or fall, of its value against its median, beside the limit), or for a
  monitor-only one where it would have stopped;
- the history CSVs and figures the stops wrote, the `tensorboard --logdir` command, and the `train.py test` command
  that evaluates the model the run handed back.
"""

import functools
import inspect
import math
import os
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info

from robustrain.callbacks.rollback_early_stopping import RollbackEarlyStopping

BEST_METRIC = "val/acc_pgd"
# the evaluation config that matches a datamodule: (class name, its `name` or None) -> config
EVAL_CONFIGS = {
    ("MNIST5k", None): "configs/eval_robust_mnist5k.yaml",
    ("TorchvisionData", "cifar10"): "configs/eval_robust_cifar10.yaml",
}
# datamodule arguments that change the images a model sees: the evaluation must repeat them
IMAGE_ARGUMENTS = ("padding", "inject_beta", "inject_carrier")


def shown_path(path: str | Path) -> str:
    """The path relative to the working directory when it lies below it (what a user types), else as it is."""
    relative = os.path.relpath(path)
    return relative if not relative.startswith("..") else str(path)


def _inside(folder: Path, path: str | Path) -> str:
    """A path inside `folder` by its name there, any other as shown_path shows it."""
    try:
        return str(Path(path).relative_to(folder))
    except ValueError:
        return shown_path(path)


def closest_approach(records: list[dict], direction: str | None = None, scale: str | None = None) -> dict | None:
    """The record whose value came closest to its limit, with how far it went: {"epoch", "value", "median", "limit",
    "direction", "change", "limit_change", "scale"}; None without a record that has a finite value, median and limit.

    `change` and `limit_change` are the value's and the limit's distance from the median: relative (value / median - 1)
    for a relative rule, absolute (value - median) for an absolute one. Warm-up records (no decision) are skipped.
    `direction` ("rise" / "fall") and `scale` ("relative" / "absolute") default to what the columns imply.
    """
    best, best_fraction = None, -math.inf
    for record in records:
        value, median, limit = (record.get(k) for k in ("value", "median", "limit"))
        if record.get("warmup") or not all(
            isinstance(v, (int, float)) and math.isfinite(v) for v in (value, median, limit)
        ):
            continue
        rising = (direction or ("rise" if limit >= median else "fall")) == "rise"
        relative = (scale or "relative") == "relative" and median != 0
        change = value / median - 1.0 if relative else value - median
        limit_change = limit / median - 1.0 if relative else limit - median
        if limit_change == 0:
            continue
        fraction = change / limit_change  # 1.0: at the limit
        if fraction > best_fraction:
            best_fraction = fraction
            best = {
                "epoch": record["epoch"],
                "value": value,
                "median": median,
                "limit": limit,
                "direction": "rise" if rising else "fall",
                "scale": "relative" if relative else "absolute",
                "change": change,
                "limit_change": limit_change,
            }
    return best


def _signed(x: float, relative: bool) -> str:
    return f"{x:+.1%}" if relative else f"{x:+.3g}"


def stop_decision(callback: RollbackEarlyStopping, show: Callable[[str | Path], str] = shown_path) -> str:
    """One line: what an early stop decided (stopped / would have stopped / never fired and how close it came)."""
    stopped, restored, acc = callback.decision()
    back = ""
    if math.isfinite(restored):
        back = "the start of fit" if restored < 0 else f"epoch {int(restored)}"
        back += f" (val/acc_pgd {acc:.3f})" if math.isfinite(acc) else ""
        if callback.hand_back != "last_check":
            back += f", the {callback.hand_back} of its last {callback.hand_back_window} checks"
    if math.isfinite(stopped) and not callback.monitor_only:
        handed = f", handed back {back}" if back else ", kept the last weights"
        saved = f": {show(callback.stop_checkpoint_path)}" if callback.stop_checkpoint_path else ""
        return f"stopped at epoch {int(stopped)}{handed}{saved}"
    if math.isfinite(stopped):
        return f"monitor only: would have stopped at epoch {int(stopped)} and handed back {back}"
    rule = getattr(callback, "rule", None)
    epochs = [r for r in callback.history if r.get("kind") != "batch"] or callback.history
    closest = closest_approach(epochs, getattr(rule, "direction", None), getattr(rule, "scale", None))
    prefix = "monitor only: would never have stopped" if callback.monitor_only else "never fired"
    if closest is None:
        return f"{prefix} (no check past its warm-up)"
    relative = closest["scale"] == "relative"
    return (
        f"{prefix}; largest {closest['direction']} {_signed(closest['change'], relative)} at epoch {closest['epoch']} "
        f"({closest['value']:.4g} against median {closest['median']:.4g}), "
        f"limit {_signed(closest['limit_change'], relative)}"
    )


def why_ended(trainer: "L.Trainer", stops: list[RollbackEarlyStopping]) -> str:
    """Why fit ended: the stop that ended it, Lightning's EarlyStopping, max_epochs, max_steps, or a plain stop."""
    for callback in stops:
        if callback.stopped_epoch is not None and not callback.monitor_only:
            return f"{type(callback).__name__} ({callback.name}) stopped it"
    for callback in trainer.callbacks:
        message = getattr(callback, "stopping_reason_message", None)
        if message and not isinstance(callback, RollbackEarlyStopping):
            return f"{type(callback).__name__}: {message}"
    if trainer.max_epochs not in (None, -1) and trainer.current_epoch >= trainer.max_epochs:
        return f"max_epochs={trainer.max_epochs} reached"
    if trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps:
        return f"max_steps={trainer.max_steps} reached"
    if trainer.interrupted:
        return "interrupted"
    return "trainer.should_stop was set (max_time or a callback)"


def evaluate_command(datamodule: Any, ckpt: str, eps: float | None = None) -> str:
    """The `train.py test` command that evaluates `ckpt` with the evaluation config matching the data (the data
    arguments that change the images repeated, and `eps`, the run's threat model, when the config attacks at another
    radius), or a placeholder config naming the data when none matches."""
    kind = type(datamodule).__name__
    config = EVAL_CONFIGS.get((kind, None)) or EVAL_CONFIGS.get((kind, getattr(datamodule, "name", None)))
    extra = []
    if datamodule is not None:
        defaults = inspect.signature(type(datamodule).__init__).parameters
        for name in IMAGE_ARGUMENTS:
            if name in defaults and getattr(datamodule, name, defaults[name].default) != defaults[name].default:
                extra += [f"--data.init_args.{name}", str(getattr(datamodule, name))]
    if config is not None and eps is not None and not math.isclose(eps, _config_eps(config), rel_tol=1e-6):
        extra += ["--trainer.callbacks.init_args.eps", f"{eps:.6g}"]  # RobustnessEvaluation is the configs' last
    if config is None:
        config = f"<an eval config for {kind}, e.g. a copy of configs/eval_robust_cifar10.yaml>"
    else:
        config = shlex.quote(config)
    return " ".join(
        ["python train.py test --config", config, "--ckpt_path", shlex.quote(ckpt), *map(shlex.quote, extra)]
    )


def _config_eps(config: str) -> float:
    """The radius RobustnessEvaluation attacks at in an evaluation config of EVAL_CONFIGS (nan when unreadable)."""
    path = Path(__file__).resolve().parents[2] / config
    try:
        callbacks = yaml.safe_load(path.read_text())["trainer"]["callbacks"]
        return float(next(c for c in callbacks if c["class_path"].endswith("RobustnessEvaluation"))["init_args"]["eps"])
    except (OSError, KeyError, TypeError, StopIteration, ValueError, yaml.YAMLError):
        return math.nan


class RunSummary(L.Callback):
    """Logs a short summary of the run on rank zero at the end of `fit` (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._best_by_epoch: dict[int, float] = {}  # val/acc_pgd of each epoch validated in this process
        self.lines: list[str] = []

    def on_validation_epoch_end(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> None:
        value = trainer.callback_metrics.get(BEST_METRIC)
        if value is not None and not trainer.sanity_checking and trainer.state.fn == "fit":
            self._best_by_epoch[trainer.current_epoch] = float(value)

    def on_fit_end(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> None:
        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        self.lines = self.summary(trainer)
        rank_zero_info("\n".join(self.lines))

    def summary(self, trainer: "L.Trainer") -> list[str]:
        """The summary's lines: a title naming the run folder, then `label  text` rows aligned on the label (files
        inside the run folder by their names there)."""
        stops = [cb for cb in trainer.callbacks if isinstance(cb, RollbackEarlyStopping)]
        log_dir = Path(trainer.log_dir or trainer.default_root_dir)
        inside = functools.partial(_inside, log_dir)
        epochs = trainer.current_epoch
        rows = [
            ("epochs", f"{epochs} (0-{epochs - 1}): {why_ended(trainer, stops)}" if epochs else "none"),
            (f"best {BEST_METRIC}", self._best(trainer, inside)),
            *((callback.name, stop_decision(callback, inside)) for callback in stops),
        ]
        for label, suffix in (("histories", "_history.csv"), ("figures", "_curves.png")):
            files = [log_dir / f"{cb.name}{suffix}" for cb in stops]
            if any(f.is_file() for f in files):
                rows.append((label, ", ".join(inside(f) for f in files if f.is_file())))
        boards = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if boards:
            rows.append(("TensorBoard", f"tensorboard --logdir {shlex.quote(shown_path(boards[0].root_dir))}"))
        target = self._handed_back(trainer, stops, log_dir)
        if target:
            eps = getattr(trainer.lightning_module, "eval_eps", None)
            rows.append(("evaluate", evaluate_command(trainer.datamodule, shown_path(target), eps)))
        width = max(len(label) for label, _ in rows)
        title = f"robustrain: fit finished; run folder {shown_path(log_dir)}"
        return [title, *(f"  {label:<{width}}  {text}" for label, text in rows)]

    @staticmethod
    def _handed_back(trainer: "L.Trainer", stops: list[RollbackEarlyStopping], log_dir: Path) -> str | None:
        """The checkpoint of the model the run hands back: a stop's saved model, else the run's last checkpoint (its
        version folder, which `--ckpt_path` resolves to checkpoints/last.ckpt, when it is there)."""
        stopped = next(
            (cb.stop_checkpoint_path for cb in stops if cb.stop_checkpoint_path and not cb.monitor_only), None
        )
        if stopped:
            return stopped
        # the checkpoint of the last epoch: a `save_last` file, or that of a ModelCheckpoint without a monitor
        paths = [cb.last_model_path for cb in trainer.checkpoint_callbacks]
        paths += [cb.best_model_path for cb in trainer.checkpoint_callbacks if cb.monitor is None]
        last = next((p for p in paths if p), None)
        if last and Path(last).name == "last.ckpt" and Path(last).parent == log_dir / "checkpoints":
            return str(log_dir)  # what README's commands name: --ckpt_path resolves it to checkpoints/last.ckpt
        return last

    def _best(self, trainer: "L.Trainer", inside: Callable[[str | Path], str]) -> str:
        checkpoint = next(
            (
                cb
                for cb in trainer.checkpoint_callbacks
                if isinstance(cb, ModelCheckpoint) and cb.monitor == BEST_METRIC
            ),
            None,
        )
        if checkpoint is not None and checkpoint.best_model_score is not None and checkpoint.best_model_path:
            score = float(checkpoint.best_model_score)
            match = re.search(r"epoch=(\d+)", Path(checkpoint.best_model_path).name)
            epoch = int(match.group(1)) if match else self._epoch_of(score)
            at = f" at epoch {epoch}" if epoch is not None else ""
            return f"{score:.3f}{at}: {inside(checkpoint.best_model_path)}"
        if self._best_by_epoch:
            epoch = max(self._best_by_epoch, key=self._best_by_epoch.get)
            return f"{self._best_by_epoch[epoch]:.3f} at epoch {epoch} (no checkpoint monitors {BEST_METRIC})"
        return "not measured (no validation PGD: model.init_args.eval_size is 0 or validation is off)"

    def _epoch_of(self, score: float) -> int | None:
        return next((e for e, v in self._best_by_epoch.items() if math.isclose(v, score, rel_tol=1e-6)), None)
