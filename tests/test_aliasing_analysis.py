"""Aliasing analysis of trained models: per-image spectral categories, their summaries, AliasingAnalysis."""

import json

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from robustrain.aliasing import CATEGORIES, category_fractions, measure_model_aliasing
from robustrain.aliasing.layer_categories import (
    categories_from_sums,
    category_sums,
    layer_categories,
    summarize_categories,
)
from robustrain.evaluation import AliasingAnalysis
from robustrain.models import SmallCNN
from robustrain.training import StandardTraining


@pytest.fixture
def model() -> SmallCNN:
    torch.manual_seed(0)
    return SmallCNN(channels=(4, 8), hidden=16)


def test_layer_categories_match_a_brute_force_stride_one_conv(model, mnist_batch) -> None:
    x = mnist_batch[0][:8]
    model.train()
    logits, per_image = layer_categories(model, x)
    assert model.training and all(m.training for m in model.modules())  # modes restored
    with torch.no_grad():
        a0 = model.normalize(x)
        conv1_s1 = F.conv2d(a0, model.conv1.weight, model.conv1.bias, stride=1, padding=1)  # (8, 4, 27, 27)
        a1 = model.relu(model.conv1(a0))
        conv2_s1 = F.conv2d(a1, model.conv2.weight, model.conv2.bias, stride=1, padding=1)  # (8, 8, 13, 13)
        expected = {"conv1": category_fractions(conv1_s1, 2), "conv2": category_fractions(conv2_s1, 2)}
        assert torch.allclose(logits, model.eval()(x))
    assert list(per_image) == ["conv1", "conv2"]
    for layer in expected:
        for c in CATEGORIES:
            assert torch.allclose(per_image[layer][c], expected[layer][c])


def test_summary_splits_correct_and_incorrect_images_by_hand() -> None:
    per_image = {
        "a": {
            "non_aliased": torch.tensor([1.0, 0.5, 0.0]),
            "aliased": torch.tensor([0.0, 0.5, 1.0]),
            "tangled": torch.zeros(3),
            "no_pass": torch.zeros(3),
        },
        "b": {
            "non_aliased": torch.tensor([0.0, 0.0, 0.0]),
            "aliased": torch.tensor([0.2, 0.4, 0.6]),
            "tangled": torch.tensor([0.8, 0.6, 0.4]),
            "no_pass": torch.zeros(3),
        },
    }
    summary = summarize_categories(per_image, torch.tensor([True, True, False]))
    assert summary["num_images"] == {"all": 3, "correct": 2, "incorrect": 1}
    assert summary["layers"]["a"]["correct"]["aliased"] == pytest.approx(0.25)
    assert summary["layers"]["a"]["incorrect"]["aliased"] == pytest.approx(1.0)
    assert summary["layers"]["b"]["all"]["tangled"] == pytest.approx(0.6)
    assert summary["overall"]["correct"]["aliased"] == pytest.approx((0.25 + 0.3) / 2)  # equal weight per layer
    for split in ("all", "correct", "incorrect"):
        assert sum(summary["overall"][split].values()) == pytest.approx(1.0)


def test_a_split_without_images_is_none_not_zero() -> None:
    per_image = {"a": {c: torch.full((2,), 0.25) for c in CATEGORIES}}
    summary = summarize_categories(per_image, torch.tensor([True, True]))
    assert summary["layers"]["a"]["incorrect"] == dict.fromkeys(CATEGORIES)
    assert summary["overall"]["incorrect"] == dict.fromkeys(CATEGORIES)


def test_sums_over_batches_equal_the_summary_of_all_images() -> None:
    torch.manual_seed(0)
    raw = torch.rand(2, 10, 4)
    per_image = {
        f"l{i}": {c: (raw[i] / raw[i].sum(1, keepdim=True))[:, j] for j, c in enumerate(CATEGORIES)} for i in range(2)
    }
    correct = torch.rand(10) > 0.5
    halves = [
        ({k: {c: v[c][s] for c in CATEGORIES} for k, v in per_image.items()}, correct[s])
        for s in (slice(0, 4), slice(4, 10))
    ]
    parts = [category_sums(p, c) for p, c in halves]
    merged = categories_from_sums(["l0", "l1"], parts[0][0] + parts[1][0], parts[0][1] + parts[1][1])
    direct = summarize_categories(per_image, correct)
    assert merged["num_images"] == direct["num_images"]
    for layer in ("l0", "l1"):
        for split in ("all", "correct", "incorrect"):
            for c in CATEGORIES:
                assert merged["layers"][layer][split][c] == pytest.approx(direct["layers"][layer][split][c])


def test_callback_reports_the_measure_of_the_test_images(model, mnist_batch, tmp_path) -> None:
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
    trainer.test(StandardTraining(net=model, eval_size=0), DataLoader(TensorDataset(x, y), batch_size=8))
    report = json.loads((tmp_path / "aliasing.json").read_text())
    expected = measure_model_aliasing(model, x[:20])
    assert report["probe"] == {"source": "test", "num_images": 20, "seed": None}
    assert report["aliasing"] == pytest.approx(expected)
    direct = summarize_categories(*_all_categories(model, x[:20], y[:20]))
    assert report["categories"]["num_images"] == direct["num_images"]
    assert report["categories"]["overall"]["all"] == pytest.approx(direct["overall"]["all"])
    assert trainer.callback_metrics["test/aliasing/conv2"].item() == pytest.approx(expected["conv2"])


def _all_categories(model, x, y):
    logits, per_image = layer_categories(model, x)
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


def test_unknown_layer_names_raise(model, mnist_batch) -> None:
    with pytest.raises(ValueError, match="conv9"):
        layer_categories(model, mnist_batch[0][:2], ["conv9"])
