"""TensorBoard monitoring of a run: one custom-scalar layout and one hparams record gathered from the module and
its callbacks.

- Layout (TensorBoard's CUSTOM SCALARS tab), written once at the start of fit: the LightningModule's charts and those
  of every callback with a `tensorboard_charts()` method. TensorBoard colours the lines of a "Multiline" chart by run,
  not by tag (the lines of one run differ only by their markers), so a chart holds one quantity, or one line with a
  band: a "Margin" chart [value, lower, upper], e.g. val/acc_pgd with the band up to val/acc_fgsm (the masking gap),
  or a stop's value with the band from its median to its limit. The charts update live.
- Hparams (the HPARAMS tab): the method (the module's class) and its own arguments (radius, step, start), then every
  callback's `hparams()` (its settings), then the module's other hyperparameters, without jsonargparse's internals
  (`_class_path`, `_instantiator`); the metrics are every callback's `outcome()` (its stop epoch, the epoch it handed
  back and that epoch's val/acc_pgd), then `hp_metric`. TensorBoard's hparams plugin sorts the hyperparameters by
  name (tensorboard/plugins/hparams/backend_context.py, `_sort_and_reduce_to_hparams_limit`) and shows the first five,
  so each is recorded under a name that sorts in this order ("000 method", "001 eps", ...) with its own name as the
  display name, which is what the tab shows. Written in the module's `setup`, before Lightning writes its own record
  (TensorBoard shows the first record of a run); the outcomes are logged as scalars at the end of fit.
"""

import inspect
import math
from typing import Any

import lightning as L
import torch
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


INTERNAL_KEYS = ("_class_path", "_instantiator")  # jsonargparse's, stored by LightningCLI beside the arguments


def run_hparams(trainer: "L.Trainer") -> tuple[dict[str, Any], dict[str, float]]:
    """(callback settings, callback outcomes) of every callback that offers them, in callback order."""
    params: dict[str, Any] = {}
    metrics: dict[str, float] = {}
    for cb in trainer.callbacks:
        if hasattr(cb, "hparams") and callable(cb.hparams):
            params.update(cb.hparams())
        if hasattr(cb, "outcome"):
            metrics.update(cb.outcome())
    return params, metrics


def _flat(prefix: str, value: Any) -> list[tuple[str, Any]]:
    """(name, value) pairs of a nested config, `a/b/c` for nested keys."""
    if isinstance(value, dict):
        return [pair for key, item in value.items() for pair in _flat(f"{prefix}/{key}" if prefix else key, item)]
    return [(prefix, value)]


def _hparam_value(value: Any) -> bool | int | float | str:
    """A value TensorBoard's hparams record takes: numbers, strings and booleans as they are, anything else as text."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return value if isinstance(value, (bool, int, float, str)) else str(value)


def ordered_hparams(trainer: "L.Trainer", pl_module: "L.LightningModule") -> dict[str, Any]:
    """The run's hyperparameters in the order runs are compared by: `method` (the module's class) and the arguments
    its own class adds (e.g. FGSMTraining's eps, alpha, init), each callback's settings, then the module's other
    hyperparameters (nested ones as `net/init_args/...`); jsonargparse's internal keys left out."""
    hparams = {k: v for k, v in dict(pl_module.hparams).items() if k not in INTERNAL_KEYS}
    own = inspect.signature(type(pl_module).__init__).parameters  # the method's own arguments, e.g. eps, alpha, init
    ordered = {"method": type(pl_module).__name__}
    ordered.update({name: hparams.pop(name) for name in own if name in hparams})
    ordered.update(run_hparams(trainer)[0])
    for name, value in hparams.items():
        ordered.update(_flat(name, value))
    return {name: _hparam_value(value) for name, value in ordered.items()}


def sortable_names(names: list[str]) -> dict[str, str]:
    """name -> a record name that sorts in the given order ("000 method", ...), TensorBoard sorting by name."""
    return {name: f"{i:03d} {name}" for i, name in enumerate(names)}


def hparams_summaries(params: dict[str, Any], metrics: list[str]) -> list:
    """The experiment, session-start and session-end summaries of an hparams record whose columns keep the order of
    `params` (names made sortable, the display names the keys) and of `metrics`."""
    from tensorboard.plugins.hparams import plugin_data_pb2
    from torch.utils.tensorboard.summary import hparams as hparams_summary

    names = sortable_names(list(params))
    summaries = hparams_summary({names[k]: v for k, v in params.items()}, dict.fromkeys(metrics, math.nan))
    experiment = summaries[0]
    content = plugin_data_pb2.HParamsPluginData.FromString(experiment.value[0].metadata.plugin_data.content)
    shown = {record: name for name, record in names.items()}
    for info in content.experiment.hparam_infos:
        info.display_name = shown[info.name]
    experiment.value[0].metadata.plugin_data.content = content.SerializeToString()
    return list(summaries)


def log_run_hparams(trainer: "L.Trainer", pl_module: "L.LightningModule") -> None:
    """Write the run's hparams record (ordered_hparams) to every TensorBoard logger, declaring the callbacks'
    outcomes and hp_metric as its metrics (logged later: log_run_outcome, the module's hp_metric)."""
    params = ordered_hparams(trainer, pl_module)
    _, outcomes = run_hparams(trainer)
    if trainer.is_global_zero:
        for logger in tensorboard_loggers(trainer):
            writer = logger.experiment._get_file_writer()  # as Lightning's own log_hyperparams writes its record
            for summary in hparams_summaries(params, [*outcomes, "hp_metric"]):
                writer.add_summary(summary)


def log_run_outcome(trainer: "L.Trainer") -> dict[str, float]:
    """Log the callbacks' outcomes as scalars (the hparams record's metrics) at the end of fit; returns them.

    Where an early stop handed back earlier weights, `hp_metric` is logged again with their val/acc_pgd: the hparams
    view shows a metric's last value, which is then the model the run ends with, not the collapsed last epoch.
    """
    _, metrics = run_hparams(trainer)
    for callback in trainer.callbacks:
        handed_back = getattr(callback, "handed_back_val_acc_pgd", None)
        value = handed_back() if callable(handed_back) else None
        if value is not None:  # nan when the stop handed back the weights of the start (never validated)
            metrics["hp_metric"] = value
            break
    if trainer.is_global_zero and metrics:
        for logger in tensorboard_loggers(trainer):
            logger.log_metrics(metrics, step=trainer.global_step)
    return metrics
