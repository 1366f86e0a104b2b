"""robustrain.evaluation.aliasing_analysis: the AliasingAnalysis callback's report and its checked arguments."""

import json

import lightning as L
import pytest
from torch.utils.data import DataLoader, TensorDataset

from robustrain.aliasing import measure_model_aliasing
from robustrain.aliasing.layer_categories import (
    layer_categories,
    summarize_categories,
)
from robustrain.evaluation import AliasingAnalysis
from robustrain.training import StandardTraining


def test_callback_reports_the_measure_of_the_test_images(tiny_cnn, mnist_batch, tmp_path) -> None:
    x, y = mnist_batch[0][:24], mnist_batch[1][:24]
    callback = AliasingAnalysis(probe_source="test", max_images=20)
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        callbacks=[callback],
        inference_mode=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.test(StandardTraining(net=tiny_cnn, eval_size=0), DataLoader(TensorDataset(x, y), batch_size=8))
    report = json.loads((tmp_path / "aliasing.json").read_text())
    expected = measure_model_aliasing(tiny_cnn, x[:20])
    assert report["probe"] == {"source": "test", "num_images": 20, "seed": None}
    assert report["aliasing"] == pytest.approx(expected)
    direct = summarize_categories(*_all_categories(tiny_cnn, x[:20], y[:20]))
    assert report["categories"]["num_images"] == direct["num_images"]
    assert report["categories"]["overall"]["all"] == pytest.approx(direct["overall"]["all"])
    assert trainer.callback_metrics["test/aliasing/conv2"].item() == pytest.approx(expected["conv2"])


def _all_categories(tiny_cnn, x, y):
    logits, per_image = layer_categories(tiny_cnn, x)
    return per_image, logits.argmax(1) == y


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"probe_source": "val"}, "probe_source='val'"),
        ({"threshold_db": 0.0}, "threshold_db=0.0"),
        ({"probe_size": 0}, "probe_size=0"),
        ({"report_name": "a/b.json"}, "report_name='a/b.json'"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_value(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        AliasingAnalysis(**kwargs)


def test_unknown_layer_names_raise(tiny_cnn, mnist_batch) -> None:
    with pytest.raises(ValueError, match="conv9"):
        layer_categories(tiny_cnn, mnist_batch[0][:2], ["conv9"])
