"""robustrain.callbacks.MetricEarlyStopping: a stop on a metric the run logs, and the errors that name a bad one."""

import pytest
from _stopping_fixtures import RandomDigits, tiny_module, tiny_trainer

from robustrain.callbacks import MetricEarlyStopping


def test_an_empty_metric_name_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match=r"metric='', but a logged metric's name is valid here"):
        MetricEarlyStopping(metric="")


def test_a_metric_the_run_never_logs_is_named_with_the_logged_ones(tmp_path) -> None:
    stop = MetricEarlyStopping(metric="train/nope")
    with pytest.raises(ValueError, match=r"metric='train/nope'.*no such metric.*logged: .*train/loss"):
        tiny_trainer(tmp_path, [stop], max_epochs=2, logger=False).fit(tiny_module(), datamodule=RandomDigits())


def test_it_stops_at_the_first_check_past_its_limit(tmp_path) -> None:
    # a training loss that falls by more than 1e-9 from one epoch to the next stops this rule
    stop = MetricEarlyStopping(metric="train/loss", direction="fall", threshold=1e-9)
    tiny_trainer(tmp_path, [stop], max_epochs=6, logger=False).fit(tiny_module(lr=0.05), datamodule=RandomDigits())
    losses = [r["metric"] for r in stop.history]
    assert [r["value"] for r in stop.history] == losses
    fell = [e for e in range(1, len(losses)) if losses[e] < losses[e - 1] - 1e-9]
    assert fell and stop.stopped_epoch == fell[0] and stop.restored_epoch == fell[0] - 1
