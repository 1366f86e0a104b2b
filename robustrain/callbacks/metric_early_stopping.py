"""MetricEarlyStopping: the rollback stop on any metric the run already logs (as Lightning's EarlyStopping monitors
one), with robustrain's rule, hand-back, history and agreement across ranks.

At the end of every `every_n_epochs`-th epoch it reads `metric` from `trainer.callback_metrics`, where every value
logged with `self.log` is (reduced across ranks when logged with `sync_dist=True`, as robustrain's validation
metrics are). Validation runs before the epoch-end hooks, so `val/...` metrics are those of this epoch; an epoch
without validation (`check_val_every_n_epoch`) is no check. A metric logged by another callback's epoch-end hook is
read only if that callback comes before this one in the trainer's callbacks.
"""

from typing import Any

import lightning as L

from robustrain.callbacks.rollback_early_stopping import RollbackEarlyStopping, validated_this_epoch
from robustrain.stopping import pgd_es_rule


class MetricEarlyStopping(RollbackEarlyStopping):
    """A stop on a logged metric, e.g. `val/acc_pgd` (a fall) or `val/loss` (a rise).

    Logged: `<name>/value`, `<name>/median`, `<name>/limit`. Files: `<name>_history.csv`, `<name>_curves.png`, and
    on a stop `<name>_stop.ckpt`.

    Args:
        metric: The logged metric's name (a key of `trainer.callback_metrics`).
        **kwargs: The stop's arguments (RollbackEarlyStopping). Its default rule is PGD-ES's, for an accuracy: a fall
            of more than 0.2 (absolute) since the previous check; set `direction`, `scale` and `threshold` for others.
            `name` defaults to "metric".
    """

    name = "metric"
    default_rule = pgd_es_rule(0.2)
    series = "metric"
    epoch_kind = "epoch"

    def __init__(self, metric: str, **kwargs: Any) -> None:
        if not isinstance(metric, str) or not metric:
            raise ValueError(f"metric={metric!r}, but a logged metric's name is valid here, e.g. 'val/acc_pgd'")
        super().__init__(**kwargs)
        self.metric = metric

    def measure_epoch(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> dict[str, float] | None:
        metrics = trainer.callback_metrics
        if self.metric.startswith("val/") and not validated_this_epoch(trainer):
            return None  # no validation this epoch: nothing new to decide on
        if self.metric not in metrics:
            known = ", ".join(sorted(metrics)) or "none yet"
            raise ValueError(
                f"MetricEarlyStopping(metric={self.metric!r}): the run logs no such metric at the end of epoch "
                f"{trainer.current_epoch} (logged: {known})"
            )
        return {"metric": float(metrics[self.metric])}
