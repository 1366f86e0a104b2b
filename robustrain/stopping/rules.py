"""The early-stopping rules as pure functions of a recorded history: one entry point, `decide`, for every detector.

A rule compares each new value v_n of a monitored signal with a reference, the median of the values before it:
1. Warm-up: no decision while epoch < warmup_epochs or (wait_for_lr_peak and the lr rose since the last check),
   see `Rule.in_warmup`. A non-finite v_n stops at once, also during the warm-up.
2. Reference values R (`reference_history`): with reference="window" (the default) all values measured before v_n,
   warm-up ones included; with reference="restart", only those from the last warm-up measurement on.
3. m = median of the last `window` finite values of R (`median_reference`; fewer if there are fewer; no decision
   while there is none); with statistic="best", their best instead: the highest for direction="fall", the lowest
   for "rise" (`Rule.reference_value`), so that a fall is measured from the top of the window, and one spread over
   several checks adds up.
4. Limit and stop: with direction="rise" the rule stops when v_n rises above the limit, with "fall" when it falls
   below it. scale="relative": limit = m * (1 + threshold) (rise) or m * (1 - threshold) (fall); scale="absolute":
   limit = m + threshold or m - threshold.
5. Patience: with patience = p > 1 the rule stops only when the last p values (v_n and the p - 1 before it, none of
   them measured in the warm-up) all lie past the limit set by the median of the values before the first of them: a
   fall that lasts p checks, not a dip that climbs back. A value past a limit that has not lasted p checks yet is
   `Decision.past` (pending). patience = 1 is steps 1-4 alone.

The aliasing stop (Grabinski et al. 2022, Algorithm 1) is the default `Rule()`: a relative rise of t = 0.33 (any t in
[0.30, 0.35] matched the PGD stopping point in the paper's five FGSM runs; it gives no window and no warm-up). With
"restart" a jump in the last warm-up epoch that persists is never caught (the reference restarts at the jumped
value); with "window" it is, at the first decision. Under steady growth by a factor g per measurement, the median of
the last w values lags (w + 1) // 2 values behind, so the rule stops once g ** ((w + 1) // 2) > 1 + t: with w = 3 and
t = 0.33, at +16% per epoch (1.16 ** 2 = 1.35).

Wong, Rice & Kolter (2020)'s PGD early stop is `pgd_es_rule(max_drop)`: an absolute fall of more than max_drop
against the previous check (window 1, no warm-up; the first check never stops). With patience 2 the fall is measured
against the check before the first fallen one, so 0.62, 0.23, 0.06 stops at 0.06 (both lie below 0.62 - 0.2), while
0.91, 0.58, 0.90 never stops.

Everything here is plain Python on floats, so a recorded history can be replayed with other settings
(robustrain.stopping.replay) and give the decisions the callbacks took.
"""

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from robustrain.core.validation import check_choice, check_in_range, check_int

DEFAULT_THRESHOLD = 0.33
DEFAULT_WINDOW = 3
DEFAULT_WARMUP_EPOCHS = 5
REFERENCES = ("window", "restart")
DIRECTIONS = ("rise", "fall")
SCALES = ("relative", "absolute")
STATISTICS = ("median", "best")


@dataclass(frozen=True)
class Rule:
    """The settings of one stop rule; invalid values raise ValueError naming the setting.

    Args:
        threshold: How far past the median the value must go to stop: a fraction of the median (scale="relative",
            0.33 = 33%) or an amount in the value's units (scale="absolute", e.g. 0.2 = 20 points of accuracy).
        window: Preceding measurements the median is taken over.
        warmup_epochs: No decision in epochs 0 .. warmup_epochs - 1.
        wait_for_lr_peak: Also no decision while the learning rate still rises.
        reference: "window" (every value before the new one) or "restart" (only those from the last warm-up one on).
        direction: "rise" (stop when the value rises above the limit) or "fall" (when it falls below it).
        scale: "relative" (limit = median * (1 +- threshold)) or "absolute" (limit = median +- threshold).
        patience: How many checks in a row must lie past the limit (set by the median before the first of them) to
            stop; 1 stops at the first.
        statistic: What the limit is set from: "median" of the last `window` values, or their "best" (the highest
            for direction="fall", the lowest for "rise"): a fall from the best recent value, however many checks it
            took.
    """

    threshold: float = DEFAULT_THRESHOLD
    window: int = DEFAULT_WINDOW
    warmup_epochs: int = DEFAULT_WARMUP_EPOCHS
    wait_for_lr_peak: bool = True
    reference: Literal["window", "restart"] = "window"
    direction: Literal["rise", "fall"] = "rise"
    scale: Literal["relative", "absolute"] = "relative"
    patience: int = 1
    statistic: Literal["median", "best"] = "median"

    def __post_init__(self) -> None:
        check_in_range("threshold", self.threshold, 0.0, low_open=True, note="(the aliasing stop's rise: 0.33)")
        check_int("window", self.window, 1)  # measurements the median is taken over
        check_int("warmup_epochs", self.warmup_epochs, 0)
        check_choice("reference", self.reference, REFERENCES)
        check_choice("direction", self.direction, DIRECTIONS)
        check_choice("scale", self.scale, SCALES)
        check_int("patience", self.patience, 1)  # checks in a row past the limit
        check_choice("statistic", self.statistic, STATISTICS)

    def in_warmup(self, epoch: int, lr_rising: bool = False) -> bool:
        """Whether no decision is taken at this (0-based) epoch: before warmup_epochs, or while the lr still rises."""
        return epoch < self.warmup_epochs or (self.wait_for_lr_peak and lr_rising)

    def is_past(self, value: float, median: float) -> bool:
        """Whether a value lies past the limit the median sets, in the rule's direction (absolute: its change from
        the median against the threshold, so that a change of exactly the threshold never stops)."""
        if self.scale == "relative":
            limit = self.limit(median)
            return value > limit if self.direction == "rise" else value < limit
        change = value - median
        return change > self.threshold if self.direction == "rise" else change < -self.threshold

    def reference_value(self, history: Sequence[float]) -> float:
        """The value the limit is set from: the median (or, with statistic="best", the best) of the last `window`
        finite values of the reference history; nan if there are none."""
        if self.statistic == "median":
            return median_reference(history, self.window)
        finite = [v for v in history if math.isfinite(v)][-self.window :]
        if not finite:
            return math.nan
        return max(finite) if self.direction == "fall" else min(finite)

    def limit(self, median: float) -> float:
        """The value past which the rule stops, given the median of the reference values."""
        sign = 1.0 if self.direction == "rise" else -1.0
        if self.scale == "relative":
            return median * (1.0 + sign * self.threshold)
        return median + sign * self.threshold


