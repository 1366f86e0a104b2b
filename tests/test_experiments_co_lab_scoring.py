"""experiments.co_lab.scoring: rules replayed on scripted runs, hits against the oracle, false stops, the choice."""

from pathlib import Path

import pytest

from experiments.co_lab.detectors import Detector, families
from experiments.co_lab.runs import Run
from experiments.co_lab.scoring import choose, score, stop_for
from robustrain.stopping import Rule

FALL = Rule(threshold=0.2, window=1, warmup_epochs=0, wait_for_lr_peak=False, direction="fall", scale="absolute")


def _run(name: str, seed: int, pgd: list[float], fgsm: list[float], cosine: list[float]) -> Run:
    records = [
        {"epoch": e, "step": 10 * (e + 1), "kind": "probe", "lr": 0.1, "lr_rising": False, "cosine": c, "value": c}
        for e, c in enumerate(cosine)
    ]
    config = {"model": {"init_args": {"eps": 0.2, "net": {"class_path": "robustrain.models.SmallCNN"}}}}
    val = {"acc": [0.9] * len(pgd), "acc_pgd": pgd, "acc_fgsm": fgsm}
    return Run(name, seed, Path("."), config, val, {"grad_align": records}, steps_per_epoch=10)


CO = _run("co", 0, [0.2, 0.4, 0.5, 0.0, 0.0], [0.3, 0.6, 0.7, 0.95, 0.99], [0.9, 0.9, 0.85, 0.3, 0.2])
LATE = _run("late", 2, [0.2, 0.4, 0.5, 0.0, 0.0], [0.3, 0.6, 0.7, 0.95, 0.99], [0.9, 0.9, 0.85, 0.8, 0.3])
HEALTHY = _run("healthy", 4, [0.2, 0.4, 0.5, 0.5, 0.5], [0.3, 0.6, 0.7, 0.7, 0.7], [0.9, 0.6, 0.9, 0.9, 0.9])


def test_a_replayed_fall_stops_at_the_collapse_and_hands_back_the_epoch_before():
    stop = stop_for(CO, Detector("f", "grad_align", "cosine", "probe", FALL))
    assert (stop.epoch, stop.handed_back) == (3, 2)


def test_score_counts_hits_lags_and_false_stops():
    s = score(Detector("f", "grad_align", "cosine", "probe", FALL), [CO, LATE, HEALTHY])
    assert (s.hits, s.co_runs, s.false_stops, s.healthy_runs) == (1, 2, 1, 1)
    assert s.lags == [0.0, 1.0]  # CO caught at its collapse epoch, LATE one epoch after (hands back a dead model)
    assert s.handed_back == {"co/seed0": 2, "late/seed2": 3, "healthy/seed4": 0}


def test_choose_prefers_hits_within_the_false_stop_budget():
    strict = Detector("f", "grad_align", "cosine", "probe", FALL)
    loose = Detector("f", "grad_align", "cosine", "probe", Rule(0.5, 1, 0, False, "window", "fall", "absolute"))
    detector, s = choose([loose, strict], [CO, HEALTHY], max_false_stops=0)
    assert detector is loose and s.false_stops == 0 and s.hits == 1  # 0.9 -> 0.3 is a fall of 0.6 > 0.5
    detector, _ = choose([strict, loose], [CO, HEALTHY], max_false_stops=1)
    assert detector is loose  # both hit within the budget: fewer false stops win
    middle = Detector("f", "grad_align", "cosine", "probe", Rule(0.4, 1, 0, False, "window", "fall", "absolute"))
    detector, _ = choose([middle, loose], [CO, HEALTHY], max_false_stops=1)
    assert detector is middle  # the same hits, false stops and lag: the earlier wins


def test_a_detector_needs_its_history():
    with pytest.raises(ValueError, match="no aliasing_history.csv"):
        stop_for(CO, Detector("a", "aliasing", "@monitored", "probe", Rule()))


def test_every_family_starts_with_a_default_and_has_valid_rules():
    for family, detectors in families().items():
        assert detectors and all(d.family == family for d in detectors)
    assert families()["PGD-ES (Wong et al.)"][0].rule.threshold == 0.2


def test_a_collapse_whose_best_model_fails_the_strong_test_attack_is_left_out_of_the_report(tmp_path):
    import json
    import shutil

    from experiments.co_lab.evaluate import CACHE
    from experiments.co_lab.report import weak_attack_only

    runs = {}
    for name, oracle_test_pgd in (("weak", 0.0), ("strong", 0.3)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / CACHE).write_text(json.dumps({"2": {"clean": 0.9, "pgd_50x10": oracle_test_pgd}}))
        runs[name] = Run(name, 1, folder, CO.config, CO.val, CO.histories, steps_per_epoch=10)
    assert weak_attack_only(runs["weak"]) and not weak_attack_only(runs["strong"])
    shutil.rmtree(tmp_path / "weak")  # not evaluated: nothing to judge by, kept
    assert not weak_attack_only(runs["weak"]) and not weak_attack_only(HEALTHY)
