"""experiments/stop_study: the study's scoring on scripted runs (classification, hand-back epochs, replayed stops, rule
selection) and its end-to-end run."""

import math

import pytest

from experiments.stop_study.study import (
    PAPER_RULE,
    classify,
    handed_back,
    pgd_es_stop,
    score_rule,
    select_rule,
)


def _run(acc_pgd, aliasing, pgd_es=None, kind=None):
    records = [
        {"epoch": e, "step": 10 * (e + 1), "kind": "probe", "lr_rising": False, "mean": v, "relative/mean": v / (1 + e)}
        for e, v in enumerate(aliasing)
    ]
    es = [{"epoch": e, "acc": a} for e, a in enumerate(pgd_es or acc_pgd)]
    run = {"val_acc_pgd": acc_pgd, "aliasing": records, "pgd_es": es, "series": "mean"}
    run["kind"] = kind or classify(acc_pgd)
    return run


def test_classify_separates_catastrophic_gradual_healthy_and_never_robust():
    assert classify([0.1, 0.5, 0.6, 0.6, 0.05, 0.04]) == "catastrophic"  # -0.55 in one epoch
    assert classify([0.1, 0.5, 0.6, 0.55, 0.5, 0.45, 0.42]) == "gradual"  # -0.18 over four epochs
    assert classify([0.1, 0.5, 0.6, 0.58, 0.55]) == "healthy"  # -0.05 <= 0.10
    assert classify([0.1, 0.2, 0.1, 0.0]) == "never_robust"  # best 0.2 < 0.25


def test_handed_back_is_the_epoch_before_the_stop_or_the_last():
    assert handed_back(5, 29) == 4
    assert handed_back(0, 29) == -1  # the weights training started from
    assert handed_back(None, 29) == 29


def test_pgd_es_replays_wongs_rule_on_the_recorded_accuracies():
    run = _run([0.1, 0.5, 0.6, 0.3, 0.2], [1.0] * 5)
    assert pgd_es_stop(run) == 3  # 0.6 -> 0.3 is a fall of 0.3 > 0.2
    assert pgd_es_stop(_run([0.1, 0.5, 0.6, 0.45, 0.3], [1.0] * 5)) is None


def test_score_counts_hits_on_overfitting_runs_and_false_stops_on_healthy_ones():
    rule = dict(PAPER_RULE, warmup_epochs=2, wait_for_lr_peak=False)
    # aliasing jumps at epoch 4, when PGD accuracy collapses: hand back epoch 3 (the oracle)
    catastrophic = _run([0.1, 0.4, 0.5, 0.6, 0.1, 0.05], [1.0, 1.0, 1.0, 1.0, 2.0, 2.0])
    healthy_quiet = _run([0.1, 0.4, 0.5, 0.6, 0.6, 0.61], [1.0] * 6)
    healthy_jump = _run([0.1, 0.4, 0.5, 0.6, 0.6, 0.61], [1.0, 1.0, 1.0, 1.0, 2.0, 2.0])
    never = _run([0.0, 0.05, 0.1, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0, 2.0, 2.0])
    score = score_rule([catastrophic, healthy_quiet, healthy_jump, never], rule)
    assert score == {"hits": 1, "overfit": 1, "false_stops": 1, "healthy": 2, "mean_abs_distance": 0}


def test_select_rule_prefers_hits_without_false_stops():
    catastrophic = _run([0.1, 0.4, 0.5, 0.6, 0.1, 0.05], [1.0, 1.0, 1.0, 1.0, 1.3, 1.3])  # +30%
    healthy = _run([0.1, 0.4, 0.5, 0.6, 0.6, 0.61], [1.0, 1.0, 1.0, 1.0, 1.1, 1.1])  # +10%
    grid = {
        "measure": ("absolute",),
        "threshold": (0.05, 0.2, 0.5),
        "window": (3,),
        "warmup_epochs": (2,),
        "wait_for_lr_peak": (False,),
        "reference": ("window",),
    }
    best, scored = select_rule([catastrophic, healthy], grid)
    assert best["threshold"] == 0.2  # 0.05 stops the healthy run too, 0.5 misses the collapse
    assert len(scored) == 3 and not math.isnan(scored[0]["mean_abs_distance"])


@pytest.mark.slow  # ~100 s on 2 CPU cores
def test_the_study_runs_end_to_end_on_real_digits(tmp_path, monkeypatch):
    """train -> select -> evaluate -> report on two 2-epoch runs of a tiny setting (real MNIST5k digits)."""
    import dataclasses
    import json

    import experiments.stop_study.study as study
    from experiments.stop_study import report

    tiny = dataclasses.replace(study.SETTINGS["unclipped_warmup"], name="tiny", epochs=2, seeds=(0, 2))
    monkeypatch.setitem(study.SETTINGS, "tiny", tiny)
    monkeypatch.setattr(study, "RULE_GRID", dict(study.RULE_GRID, threshold=(0.33,), window=(3,), warmup_epochs=(0,)))
    monkeypatch.setattr(report, "RULE_GRID", study.RULE_GRID)
    monkeypatch.setattr(
        report,
        "measure_cost",
        lambda: {
            "threads": 1,
            "repeats": 0,
            "aliasing_ms": 1.0,
            "pgd_es_ms": 2.0,
            "ratio_median": 0.5,
            "ratio_min": 0.5,
            "ratio_max": 0.5,
        },
    )
    out, docs = tmp_path / "out", tmp_path / "docs"
    for seed in tiny.seeds:
        run = study.train_run(tiny, seed, out)
        assert (run / "epoch01.pt").exists() and (run / "aliasing_history.csv").exists()
    runs = report.load_runs(out)
    assert [r["half"] for r in runs] == ["tune", "report"] and all(len(r["val_acc_pgd"]) == 2 for r in runs)
    for run in runs:  # a 2-epoch run never becomes robust; score it as healthy so that it is evaluated
        run["kind"] = "healthy"
    monkeypatch.setattr(report, "load_runs", lambda _: runs)
    selection = report.select(out)
    assert set(selection["rules"]) == {"absolute", "relative", "paper"}
    report.evaluate(out, n_images=10)
    evals = json.loads((out / "runs" / "tiny_seed0" / "evals.json").read_text())
    assert all({"clean", "pgd_50x10", "autoattack"} <= set(v) for v in evals.values())
    report.write(out, docs)
    assert (docs / "stop_study.md").read_text().count("| tiny |") == 2
    assert (docs / "distance_vs_threshold.png").exists() and (docs / "curves.png").exists()
