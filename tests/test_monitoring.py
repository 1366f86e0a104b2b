"""TensorBoard monitoring read back with TensorBoard's own reader: the custom-scalar layout names logged tags, the
stop figure exists, and the hparams record carries the callbacks' settings and outcomes."""

import re
from pathlib import Path

import lightning as L
import pytest
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


def test_custom_scalar_layout_combines_the_charts_and_names_only_logged_tags(events):
    accumulator, _, _ = events
    scalars = accumulator.Tags()["scalars"]
    layout = _layout(accumulator)
    charts = {chart.title: [t for t in chart.multiline.tag] for category in layout.category for chart in category.chart}
    assert any(set(tags) == {"^aliasing/value$", "^aliasing/median$", "^aliasing/limit$"} for tags in charts.values())
    assert any({"^val/acc_pgd$", "^val/acc_fgsm$", "^val/acc$"} <= set(tags) for tags in charts.values())
    assert any("^pgd_es/acc$" in tags for tags in charts.values())
    for title, tags in charts.items():
        for tag in tags:
            assert [s for s in scalars if re.match(tag, s)], f"chart {title!r}: {tag} matches no logged scalar"


def test_the_stop_figure_is_logged(events):
    accumulator, callbacks, logger = events
    assert "aliasing/curves" in accumulator.Tags()["images"]
    assert (Path(logger.log_dir) / "aliasing_curves.png").exists()


def test_hparams_carry_the_callback_settings_and_outcomes(events):
    accumulator, callbacks, _ = events
    metadata = accumulator.SummaryMetadata("_hparams_/session_start_info")
    info = plugin_data_pb2.HParamsPluginData.FromString(metadata.plugin_data.content).session_start_info
    hparams = dict(info.hparams)
    assert hparams["aliasing/threshold"].number_value == pytest.approx(0.05)
    assert hparams["aliasing/measure"].string_value == "absolute"
    assert hparams["pgd_es/max_drop"].number_value == pytest.approx(0.2)
    assert hparams["eps"].number_value == pytest.approx(0.3)  # the module's own
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        accumulator.SummaryMetadata("_hparams_/experiment").plugin_data.content
    ).experiment
    metric_tags = {m.name.tag for m in experiment.metric_infos}
    assert {"aliasing/stopped_epoch", "aliasing/restored_epoch", "aliasing/restored_val_acc_pgd"} <= metric_tags
    outcome = callbacks[0].outcome()
    last = accumulator.Scalars("aliasing/restored_epoch")[-1].value
    assert last == pytest.approx(outcome["aliasing/restored_epoch"], nan_ok=True)
    assert accumulator.Scalars("pgd_es/stopped_epoch")
