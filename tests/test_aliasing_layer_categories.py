"""robustrain.aliasing.layer_categories: per-image spectral categories of every layer and their summaries."""

import pytest
import torch
import torch.nn.functional as F

from robustrain.aliasing import CATEGORIES, category_fractions
from robustrain.aliasing.layer_categories import (
    categories_from_sums,
    category_sums,
    layer_categories,
    summarize_categories,
)


def test_layer_categories_match_a_brute_force_stride_one_conv(tiny_cnn, mnist_batch) -> None:
    x = mnist_batch[0][:8]
    tiny_cnn.train()
    logits, per_image = layer_categories(tiny_cnn, x)
    assert tiny_cnn.training and all(m.training for m in tiny_cnn.modules())  # modes restored
    with torch.no_grad():
        a0 = tiny_cnn.normalize(x)
        conv1_s1 = F.conv2d(a0, tiny_cnn.conv1.weight, tiny_cnn.conv1.bias, stride=1, padding=1)  # (8, 4, 27, 27)
        a1 = tiny_cnn.relu(tiny_cnn.conv1(a0))
        conv2_s1 = F.conv2d(a1, tiny_cnn.conv2.weight, tiny_cnn.conv2.bias, stride=1, padding=1)  # (8, 8, 13, 13)
        expected = {"conv1": category_fractions(conv1_s1, 2), "conv2": category_fractions(conv2_s1, 2)}
        assert torch.allclose(logits, tiny_cnn.eval()(x))
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
