"""robustrain.core.validation: every check names the parameter and the value in one message style."""

import math

import pytest

from robustrain.core.validation import (
    check_choice,
    check_file_name,
    check_in_range,
    check_int,
    check_positive_int,
    check_that,
)


@pytest.mark.parametrize("bad", [0, -3, 2.0, True, "4"])
def test_positive_int_refuses_non_positive_and_non_ints(bad):
    with pytest.raises(ValueError, match=r"^k=.* is not valid: it must be an integer >= 1$"):
        check_positive_int("k", bad)


def test_int_with_a_minimum_of_zero_takes_zero():
    check_int("shift_pairs", 0, 0)
    with pytest.raises(ValueError, match=r"shift_pairs=-1 is not valid: it must be an integer >= 0"):
        check_int("shift_pairs", -1, 0)


@pytest.mark.parametrize(
    ("value", "kwargs", "message"),
    [
        (0.0, {"low": 0.0, "high": 1.0, "low_open": True}, r"max_drop=0.0 is not valid: it must be in \(0, 1\]"),
        (1.0, {"low": 0.0, "high": 1.0, "high_open": True}, r"max_drop=1.0 is not valid: it must be in \[0, 1\)"),
        (math.nan, {"low": 0.0}, r"max_drop=nan is not valid: it must be a finite number >= 0"),
        (-1.0, {"low": 0.0, "note": "(a fraction)"}, r"it must be a finite number >= 0 \(a fraction\)$"),
    ],
)
def test_in_range_says_the_interval(value, kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_in_range("max_drop", value, **kwargs)


def test_in_range_takes_the_ends_it_includes():
    check_in_range("x", 0.0, 0.0, 1.0)
    check_in_range("x", 1, 0.0, 1.0)


def test_choice_lists_the_valid_values():
    check_choice("source", "probe", ("first_batch", "probe"))
    with pytest.raises(ValueError, match=r"source='x' is not valid: it must be one of \['first_batch', 'probe'\]"):
        check_choice("source", "x", ("first_batch", "probe"))


def test_int_with_a_maximum_says_the_interval():
    check_int("n", 5, 1, 5)
    with pytest.raises(ValueError, match=r"^n=6 is not valid: it must be an integer in 1..5 \(probe images\)$"):
        check_int("n", 6, 1, 5, note="(probe images)")


def test_check_that_states_the_requirement():
    check_that(True, "depth", 28, "6n + 4")
    with pytest.raises(ValueError, match=r"^depth=27 is not valid: it must be 6n \+ 4$"):
        check_that(False, "depth", 27, "6n + 4")


@pytest.mark.parametrize("bad", ["", "a/b.json", "../r.json", "report.txt", None])
def test_file_name_must_be_plain_and_end_in_the_suffix(bad):
    check_file_name("report_name", "robustness.json", ".json")
    with pytest.raises(ValueError, match=r"report_name=.* is not valid: it must be a plain file name ending in \.json"):
        check_file_name("report_name", bad, ".json")
