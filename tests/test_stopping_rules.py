"""The stop rules (robustrain.stopping.rules) on scripted values: Algorithm 1 (the aliasing stop's median filter),
Wong et al.'s PGD drop, and the rise / fall, relative / absolute limits that every detector decides with."""

import dataclasses
import math
import random
import statistics

import pytest

from robustrain.stopping import Rule, decide, median_reference, pgd_es_rule, reference_history
from robustrain.stopping.replay import first_stop, replay


def _records(values: list[float], lr_rising: list[bool] | None = None) -> list[dict]:
    rising = lr_rising or [False] * len(values)
    return [
        {"epoch": e, "step": 10 * (e + 1), "kind": "probe", "lr_rising": r, "value": v}
        for e, (v, r) in enumerate(zip(values, rising))
    ]


def _stop_epoch(values: list[float], lr_rising: list[bool] | None = None, **rule) -> int | None:
    stop = first_stop(replay(_records(values, lr_rising), Rule(**rule)))
    return None if stop is None else stop["epoch"]


def _decide(values: list[float], current: float, rule: Rule, warmup: bool = False):
    return decide(values, [False] * len(values), current, warmup, rule)


def test_stops_when_aliasing_jumps_33_percent() -> None:
    flat = [1.0, 1.02, 0.98, 1.01, 1.0, 0.99]
    assert _stop_epoch([*flat, 1.34, 2.0], threshold=0.33, window=3, warmup_epochs=3) == 6


def test_no_stop_when_the_jump_stays_under_the_threshold() -> None:
    flat = [1.0, 1.02, 0.98, 1.01, 1.0, 0.99]
    assert _stop_epoch([*flat, 1.32, 1.3, 1.31], threshold=0.33, window=3, warmup_epochs=3) is None


def test_no_stop_during_warmup_even_for_a_large_jump() -> None:
    values = [0.3, 0.6, 0.9, 0.95, 1.0]  # +100% at epoch 1, +50% at epoch 2
    assert _stop_epoch(values, threshold=0.33, window=3, warmup_epochs=5) is None
    assert _stop_epoch(values, threshold=0.33, window=3, warmup_epochs=1) == 1


def test_no_decision_while_the_learning_rate_rises() -> None:
    values = [0.3, 0.3, 0.3, 0.3, 0.6, 0.6, 0.6, 1.2]
    rising = [True] * 5 + [False] * 3
    # the first decision (epoch 5) compares 0.6 with the median 0.3 of epochs 2-4 ...
    assert _stop_epoch(values, rising, warmup_epochs=0, wait_for_lr_peak=True) == 5
    # ... unless the reference restarts at the last warm-up value (0.6): then only the jump at epoch 7 stops
    assert _stop_epoch(values, rising, warmup_epochs=0, wait_for_lr_peak=True, reference="restart") == 7
    assert _stop_epoch(values, rising, warmup_epochs=0, wait_for_lr_peak=False) == 4


def test_median_filter_ignores_a_single_outlier_in_the_window() -> None:
    # the outlier at epoch 4 stops (it is a jump), but it does not lift the reference of later values
    values = [1.0, 1.0, 1.0, 1.0, 5.0, 1.0, 1.3]
    decisions = replay(_records(values), Rule(threshold=0.33, window=3, warmup_epochs=0))
    assert [d["should_stop"] for d in decisions] == [False, False, False, False, True, False, False]
    assert decisions[6]["median"] == 1.0  # median of the last 3: (1.0, 5.0, 1.0)


def test_window_sets_how_far_back_the_median_looks() -> None:
    # steady growth of 12% per measurement: the median of the last w values lags (w + 1) / 2 steps behind
    values = [1.12**k for k in range(10)]
    assert _stop_epoch(values, threshold=0.33, window=1, warmup_epochs=3) is None  # 1.12 < 1.33
    assert _stop_epoch(values, threshold=0.33, window=3, warmup_epochs=3) is None  # 1.12^2 = 1.25
    # 1.12^3 = 1.40 once 5 values precede the new one (epoch 5); at epoch 4 the median of 4 values lags 1.5 steps
    assert _stop_epoch(values, threshold=0.33, window=5, warmup_epochs=3) == 5
    assert _stop_epoch(values, threshold=0.33, window=5, warmup_epochs=3, reference="restart") == 7


