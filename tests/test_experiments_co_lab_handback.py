"""The hand-back replay's scoring: Wilson intervals, policies on a recorded collapse, and the ResNet runs apart."""

import dataclasses
import json
from pathlib import Path

import pytest

from experiments.co_lab.handback import (
    committed_records,
    deciding_series,
    fall_replays,
    main,
    merged,
    replayed,
    resnet_markdown,
    series_rows,
)
from experiments.co_lab.handback_scores import (
    DETECTORS,
    choose_patience,
    choose_probe_rule,
    fall_of,
    online_agreement,
    online_record,
    probe_fall,
    probe_rules,
    score,
    stop_and_candidates,
    wilson,
)
from experiments.co_lab.runs import Run
from robustrain.stopping import pgd_es_rule
from robustrain.stopping.replay import replay


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


def _run_with_probe_pgd(values: list[float], recorded_stop: int | None) -> Run:
    """A run whose only history is PGD-ES on a probe, with the stop it recorded (monitor-only)."""
    history = [
        {"epoch": e, "step": e + 1, "kind": "probe", "lr_rising": False, "value": v, "should_stop": e == recorded_stop}
        for e, v in enumerate(values)
    ]
    return Run("x@fgsm", 20, Path("."), {}, {"acc_pgd": values}, {"pgd_es_probe": history})


def test_patience_replays_wait_out_a_dip_and_leave_its_epochs_out_of_the_hand_back():
    run = _run_with_probe_pgd([0.5, 0.91, 0.58, 0.90, 0.2, 0.1], recorded_stop=2)
    falls = fall_replays(run)["pgd_es_probe"]
    assert falls["1"] == {"stop": 2, "pending": []}
    assert falls["2"] == {"stop": 5, "pending": [2, 4]}  # the dip and the fall's first check
    assert falls["3"]["stop"] is None
    record = {"run": run.name, "falls": {"pgd_es_probe": falls}}
    assert stop_and_candidates(record, "pgd_es_probe", 1) == (2, [-1, 0, 1])
    assert stop_and_candidates(record, "pgd_es_probe", 2) == (5, [-1, 0, 1, 3])  # the pending epochs left out
    # a replay that disagrees with the recorded decision is refused, not scored
    with pytest.raises(ValueError, match="replayed stops at 2, recorded at 3"):
        fall_replays(_run_with_probe_pgd([0.5, 0.91, 0.58, 0.90, 0.2, 0.1], recorded_stop=3))


def _tuning_record(kind: str, values: list[float], recorded_stop: int | None) -> dict:
    run = _run_with_probe_pgd(values, recorded_stop)
    return _record(kind, values, recorded_stop) | {"falls": fall_replays(run)}


def test_the_patience_is_chosen_by_hits_minus_false_stops_on_held_out_accuracy_the_smallest_of_ties():
    collapse = _tuning_record("catastrophic", [0.3, 0.6, 0.1, 0.0, 0.0, 0.0], recorded_stop=2)
    dip = _tuning_record("healthy", [0.3, 0.8, 0.5, 0.85, 0.9, 0.9], recorded_stop=2)
    chosen, rows = choose_patience([collapse, dip])
    assert [(r["patience"], r["hits"], r["false_stops"]) for r in rows] == [(1, 1, 1), (2, 1, 0), (3, 1, 0)]
    assert chosen == 2
    assert choose_patience([collapse])[0] == 1  # no dip to wait out: every patience ties


def test_a_run_records_its_deciding_series_and_replays_from_it_as_from_its_history():
    run = _run_with_probe_pgd([0.5, 0.91, 0.58, 0.90, 0.2, 0.1], recorded_stop=2)
    run.histories["pgd_es_probe"].append({"epoch": 5, "step": 9, "kind": "batch", "lr_rising": False, "value": 0.0})
    series = deciding_series(run)["pgd_es_probe"]
    assert series["kind"] == "probe" and series["value"] == [0.5, 0.91, 0.58, 0.90, 0.2, 0.1]  # no batch records
    rule = dataclasses.replace(pgd_es_rule(0.2), patience=2)
    assert fall_of(replay(series_rows(series), rule)) == fall_replays(run)["pgd_es_probe"]["2"]


