"""experiments.co_lab.outcomes: run classes, collapse and oracle epochs, and where a stop lands, on known curves."""

import math

import pytest

from experiments.co_lab.outcomes import (
    Stop,
    accuracy_at,
    classify,
    handed_back_epoch,
    lag,
    recovers,
    run_class,
    stop_of,
    within_oracle,
)


@pytest.mark.parametrize(
    "pgd,fgsm,kind,collapse,oracle",
    [
        # robust, then PGD <= 0.05 within 2 epochs with FGSM high: catastrophic, collapse at the first low epoch
        ([0.1, 0.35, 0.4, 0.2, 0.03, 0.0], [0.2, 0.5, 0.6, 0.8, 0.95, 0.99], "catastrophic", 4, 2),
        ([0.1, 0.5, 0.01, 0.0], [0.2, 0.6, 0.4, 0.9], "catastrophic", 2, 1),  # FGSM high the epoch after
        # the same fall with FGSM low as well: the model collapsed, but not by overfitting FGSM
        ([0.1, 0.5, 0.01, 0.0], [0.2, 0.6, 0.3, 0.2], "healthy", None, 1),
        # a slow decline (3 epochs from 0.4 to <= 0.05) with FGSM high: a partial collapse, not CO
        ([0.1, 0.4, 0.29, 0.2, 0.04], [0.2, 0.6, 0.7, 0.8, 0.9], "partial_collapse", None, 1),
        # a fall to 0.12 (below a third of 0.4) that stops short of 0.05: a partial collapse
        ([0.1, 0.4, 0.12, 0.12], [0.2, 0.6, 0.9, 0.9], "partial_collapse", None, 1),
        # the same fall with FGSM low: healthy, however badly it ends (gradual)
        ([0.1, 0.4, 0.29, 0.2, 0.04], [0.2, 0.6, 0.4, 0.4, 0.4], "healthy", None, 1),
        # a decline to just above a third of the best: healthy
        ([0.1, 0.6, 0.45, 0.21], [0.2, 0.6, 0.9, 0.9], "healthy", None, 1),
        ([0.1, 0.4, 0.45, 0.44], [0.2, 0.6, 0.7, 0.7], "healthy", None, 2),
        ([0.0, 0.1, 0.29, 0.0], [0.5, 0.9, 0.9, 0.99], "never_robust", None, 2),
    ],
)
def test_classify_known_curves(pgd, fgsm, kind, collapse, oracle):
    out = classify(pgd, fgsm)
    assert (out.kind, out.collapse_epoch, out.oracle_epoch) == (kind, collapse, oracle)


def test_a_healthy_run_that_ends_well_below_its_best_declined_gradually():
    assert classify([0.1, 0.4, 0.29, 0.2, 0.04], [0.2, 0.6, 0.4, 0.4, 0.4]).gradual
    assert not classify([0.1, 0.4, 0.45, 0.44], [0.2, 0.6, 0.7, 0.7]).gradual


def test_classify_refuses_curves_of_different_lengths():
    with pytest.raises(ValueError, match="as long"):
        classify([0.1, 0.2], [0.1])


def test_an_epoch_check_hands_back_the_previous_epoch_and_a_step_check_the_last_epoch_end():
    assert stop_of(None, 10) is None
    assert stop_of({"epoch": 4, "step": 50, "kind": "probe"}, 10) == Stop(4, 5.0, 3)
    assert stop_of({"epoch": 4, "step": 45, "kind": "batch"}, 10) == Stop(4, 4.5, 3)
    assert stop_of({"epoch": 0, "step": 5, "kind": "batch"}, 10).handed_back == -1


def test_lag_is_epochs_completed_from_the_end_of_the_collapse_epoch():
    assert lag(Stop(4, 5.0, 3), collapse_epoch=4) == 0  # the check that first sees the collapsed model
    assert lag(Stop(4, 4.5, 3), collapse_epoch=4) == -0.5  # inside the collapse epoch
    assert lag(Stop(6, 7.0, 5), collapse_epoch=4) == 2
    assert math.isinf(lag(None, collapse_epoch=4))


def test_hand_back_accuracy_and_the_oracle_margin():
    assert handed_back_epoch(None, 9) == 9 and handed_back_epoch(Stop(4, 5.0, 3), 9) == 3
    assert accuracy_at([0.5, 0.6], -1) == 0.0 and accuracy_at([0.5, 0.6], 1) == 0.6
    assert within_oracle(0.57, 0.60) and not within_oracle(0.569, 0.60)


def test_float32_metrics_on_the_thresholds_count():
    assert classify([0.1, 0.48, 0.0500000007], [0.2, 0.8, 0.97]).collapse_epoch == 2
    assert classify([0.1, 0.2999999821, 0.29], [0.2, 0.8, 0.8]).kind == "healthy"


HIGH = [0.9] * 10


@pytest.mark.parametrize(
    "pgd,fall,unstable",
    [
        # the ResNet run: 0.52, then 0.0, back to 0.60 two epochs later: unstable training, not CO
        ([0.06, 0.24, 0.52, 0.0, 0.1, 0.6, 0.03, 0.67, 0.7, 0.62], 3, True),
        # the same fall staying down: CO
        ([0.06, 0.24, 0.52, 0.0, 0.1, 0.1, 0.03, 0.0, 0.0, 0.0], 3, False),
        # back to 0.42 = 0.52 - 0.10 exactly, on the third epoch after the fall: unstable (the edge)
        ([0.06, 0.24, 0.52, 0.0, 0.1, 0.2, 0.42], 3, True),
        # back to 0.41: short of the best minus 0.10, still a collapse
        ([0.06, 0.24, 0.52, 0.0, 0.1, 0.2, 0.41], 3, False),
        # recovered on the fourth epoch after the fall: too late, a collapse
        ([0.06, 0.24, 0.52, 0.0, 0.1, 0.2, 0.3, 0.6], 3, False),
        # a partial collapse (0.66 -> 0.06) that climbs back to 0.64: unstable
        ([0.14, 0.56, 0.64, 0.66, 0.06, 0.16, 0.64, 0.56], 4, True),
        # a fall in the last epoch: nothing after it, a collapse
        ([0.1, 0.5, 0.6, 0.0], 3, False),
        # healthy and never robust runs do not fall
        ([0.1, 0.4, 0.45, 0.44], None, False),
        ([0.0, 0.1, 0.2, 0.0], None, False),
    ],
)
def test_a_collapse_that_climbs_back_within_three_epochs_is_unstable_training(pgd, fall, unstable):
    outcome = classify(pgd, HIGH[: len(pgd)])
    assert outcome.fall_epoch == fall
    assert recovers(outcome, pgd) is unstable
    assert run_class(outcome, pgd) == ("unstable" if unstable else outcome.kind)