def test_reference_restart_is_an_option() -> None:
    # "restart": fast growth during the warm-up does not lift the first decisions after it into a stop ...
    values = [0.3, 0.6, 0.9, 0.95, 1.0]
    assert reference_history(values[:3], [True, True, True], "restart") == [0.9]
    assert reference_history(values[:3], [True, True, True], "window") == [0.3, 0.6, 0.9]
    assert reference_history([1.0, 2.0, 3.0], [False, False, False], "restart") == [1.0, 2.0, 3.0]
    assert reference_history([1.0, 2.0, 3.0], [False, False, False], "window", window=2) == [2.0, 3.0]
    assert _stop_epoch(values, threshold=0.33, window=3, warmup_epochs=3, reference="restart") is None
    # ... while "window" compares 0.95 with the median 0.6 of (0.3, 0.6, 0.9): +58%
    assert _stop_epoch(values, threshold=0.33, window=3, warmup_epochs=3, reference="window") == 3


def test_a_step_in_the_last_warmup_epoch_that_persists_is_caught_by_window_and_missed_by_restart() -> None:
    values = [1.0, 1.0, 1.0, 1.4, 1.4, 1.4, 1.4, 1.4]  # +40% at epoch 3, the last of 4 warm-up epochs
    assert _stop_epoch(values, threshold=0.33, window=3, warmup_epochs=4, reference="window") == 4
    assert _stop_epoch(values, threshold=0.33, window=3, warmup_epochs=4, reference="restart") is None


@pytest.mark.parametrize("reference", ["window", "restart"])
def test_steady_growth_of_16_percent_per_epoch(reference: str) -> None:
    """The median of the last 3 values lags 2 behind: 1.16 ** 2 = 1.346 > 1.33 stops at the first decision that
    has 3 reference values; a window of 1 compares with the previous value (1.16 < 1.33) and never stops."""
    values = [1.16**k for k in range(12)]
    first = 4 if reference == "window" else 6  # "restart": needs 2 values after the warm-up's last one
    assert _stop_epoch(values, threshold=0.33, window=3, warmup_epochs=4, reference=reference) == first
    assert _stop_epoch(values, threshold=0.33, window=1, warmup_epochs=4, reference=reference) is None
    assert _stop_epoch(values, threshold=0.36, window=3, warmup_epochs=4, reference=reference) is None


def test_non_finite_value_stops_with_a_reason_even_during_warmup() -> None:
    decision = _decide([1.0, 1.0], math.nan, Rule(), warmup=True)
    assert decision.should_stop and "not finite" in decision.reason
    assert _stop_epoch([1.0, 1.0, math.inf], warmup_epochs=5) == 2


def test_first_measurement_never_stops() -> None:
    decision = _decide([], 100.0, Rule())
    assert (decision.should_stop, decision.reason) == (False, None)
    assert math.isnan(decision.median) and math.isnan(decision.limit)


def test_median_reference_and_limit_use_the_last_finite_values() -> None:
    assert median_reference([9.0, 1.0, math.nan, 2.0, 3.0], window=3) == 2.0
    assert math.isnan(median_reference([], window=3))
    decision = _decide([1.0, 2.0, 4.0], 0.0, Rule(threshold=0.5, window=2))
    assert (decision.median, decision.limit) == (3.0, 4.5)


def test_in_warmup_counts_epochs_and_optionally_the_lr_ramp() -> None:
    assert Rule(warmup_epochs=3).in_warmup(2) and not Rule(warmup_epochs=3).in_warmup(3)
    assert Rule(warmup_epochs=3, wait_for_lr_peak=True).in_warmup(5, lr_rising=True)
    assert not Rule(warmup_epochs=3, wait_for_lr_peak=False).in_warmup(5, lr_rising=True)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": math.nan}, "threshold"),
        ({"window": 0}, "window"),
        ({"window": 2.5}, "window"),
        ({"warmup_epochs": -1}, "warmup_epochs"),
        ({"reference": "last"}, "reference"),
        ({"direction": "up"}, "direction"),
        ({"scale": "log"}, "scale"),
        ({"patience": 0}, "patience"),
        ({"statistic": "mean"}, "statistic"),
    ],
)
def test_invalid_rule_raises_naming_the_parameter(kwargs: dict, name: str) -> None:
    args = {"threshold": 0.33, "window": 3, "warmup_epochs": 3} | kwargs
    with pytest.raises(ValueError, match=name):
        Rule(**args)