def test_a_fall_from_the_best_of_the_window_catches_a_slow_fall_and_the_choice_keeps_to_the_false_stop_cap():
    slow = _record("partial_collapse", [0.0, 0.5, 0.8, 0.8, 0.72, 0.64, 0.56, 0.48], stop=None)  # -0.08 a check
    dip = _record("healthy", [0.0, 0.5, 0.8, 0.65, 0.8, 0.8, 0.8, 0.8], stop=None)  # one check 0.15 down
    wong, best = pgd_es_rule(0.2), dataclasses.replace(pgd_es_rule(0.15), window=3, statistic="best")
    assert probe_fall(slow, wong) == {"stop": None, "pending": []}
    assert probe_fall(slow, best) == {"stop": 5, "pending": []}  # 0.64 < 0.8 - 0.15: hands back epoch 3 (0.8)
    assert probe_fall(slow, dataclasses.replace(best, patience=2)) == {"stop": 6, "pending": [5]}
    assert probe_fall(dip, dataclasses.replace(best, threshold=0.1))["stop"] == 3
    rule, rows = choose_probe_rule([slow, dip])
    assert len(rows) == len(probe_rules()) and rows[0]["rule"] == "a fall > 0.3 from the previous check, patience 1"
    # the first rule, in probe_rules' order, that hits without stopping the dip; some that hit stop it too
    first = next(i for i, r in enumerate(rows) if (r["hits"], r["false_stops"]) == (1, 0))
    assert rule == probe_rules()[first] and rule.window > 1  # a fall against the previous check misses it
    assert any((r["hits"], r["false_stops"]) == (1, 1) for r in rows)
    with pytest.raises(ValueError, match="no probe accuracy"):
        probe_fall(slow | {"probe": [0.1, None]}, wong)


def test_a_report_scores_the_committed_records_of_runs_no_longer_on_disk(tmp_path):
    collapse = _tuning_record("catastrophic", [0.3, 0.6, 0.1, 0.0, 0.0, 0.0], recorded_stop=2)
    healthy = _tuning_record("healthy", [0.3, 0.8, 0.5, 0.85, 0.9, 0.9], recorded_stop=2)
    collapse["run"], healthy["run"] = "x@fgsm/seed21", "x@fgsm/seed20"
    tuned = [r | {"run": r["run"].replace("seed2", "seed10")} for r in (collapse, healthy)]
    (tmp_path / "handback.json").write_text(
        json.dumps({"runs": [collapse, healthy], "patience": {"tuning_runs": tuned}})
    )
    assert committed_records(tmp_path) == ([collapse, healthy], tuned)
    assert [r["run"] for r in merged([healthy | {"fresh": True}], [collapse, healthy])] == [
        "x@fgsm/seed20",
        "x@fgsm/seed21",
    ]
    assert main(["report", "--out", str(tmp_path / "absent"), "--docs", str(tmp_path)]) == 0
    tables = json.loads((tmp_path / "handback.json").read_text())
    assert [r["run"] for r in tables["runs"]] == ["x@fgsm/seed20", "x@fgsm/seed21"]
    assert tables["probe_rule"]["label"] in (
        tables["probe_rule"]["tuning_rows"][0]["rule"],
        *(r["rule"] for r in tables["probe_rule"]["tuning_rows"]),
    )
    assert "## A fall from the best" in (tmp_path / "handback.md").read_text()
    assert main(["report", "--out", str(tmp_path / "absent"), "--docs", str(tmp_path / "none")]) == 2  # no records


def test_the_rule_replays_on_the_stops_own_recorded_check_where_a_run_kept_it():
    offline = _record("catastrophic", [0.0, 0.8, 0.7, 0.4, 0.3, 0.3], stop=None)
    series = {"kind": "probe", "epoch": list(range(6)), "step": list(range(6)), "lr_rising": [False] * 6}
    kept = offline | {"series": {"pgd_es_probe": series | {"value": [0.0, 0.8, 0.75, 0.55, 0.3, 0.3]}}}
    rule = dataclasses.replace(pgd_es_rule(0.3), window=5, statistic="best", patience=2)
    assert online_record(offline) is None and online_record(kept)["probe"][3] == 0.55
    assert probe_fall(kept, rule)["stop"] == 4 and probe_fall(online_record(kept), rule)["stop"] == 5
    assert online_agreement([offline, kept], rule) == (0, 1)  # the run without a recorded check is left out
    assert online_agreement([kept | {"probe": [0.0, 0.8, 0.75, 0.55, 0.3, 0.3]}], rule) == (1, 1)
