"""Argument checks with one message style: `name=value is not valid: it must be ...` (ValueError, raised early)."""

import math
import numbers
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def _fail(name: str, value: Any, requirement: str) -> None:
    raise ValueError(f"{name}={value!r} is not valid: it must be {requirement}")


def check_int(name: str, value: Any, minimum: int = 1, maximum: int | None = None, note: str = "") -> None:
    """An int (not a bool) >= minimum (and <= maximum if given); `minimum=1` is the positive-int check."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        ok = False
    else:
        ok = maximum is None or value <= maximum
    if not ok:
        requirement = f"an integer >= {minimum}" if maximum is None else f"an integer in {minimum}..{maximum}"
        _fail(name, value, requirement + (f" {note}" if note else ""))


def check_positive_int(name: str, value: Any) -> None:
    """An int (not a bool) >= 1."""
    check_int(name, value, 1)


def check_in_range(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    note: str = "",
) -> None:
    """A finite real number within [low, high] (either end open or absent); `note` says what the value means."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if ok:
        return
    if low is not None and high is not None:
        requirement = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        requirement = f"a finite number {'>' if low_open else '>='} {low:g}"
    elif high is not None:
        requirement = f"a finite number {'<' if high_open else '<='} {high:g}"
    else:
        requirement = "a finite number"
    _fail(name, value, requirement + (f" {note}" if note else ""))


def check_that(condition: bool, name: str, value: Any, requirement: str) -> None:
    """Any other requirement: raises unless `condition`, saying what the value must be (`requirement`)."""
    if not condition:
        _fail(name, value, requirement)


def check_file_name(name: str, value: Any, suffix: str = "") -> None:
    """A plain file name (no folder), ending in `suffix` if one is given: a report written into the run's folder."""
    ok = isinstance(value, str) and bool(value) and Path(value).name == value and value.endswith(suffix)
    check_that(ok, name, value, "a plain file name" + (f" ending in {suffix}" if suffix else "") + " (no folder)")


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    """One of `choices`."""
    choices = list(choices)
    if value not in choices:
        _fail(name, value, f"one of {choices}")