def _pgd_stop_epoch(accuracies: list[float], max_drop: float = 0.2) -> int | None:
    rule, values = pgd_es_rule(max_drop), []
    for epoch, acc in enumerate(accuracies):
        if _decide(values, acc, rule).should_stop:
            return epoch
        values.append(acc)
    return None


def test_pgd_es_stops_when_pgd_accuracy_falls_more_than_0_2() -> None:
    assert _pgd_stop_epoch([0.1, 0.3, 0.45, 0.5, 0.29, 0.0]) == 4  # -0.21
    assert _pgd_stop_epoch([0.1, 0.3, 0.45, 0.5, 0.31, 0.12]) is None  # -0.19 twice: a slow slide is not caught
    assert _pgd_stop_epoch([0.5, 0.0]) == 1


def test_pgd_es_first_check_never_stops_and_non_finite_stops() -> None:
    first = _decide([], 0.0, pgd_es_rule())
    assert (first.should_stop, first.reason) == (False, None)
    decision = _decide([0.5], float("nan"), pgd_es_rule())
    assert decision.should_stop and "not finite" in decision.reason


def test_pgd_es_compares_with_the_previous_check_and_records_its_limit() -> None:
    decision = _decide([0.3, 0.55], 0.2, pgd_es_rule(0.2))
    assert decision.should_stop and "fell from 0.550 to 0.200" in decision.reason
    assert decision.median == 0.55 and decision.limit == pytest.approx(0.35)


@pytest.mark.parametrize("max_drop", [0.0, 1.5, math.nan])
def test_pgd_es_rule_refuses_a_drop_outside_0_1(max_drop: float) -> None:
    with pytest.raises(ValueError, match="max_drop"):
        pgd_es_rule(max_drop)


@pytest.mark.parametrize(
    ("direction", "scale", "limit", "stops_at", "goes_on_at"),
    [
        ("rise", "relative", 1.2, 1.21, 1.2),
        ("fall", "relative", 0.8, 0.79, 0.8),
        ("rise", "absolute", 1.2, 1.21, 1.19),
        ("fall", "absolute", 0.8, 0.79, 0.81),
    ],
)
def test_a_rule_stops_when_the_value_goes_past_its_limit_in_its_direction(
    direction: str, scale: str, limit: float, stops_at: float, goes_on_at: float
) -> None:
    """The limit of a median m = 1 and threshold 0.2: m * (1 +- 0.2) (relative) or m +- 0.2 (absolute)."""
    rule = Rule(threshold=0.2, window=3, warmup_epochs=0, direction=direction, scale=scale)
    assert _decide([1.0, 1.0, 1.0], stops_at, rule).limit == pytest.approx(limit)
    assert _decide([1.0, 1.0, 1.0], stops_at, rule).should_stop
    assert not _decide([1.0, 1.0, 1.0], goes_on_at, rule).should_stop
    assert not _decide([1.0, 1.0, 1.0], stops_at, rule, warmup=True).should_stop


def test_a_falling_signal_never_stops_a_rising_rule_and_the_reason_says_which_way() -> None:
    rise, fall = Rule(warmup_epochs=0), Rule(warmup_epochs=0, direction="fall")
    assert not _decide([1.0, 1.0, 1.0], 0.1, rise).should_stop
    decision = _decide([1.0, 1.0, 1.0], 0.1, fall)
    assert decision.should_stop and "falls below the median 1 of the last 3 measurements by -90.0%" in decision.reason


# --- patience: a fall that lasts -------------------------------------------------------------------------------------
def _pgd_es(patience: int) -> dict:
    return dataclasses.asdict(pgd_es_rule(0.2)) | {"patience": patience}


def test_patience_2_waits_for_the_fall_to_last_and_ignores_a_dip_that_climbs_back() -> None:
    fall = [0.57, 0.62, 0.23, 0.06, 0.78]  # a ResNet run's held-out PGD: 0.62 -> 0.23 -> 0.06
    assert _stop_epoch(fall, **_pgd_es(1)) == 2
    assert _stop_epoch(fall, **_pgd_es(2)) == 3  # both 0.23 and 0.06 lie below 0.62 - 0.2
    assert _stop_epoch(fall, **_pgd_es(3)) is None  # 0.78 climbs back
    dip = [0.55, 0.79, 0.86, 0.91, 0.58, 0.90, 0.96]  # a healthy run's dip
    assert _stop_epoch(dip, **_pgd_es(1)) == 4
    assert _stop_epoch(dip, **_pgd_es(2)) is None


