"""Aliasing early stopping (Grabinski et al. 2022, Algorithm 1) as pure functions of the measured history.

Each new aliasing value is compared with the median of the `window` values measured before it; a stop is predicted
when it exceeds that median by more than the relative threshold t (the paper: t = 0.33, any t in [0.30, 0.35]
matched the PGD stopping point in its five FGSM runs). The paper gives no window and no warm-up. Aliasing also rises
while a healthy model learns, fastest early in training and while a cyclic learning rate ramps up, so no decision is
taken during a warm-up: the first `warmup_epochs` epochs and, optionally, while the learning rate is still rising;
the median's window then restarts from the last warm-up value (reference_history).

Everything here is plain Python on floats, so a logged history can be replayed with other settings
(robustrain.aliasing.replay) and give the same decisions as the callback.
"""

import math
import statistics
from collections.abc import Sequence

DEFAULT_THRESHOLD = 0.33
DEFAULT_WINDOW = 3
DEFAULT_WARMUP_EPOCHS = 5


def check_rule(threshold: float, window: int, warmup_epochs: int) -> None:
    """Raises ValueError naming the first argument of the stopping rule outside its valid range."""
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold={threshold!r} must be a finite relative increase > 0 (the paper: 0.33)")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window={window!r} must be an int >= 1 (measurements the median is taken over)")
    if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
        raise ValueError(f"warmup_epochs={warmup_epochs!r} must be an int >= 0")


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


def reference_history(values: Sequence[float], warmups: Sequence[bool]) -> list[float]:
    """The preceding values the median may look at: those from the last warm-up measurement on (all without one).

    A healthy run's aliasing rises fastest during the warm-up; a median over those values would lag far behind the
    first values after it and stop there falsely. So the reference restarts at the end of each warm-up: the first
    decision compares with the last warm-up value, later ones with the median of up to `window` values since.

    Args:
        values: The values measured before the current one, oldest first.
        warmups: For each of them, whether it was measured during the warm-up.
    """
    if len(values) != len(warmups):
        raise ValueError(f"values and warmups must have the same length, got {len(values)} and {len(warmups)}")
    last = max((i for i, warm in enumerate(warmups) if warm), default=0)
    return list(values[last:])


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
