"""TensorBoard monitoring of a run: one custom-scalar layout and one hparams record gathered from the module and
its callbacks.

- Layout (TensorBoard's CUSTOM SCALARS tab), written once at the start of fit: the LightningModule's charts (e.g.
  val/acc, val/acc_pgd and val/acc_fgsm in one chart) and those of every callback with a `tensorboard_charts()`
  method (e.g. AliasingMonitor: aliasing value, its median and the stop limit in one chart). The charts update live.
- Hparams (the HPARAMS tab): the module's hyperparameters plus every callback's `hparams()` (its settings), written
  in the module's `setup`, before Lightning writes its own record (TensorBoard shows the first record of a run); and
  every callback's `outcome()` (its stop epoch, the epoch it handed back and that epoch's val/acc_pgd) as the
  record's metrics, declared then and logged as scalars at the end of fit (the tab shows their last value). So runs
  can be sorted by their stop settings and compared by their outcome.
"""

import math
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only


def tensorboard_loggers(trainer: "L.Trainer") -> list[TensorBoardLogger]:
    """The trainer's TensorBoard loggers (the one way robustrain detects TensorBoard support)."""
    return [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]


def merge_charts(*parts: dict[str, dict[str, list]]) -> dict[str, dict[str, list]]:
    """One add_custom_scalars layout {category: {chart title: ["Multiline", [tag regexes]]}} from several parts."""
    layout: dict[str, dict[str, list]] = {}
    for part in parts:
        for category, charts in part.items():
            layout.setdefault(category, {}).update(charts)
    return layout


@rank_zero_only
def write_layout(trainer: "L.Trainer", module_charts: dict[str, dict[str, list]]) -> dict[str, dict[str, list]]:
    """Write the module's and the callbacks' charts as one custom-scalar layout to every TensorBoard logger."""
    parts = [module_charts] + [cb.tensorboard_charts() for cb in trainer.callbacks if hasattr(cb, "tensorboard_charts")]
    layout = merge_charts(*parts)
    for logger in tensorboard_loggers(trainer):
        logger.experiment.add_custom_scalars(layout)
    return layout


def run_hparams(trainer: "L.Trainer") -> tuple[dict[str, Any], dict[str, float]]:
    """(callback settings, callback outcomes) of every callback that offers them."""
    params: dict[str, Any] = {}
    metrics: dict[str, float] = {}
    for cb in trainer.callbacks:
        if hasattr(cb, "hparams") and callable(cb.hparams):
            params.update(cb.hparams())
        if hasattr(cb, "outcome"):
            metrics.update(cb.outcome())
    return params, metrics


def log_run_hparams(trainer: "L.Trainer", pl_module: "L.LightningModule") -> None:
    """Write the module's hyperparameters and the callbacks' settings as the run's hparams record, declaring the
    callbacks' outcomes (nan until log_run_outcome) and hp_metric as its metrics."""
    params, outcomes = run_hparams(trainer)
    declared = dict.fromkeys([*outcomes, "hp_metric"], math.nan)  # the names only; the values come at the end
    if trainer.is_global_zero:
        for logger in tensorboard_loggers(trainer):
            logger.log_hyperparams({**dict(pl_module.hparams), **params}, declared)


def log_run_outcome(trainer: "L.Trainer") -> dict[str, float]:
    """Log the callbacks' outcomes as scalars (the hparams record's metrics) at the end of fit; returns them."""
    _, metrics = run_hparams(trainer)
    if trainer.is_global_zero and metrics:
        for logger in tensorboard_loggers(trainer):
            logger.log_metrics(metrics, step=trainer.global_step)
    return metrics