def test_a_pending_fall_is_past_its_limit_without_stopping_and_the_stop_names_its_length() -> None:
    rule = Rule(**_pgd_es(2))
    pending = _decide([0.91], 0.58, rule)
    assert (pending.should_stop, pending.past, pending.median) == (False, True, 0.91)
    stop = _decide([0.62, 0.23], 0.06, rule)
    assert stop.should_stop and stop.past and stop.median == 0.62  # the limit of the check before the fall
    assert stop.limit == pytest.approx(0.42) and "for 2 checks in a row" in stop.reason
    calm = _decide([0.62], 0.61, rule)
    assert not calm.past and not calm.should_stop


def _brute_force_stop(
    values: list[float], patience: int, window: int, threshold: float, statistic: str = "median"
) -> int | None:
    """The first index n where values[n - p + 1 .. n] all fell more than `threshold` below the median (or the
    highest) of the `window` values before the first of them (an absolute fall; no warm-up)."""
    reference = statistics.median if statistic == "median" else max
    for n in range(len(values)):
        first = n - patience + 1
        if first < 1:
            continue
        top = reference(values[max(0, first - window) : first])
        if all(v - top < -threshold for v in values[first : n + 1]):
            return n
    return None


@pytest.mark.parametrize("statistic", ["median", "best"])
@pytest.mark.parametrize("patience", [1, 2, 3])
@pytest.mark.parametrize("window", [1, 3, 5])
def test_patience_matches_a_brute_force_search_on_random_walks(patience: int, window: int, statistic: str) -> None:
    rng = random.Random(patience * 10 + window)
    for _ in range(200):
        values = [rng.choice([0.0, 0.25, 0.5, 0.75, 1.0]) for _ in range(rng.randint(1, 9))]
        expected = _brute_force_stop(values, patience, window, 0.3, statistic)
        rule = {"threshold": 0.3, "window": window, "warmup_epochs": 0, "wait_for_lr_peak": False}
        rule |= {"direction": "fall", "scale": "absolute", "patience": patience, "statistic": statistic}
        assert _stop_epoch(values, **rule) == expected, values


def test_the_best_of_the_window_catches_a_slow_fall_that_the_median_and_wong_miss() -> None:
    slow = [0.79, 0.79, 0.73, 0.68, 0.42, 0.38, 0.20]  # an N-FGSM run's test PGD, losing 0-26 points a check
    rule = {"threshold": 0.2, "warmup_epochs": 0, "wait_for_lr_peak": False, "direction": "fall", "scale": "absolute"}
    assert _stop_epoch(slow, window=1, **rule) == 4  # 0.68 -> 0.42: Wong's rule sees the one big step
    assert _stop_epoch(slow[:4] + [0.55, 0.45, 0.36], window=1, **rule) is None  # spread over three checks: never
    assert _stop_epoch(slow[:4] + [0.55, 0.45, 0.36], window=3, **rule) == 5  # 0.45 < median 0.68 - 0.2
    assert _stop_epoch(slow[:4] + [0.55, 0.45, 0.36], window=3, statistic="best", **rule) == 4  # 0.55 < 0.79 - 0.2
    decision = _decide([0.79, 0.73, 0.68], 0.55, Rule(window=3, statistic="best", **rule))
    assert decision.median == 0.79 and "fell from 0.790 (the highest of the last 3 measurements)" in decision.reason
    rise = Rule(threshold=0.5, window=3, warmup_epochs=0, statistic="best")  # a rise from the lowest: 1.0 * 1.5
    assert _decide([1.0, 2.0, 3.0], 1.6, rise).should_stop and not _decide([1.0, 2.0, 3.0], 1.5, rise).past


def test_a_fall_that_begins_in_the_warm_up_does_not_count_towards_patience() -> None:
    values = [0.9, 0.9, 0.1, 0.1, 0.1]
    rule = {"threshold": 0.2, "window": 1, "wait_for_lr_peak": False, "direction": "fall", "scale": "absolute"}
    assert _stop_epoch(values, warmup_epochs=3, patience=2, **rule) is None  # 0.1 at 2 is a warm-up value
    assert _stop_epoch(values, warmup_epochs=2, patience=2, **rule) == 3
