"""Aliasing early stopping (Grabinski et al. 2022, Algorithm 1) as pure functions of the measured history.

The rule, exactly as the callback runs it, for each new measurement v_n (n = 0, 1, ... in measurement order):
1. Warm-up: no decision while epoch < warmup_epochs or (wait_for_lr_peak and the lr rose since the last check).
   A non-finite v_n stops at once, also during the warm-up.
2. Reference values R: with reference="window" (the default) all finite values measured before v_n, warm-up ones
   included; with reference="restart", only those from the last warm-up measurement on.
3. m = median of the last `window` values of R (fewer if R is shorter; no decision while R is empty).
4. Stop when v_n > m * (1 + threshold).

The paper: t = 0.33 (any t in [0.30, 0.35] matched the PGD stopping point in its five FGSM runs); it gives no window
and no warm-up. With "restart" a jump in the last warm-up epoch that persists is never caught (the reference
restarts at the jumped value); with "window" it is, at the first decision. Under steady growth by a factor g per
measurement, the median of the last w values lags (w + 1) // 2 values behind, so the rule stops once
g ** ((w + 1) // 2) > 1 + t: with w = 3 and t = 0.33, at +16% per epoch (1.16 ** 2 = 1.35).

Everything here is plain Python on floats, so a logged history can be replayed with other settings
(robustrain.aliasing.replay) and give the same decisions as the callback.
"""

import math
import statistics
from collections.abc import Sequence

DEFAULT_THRESHOLD = 0.33
DEFAULT_WINDOW = 3
DEFAULT_WARMUP_EPOCHS = 5
REFERENCES = ("window", "restart")


def check_rule(threshold: float, window: int, warmup_epochs: int, reference: str = "window") -> None:
    """Raises ValueError naming the first argument of the stopping rule outside its valid range."""
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold={threshold!r} must be a finite relative increase > 0 (the paper: 0.33)")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window={window!r} must be an int >= 1 (measurements the median is taken over)")
    if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
        raise ValueError(f"warmup_epochs={warmup_epochs!r} must be an int >= 0")
    check_reference(reference)


def check_reference(reference: str) -> None:
    """Raises ValueError naming `reference` when it is not one of REFERENCES."""
    if reference not in REFERENCES:
        raise ValueError(f"reference={reference!r} is not valid; choose one of {list(REFERENCES)}")


def median_reference(history: Sequence[float], window: int) -> float:
    """Median of the last `window` finite values of the history (fewer if it is shorter); nan if there are none."""
    finite = [v for v in history if math.isfinite(v)]
    if not finite:
        return math.nan
    return statistics.median(finite[-window:])


def stop_limit(history: Sequence[float], threshold: float, window: int) -> tuple[float, float]:
    """(median of the preceding values, the value above which the rule stops = median * (1 + threshold))."""
    median = median_reference(history, window)
    return median, median * (1.0 + threshold)


def reference_history(
    values: Sequence[float], warmups: Sequence[bool], reference: str = "window", window: int | None = None
) -> list[float]:
    """The preceding values the median may look at (step 2 of the rule in the module docstring).

    Args:
        values: The values measured before the current one, oldest first.
        warmups: For each of them, whether it was measured during the warm-up.
        reference: "window": all of them; "restart": those from the last warm-up measurement on (all without one).
        window: If given, only the last `window` of them are returned (what the median uses).
    """
    if len(values) != len(warmups):
        raise ValueError(f"values and warmups must have the same length, got {len(values)} and {len(warmups)}")
    check_reference(reference)
    start = 0
    if reference == "restart":
        start = max((i for i, warm in enumerate(warmups) if warm), default=0)
    kept = list(values[start:])
    return kept[-window:] if window else kept


def in_warmup(epoch: int, warmup_epochs: int, lr_rising: bool = False, wait_for_lr_peak: bool = False) -> bool:
    """Whether no decision is taken at this (0-based) epoch: before warmup_epochs, or while the lr still rises."""
    return epoch < warmup_epochs or (wait_for_lr_peak and lr_rising)


def evaluate_stopping_criteria(
    history: Sequence[float],
    current: float,
    threshold: float = DEFAULT_THRESHOLD,
    window: int = DEFAULT_WINDOW,
    warmup: bool = False,
    name: str = "aliasing",
) -> tuple[bool, str | None]:
    """Algorithm 1's decision for one new measurement.

    Args:
        history: The values the median may look at, oldest first (see reference_history).
        current: The new value.
        threshold: Relative increase over the median that stops (0.33 = 33%).
        window: Number of preceding values the median is taken over.
        warmup: True while no decision may be taken (see in_warmup); non-finite values stop even then.
        name: Name of the monitored value, for the reason.

    Returns:
        (should_stop, reason); the reason is None when nothing noteworthy happened.
    """
    if not math.isfinite(current):
        return True, f"{name} = {current} is not finite"
    if warmup or not any(math.isfinite(v) for v in history):
        return False, None
    median, limit = stop_limit(history, threshold, window)
    if current > limit:
        rise = f"{current / median - 1.0:+.1%}" if median > 0 else "an infinite factor"
        return True, (
            f"{name} = {current:.4g} exceeds the median {median:.4g} of the last {min(window, len(history))} "
            f"measurements by {rise} > {threshold:.0%} (limit {limit:.4g})"
        )
    return False, None