ALIASING_RULE = Rule()  # the aliasing stop's defaults: t = 0.33 over a window of 3, a 5-epoch warm-up, the lr-peak wait


def pgd_es_rule(max_drop: float = 0.2) -> Rule:
    """Wong et al.'s rule: stop when the robust accuracy fell by more than max_drop (absolute, 0.2 = 20 points)
    since the previous check; the first check never stops."""
    check_in_range("max_drop", max_drop, 0.0, 1.0, low_open=True, note="(a fall in accuracy; Wong et al.: 0.2)")
    return Rule(
        threshold=max_drop, window=1, warmup_epochs=0, wait_for_lr_peak=False, direction="fall", scale="absolute"
    )


@dataclass(frozen=True)
class Decision:
    """A rule's verdict on one new value.

    Attributes:
        should_stop: Whether the rule stops here.
        reason: Why it stops (or, for a value that is not finite, why it must), None when nothing happened.
        median: Median of the reference values, or their best with statistic="best" (nan when there are none).
        limit: The value past which the rule stops (nan when there is no median).
        past: Whether the value lies past the limit (for patience > 1: past the limit of the fall it continues,
            whose median and limit these are), stopping or not.
    """

    should_stop: bool
    reason: str | None
    median: float
    limit: float
    past: bool = False


def median_reference(history: Sequence[float], window: int) -> float:
    """Median of the last `window` finite values of the history (fewer if it is shorter); nan if there are none."""
    finite = [v for v in history if math.isfinite(v)]
    if not finite:
        return math.nan
    return statistics.median(finite[-window:])


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
    check_choice("reference", reference, REFERENCES)
    start = 0
    if reference == "restart":
        start = max((i for i, warm in enumerate(warmups) if warm), default=0)
    kept = list(values[start:])
    return kept[-window:] if window else kept


def decide(
    values: Sequence[float],
    warmups: Sequence[bool],
    current: float,
    warmup: bool,
    rule: Rule,
    name: str = "value",
) -> Decision:
    """The rule's decision on a new value: the one entry point of every stop rule (callbacks and replay alike).

    Args:
        values: The values measured before `current`, oldest first.
        warmups: For each of them, whether it was measured during the warm-up (`Rule.in_warmup`).
        current: The new value.
        warmup: Whether `current` was measured during the warm-up: no decision, except that a non-finite value stops.
        rule: The settings.
        name: Name of the monitored value, for the reason.

    Returns:
        The Decision, with the median of the reference values and the limit it implies.
    """
    n = len(values)
    reference = reference_history(values, warmups, rule.reference)
    median = rule.reference_value(reference)
    limit = rule.limit(median)
    if not math.isfinite(current):
        return Decision(True, f"{name} = {current} is not finite", median, limit, past=True)
    if warmup:
        return Decision(False, None, median, limit)
    # the longest run of checks ending here, each past the limit of the median before its first one (patience)
    streak = 0
    for k in range(min(rule.patience - 1, n) + 1):  # k earlier values join the current one
        if k and warmups[n - k]:
            break
        before = reference_history(values[: n - k], warmups[: n - k], rule.reference)
        m = rule.reference_value(before)
        if math.isnan(m):
            continue
        if all(rule.is_past(v, m) for v in [*values[n - k :], current]):
            streak, median, limit, reference = k + 1, m, rule.limit(m), before
    if streak == 0:
        return Decision(False, None, median, limit)
    if streak < rule.patience:
        return Decision(False, None, median, limit, past=True)
    count = min(rule.window, len(reference))
    lasted = f", for {streak} checks in a row" if rule.patience > 1 else ""
    statistic = "median" if rule.statistic == "median" else ("highest" if rule.direction == "fall" else "lowest")
    if rule.scale == "relative":
        change = f"{current / median - 1.0:+.1%}" if median > 0 else "an infinite factor"
        verb, op = ("exceeds", ">") if rule.direction == "rise" else ("falls below", "<")
        sign = "" if rule.direction == "rise" else "-"
        reason = (
            f"{name} = {current:.4g} {verb} the {statistic} {median:.4g} of the last {count} measurements by {change} "
            f"{op} {sign}{rule.threshold:.0%} (limit {limit:.4g}){lasted}"
        )
        return Decision(True, reason, median, limit, past=True)
    change = current - median
    verb, op, sign = ("rose", ">", "+") if rule.direction == "rise" else ("fell", "<", "-")
    since = "" if count == 1 else f" (the {statistic} of the last {count} measurements)"
    reason = (
        f"{name} {verb} from {median:.3f}{since} to {current:.3f} ({change:+.3f} {op} {sign}{rule.threshold}){lasted}"
    )
    return Decision(True, reason, median, limit, past=True)
