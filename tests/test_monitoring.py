"""TensorBoard monitoring read back with TensorBoard's own reader: the custom-scalar layout names logged tags, the
stop figure exists, and the hparams record carries the callbacks' settings and outcomes."""

import re
from pathlib import Path

import lightning as L
import pytest
from _stopping_fixtures import ScaleWeightAt
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.util import tensor_util

from robustrain.callbacks import AliasingMonitor, PGDEarlyStopping
from robustrain.data import MNIST5k
from robustrain.models import SmallCNN
from robustrain.training import FGSMTraining


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    root = tmp_path_factory.mktemp("tb")
    module = FGSMTraining(
        net=SmallCNN(),
        eps=0.3,
        alpha=0.375,
        init="random_unclipped",
        optimizer="adam",
        lr=5e-3,
        eval_eps=0.3,
        eval_alpha=0.1,
        eval_steps=2,
        eval_size=20,
    )
    logger = L.pytorch.loggers.TensorBoardLogger(root, name="run")
    callbacks = [
        AliasingMonitor(warmup_epochs=1, wait_for_lr_peak=False, threshold=0.05, probe_size=20),
        PGDEarlyStopping(eps=0.3, alpha=0.1, steps=2, monitor_only=True),
        ScaleWeightAt(epoch=2, factor=5.0),  # an aliasing jump in the last epoch: the aliasing stop acts there
    ]
    trainer = L.Trainer(
        max_epochs=3,
        limit_train_batches=3,
        limit_val_batches=1,
        logger=logger,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        inference_mode=False,
    )
    trainer.fit(module, MNIST5k(batch_size=50, eval_batch_size=50))
    accumulator = EventAccumulator(str(logger.log_dir), size_guidance={"tensors": 0, "images": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator, callbacks, logger


def _layout(accumulator) -> layout_pb2.Layout:
    [event] = accumulator.Tensors("custom_scalars__config__")
    return layout_pb2.Layout.FromString(tensor_util.make_ndarray(event.tensor_proto).item())


def _charts(accumulator) -> dict[str, tuple[str, list[str]]]:
    """chart title -> ("multiline", tag regexes) or ("margin", [value, lower, upper] tags)."""
    charts = {}
    for category in _layout(accumulator).category:
        for chart in category.chart:
            if chart.HasField("margin"):
                [series] = chart.margin.series
                charts[chart.title] = ("margin", [series.value, series.lower, series.upper])
            else:
                charts[chart.title] = ("multiline", list(chart.multiline.tag))
    return charts


def test_custom_scalar_charts_hold_one_quantity_or_one_line_in_a_band(events):
    """TensorBoard colours a chart's lines by run: a Multiline chart of one run is one colour, so each holds one tag,
    and a value is compared with its limits as a Margin chart (the line and its band)."""
    accumulator, _, _ = events
    charts = _charts(accumulator)
    margins = {tuple(tags) for kind, tags in charts.values() if kind == "margin"}
    assert ("aliasing/value", "aliasing/median", "aliasing/limit") in margins  # a rise: the band from median up
    assert ("pgd_es/value", "pgd_es/limit", "pgd_es/median") in margins  # a fall: the band from the limit up
    assert ("val/acc_pgd", "val/acc_pgd", "val/acc_fgsm") in margins  # the masking gap as a band
    assert all(len(tags) == 1 for kind, tags in charts.values() if kind == "multiline")
    flags = [tags for kind, tags in charts.values() if kind == "multiline"]
    assert {("aliasing/warmup",), ("aliasing/should_stop",), ("aliasing/hand_back_epoch",)} <= set(map(tuple, flags))
    assert ["^val/acc$"] in [tags for _, tags in charts.values()]


def test_custom_scalar_charts_name_only_logged_tags(events):
    accumulator, _, _ = events
    scalars = accumulator.Tags()["scalars"]
    for title, (kind, tags) in _charts(accumulator).items():
        for tag in tags:
            found = (
                [s for s in scalars if re.match(tag, s)] if kind == "multiline" else [s for s in scalars if s == tag]
            )
            assert found, f"chart {title!r}: {tag} matches no logged scalar"


def test_the_stop_figure_is_logged(events):
    accumulator, callbacks, logger = events
    assert "aliasing/curves" in accumulator.Tags()["images"]
    assert (Path(logger.log_dir) / "aliasing_curves.png").exists()


def _experiment(accumulator):
    return plugin_data_pb2.HParamsPluginData.FromString(
        accumulator.SummaryMetadata("_hparams_/experiment").plugin_data.content
    ).experiment


def test_hparams_carry_the_callback_settings_and_outcomes(events):
    accumulator, callbacks, _ = events
    metadata = accumulator.SummaryMetadata("_hparams_/session_start_info")
    info = plugin_data_pb2.HParamsPluginData.FromString(metadata.plugin_data.content).session_start_info
    shown = {h.name: h.display_name for h in _experiment(accumulator).hparam_infos}
    hparams = {shown[name]: value for name, value in info.hparams.items()}
    assert hparams["aliasing/threshold"].number_value == pytest.approx(0.05)
    assert hparams["aliasing/measure"].string_value == "absolute"
    assert hparams["pgd_es/max_drop"].number_value == pytest.approx(0.2)
    assert hparams["eps"].number_value == pytest.approx(0.3)  # the module's own
    assert hparams["method"].string_value == "FGSMTraining"
    metric_tags = [m.name.tag for m in _experiment(accumulator).metric_infos]
    assert {"aliasing/stopped_epoch", "aliasing/restored_epoch", "aliasing/restored_val_acc_pgd"} <= set(metric_tags)
    outcome = callbacks[0].outcome()
    last = accumulator.Scalars("aliasing/restored_epoch")[-1].value
    assert last == pytest.approx(outcome["aliasing/restored_epoch"], nan_ok=True)
    # the monitor-only stop restored nothing: it reports what it would have done, under names that say so
    assert {"pgd_es/would_stop_epoch", "pgd_es/would_hand_back_epoch"} <= set(metric_tags)
    assert not {"pgd_es/stopped_epoch", "pgd_es/restored_epoch"} & set(metric_tags)
    assert accumulator.Scalars("pgd_es/would_stop_epoch")


def test_hp_metric_ends_as_the_val_acc_pgd_of_the_model_the_run_hands_back(events):
    accumulator, callbacks, _ = events
    aliasing = callbacks[0]
    assert (aliasing.stopped_epoch, aliasing.restored_epoch) == (2, 1)  # the jump stopped it, epoch 1 handed back
    handed_back = [r["val_acc_pgd"] for r in aliasing.history if r["epoch"] == 1][-1]
    values = [event.value for event in accumulator.Scalars("hp_metric")]
    # Lightning's placeholder (-1) at the start, one per validation (epochs 0-2), the handed-back model's at the end
    assert len(values) == 5
    assert values[-1] == pytest.approx(handed_back) and aliasing.handed_back_val_acc_pgd() == pytest.approx(handed_back)


def test_hparams_lead_with_the_method_then_the_stops_and_end_with_hp_metric(events):
    """TensorBoard's hparams plugin sorts the columns by name and shows the first five: the record names sort in the
    order runs are compared by, and the tab shows the display names."""
    accumulator, _, _ = events
    experiment = _experiment(accumulator)
    infos = sorted(experiment.hparam_infos, key=lambda h: h.name)  # what the plugin's backend does
    shown = [h.display_name for h in infos]
    assert shown[:5] == ["method", "eps", "alpha", "init", "eps_warmup_epochs"]
    assert shown.index("aliasing/threshold") == 5 and shown.index("pgd_es/max_drop") > shown.index("aliasing/restore")
    assert shown.index("pgd_es/restore") < shown.index("optimizer")  # the stops before the module's other settings
    assert not [name for name in shown if name.startswith("_")]  # no jsonargparse internals
    metric_tags = [m.name.tag for m in experiment.metric_infos]
    assert metric_tags[:3] == ["aliasing/stopped_epoch", "aliasing/restored_epoch", "aliasing/restored_val_acc_pgd"]
    assert metric_tags[-1] == "hp_metric"
