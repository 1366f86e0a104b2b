"""Tests of Algorithm 1 (median-filter aliasing early stopping) and its offline replay, on scripted values."""

import math

import pytest

from robustrain.aliasing.replay import first_stop, main, replay
from robustrain.aliasing.stopping import (
    check_rule,
    evaluate_stopping_criteria,
    in_warmup,
    median_reference,
    reference_history,
    stop_limit,
)
from robustrain.callbacks.history import read_history_csv, write_history_csv


def _records(values: list[float], lr_rising: list[bool] | None = None) -> list[dict]:
    rising = lr_rising or [False] * len(values)
    return [
        {"epoch": e, "step": 10 * (e + 1), "kind": "probe", "lr_rising": r, "value": v}
        for e, (v, r) in enumerate(zip(values, rising))
    ]


def _stop_epoch(values: list[float], lr_rising: list[bool] | None = None, **rule) -> int | None:
    stop = first_stop(replay(_records(values, lr_rising), **rule))
    return None if stop is None else stop["epoch"]


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
    decisions = replay(_records(values), threshold=0.33, window=3, warmup_epochs=0)
    assert [d["should_stop"] for d in decisions] == [False, False, False, False, True, False, False]
    assert decisions[6]["filtered"] == 1.0  # median of the last 3: (1.0, 5.0, 1.0)


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
    should_stop, reason = evaluate_stopping_criteria([1.0, 1.0], math.nan, warmup=True)
    assert should_stop and "not finite" in reason
    assert _stop_epoch([1.0, 1.0, math.inf], warmup_epochs=5) == 2


def test_first_measurement_never_stops() -> None:
    assert evaluate_stopping_criteria([], 100.0) == (False, None)


def test_median_reference_and_limit_use_the_last_finite_values() -> None:
    assert median_reference([9.0, 1.0, math.nan, 2.0, 3.0], window=3) == 2.0
    assert math.isnan(median_reference([], window=3))
    median, limit = stop_limit([1.0, 2.0, 4.0], threshold=0.5, window=2)
    assert (median, limit) == (3.0, 4.5)


def test_in_warmup_counts_epochs_and_optionally_the_lr_ramp() -> None:
    assert in_warmup(2, warmup_epochs=3) and not in_warmup(3, warmup_epochs=3)
    assert in_warmup(5, 3, lr_rising=True, wait_for_lr_peak=True)
    assert not in_warmup(5, 3, lr_rising=True, wait_for_lr_peak=False)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": math.nan}, "threshold"),
        ({"window": 0}, "window"),
        ({"window": 2.5}, "window"),
        ({"warmup_epochs": -1}, "warmup_epochs"),
        ({"reference": "last"}, "reference"),
    ],
)
def test_invalid_rule_raises_naming_the_parameter(kwargs: dict, name: str) -> None:
    args = {"threshold": 0.33, "window": 3, "warmup_epochs": 3} | kwargs
    with pytest.raises(ValueError, match=name):
        check_rule(**args)


def test_replay_cli_reads_a_history_csv_and_reports_the_stop(tmp_path, capsys) -> None:
    path = write_history_csv(_records([1.0, 1.0, 1.0, 1.0, 1.5]), tmp_path / "aliasing_history.csv")
    assert read_history_csv(path)[4] == _records([1.0, 1.0, 1.0, 1.0, 1.5])[4]
    assert main([str(path), "--threshold", "0.3", "--window", "3", "--warmup-epochs", "2"]) == 0
    assert "stop at epoch 4" in capsys.readouterr().out
    main([str(path), "--threshold", "0.6"])
    assert "no stop" in capsys.readouterr().out
