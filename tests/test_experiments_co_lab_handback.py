"""The hand-back replay's scoring: Wilson intervals, policies on a recorded collapse, and the ResNet runs apart."""

import pytest

from experiments.co_lab.handback import DETECTORS, replayed, resnet_markdown, score, wilson


def test_wilson_matches_the_published_intervals():
    # 5 of 10: 0.237-0.763; 0 of 10: 0-0.278 (Newcombe 1998, Table I's method 3)
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)


def _record(kind: str, test: list[float], stop: int | None, network: str = "SmallCNN") -> dict:
    return {
        "run": f"x@fgsm/seed{20 + len(test)}",
        "network": network,
        "class": kind,
        "val_acc_pgd": test,
        "probe": test,
        "test_pgd": test,
        "stops": {d: stop for d in DETECTORS},
        "online": {},
    }


def test_a_stop_after_a_two_epoch_fall_hits_only_with_a_best_recent_hand_back():
    # best 0.50 at epoch 1, 0.45 at epoch 2, collapsed at 3, where the stop sees it
    collapse = _record("catastrophic", [0.30, 0.50, 0.45, 0.0, 0.0], stop=3)
    healthy = _record("healthy", [0.30, 0.40, 0.50, 0.55, 0.60], stop=None)
    stopped = _record("healthy", [0.30, 0.40, 0.50, 0.55, 0.60], stop=2)
    rows = {(r["detector"], r["policy"]): r for r in score([collapse, healthy, stopped])}
    assert rows["pgd_es", "last_check"]["hits"] == 0  # epoch 2: 0.45, 5 points under the best
    assert rows["pgd_es", "best_val_all"]["hits"] == 1
    assert rows["pgd_es", "best_probe_3"]["hits"] == 1
    assert rows["pgd_es", "last_check"]["false_stops"] == 1 and rows["pgd_es", "last_check"]["healthy"] == 2
    assert rows["pgd_es", "last_check"]["median_test_pgd"] == pytest.approx(0.45)
    # unstable training (a collapse that climbed back) is neither a collapse to hit nor a healthy run to spare
    unstable = _record("unstable", [0.30, 0.50, 0.0, 0.55, 0.60], stop=2)
    row = next(r for r in score([collapse, healthy, stopped, unstable]) if r["policy"] == "last_check")
    assert (row["collapses"], row["healthy"]) == (1, 2)


def test_the_resnet_table_lists_its_own_runs_and_is_absent_without_them():
    assert resnet_markdown([], []) == ""
    records = [
        _record("partial_collapse", [0.3, 0.6, 0.2], stop=2, network="PreActResNet18"),
        _record("catastrophic", [0.1, 0.2, 0.0, 0.0], stop=3, network="PreActResNet18"),
        _record("healthy", [0.3, 0.5, 0.6, 0.6, 0.7], stop=None, network="PreActResNet18"),
        _record("healthy", [0.3, 0.5] + [0.7] * 9, stop=None, network="PreActResNet18"),
        _record("healthy", [0.3, 0.5, 0.6], stop=None, network="PreActResNet18"),
    ]
    records[-1]["run"] = "preact18_injected_beta0.03@fgsm/seed30"
    text = resnet_markdown(score(records), records)
    assert "fgsm at seeds 23-25, 31, fgsm (beta0.03) at seed 30): 5 runs, 1 catastrophic and 1 partial" in text
    # a collapse from 20% is listed, and not counted among those from real robustness (25% or more)
    assert "test PGD-50-10 on 100 digits: x@fgsm/seed23 60%; x@fgsm/seed24 20% (1 of 2 from 25% or more)." in text
    assert "| pgd_es | best_val_all | 2 / 2 |" in text and "best_val_3" not in text


def test_the_replayed_arms_are_chosen_per_network():
    assert replayed("PreActResNet18", "preact18_injected@flc") and replayed("PreActResNet18", "preact18_injected@pgd10")
    assert replayed("SmallCNN", "smallcnn_natural@fgsm") and replayed("SmallCNN", "smallcnn_injected_beta0.05@nfgsm")
    assert not replayed("SmallCNN", "smallcnn_injected@flc") and not replayed("SmallCNN", "smallcnn_injected@gradalign")
    assert not replayed("WideResNet", "x@fgsm")
