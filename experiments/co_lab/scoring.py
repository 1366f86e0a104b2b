"""Scoring stop rules on recorded runs: where each would stop, what it hands back, and how that compares to the oracle.

Tuning uses only held-out validation accuracy (the per-epoch val/acc_pgd the runs logged); the report half is scored
on the test set (PGD-50-10 and AutoAttack of the handed-back and the oracle's model, experiments.co_lab.evaluate).
"""

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from experiments.co_lab.detectors import Detector
from experiments.co_lab.outcomes import (
    RunOutcome,
    Stop,
    accuracy_at,
    classify,
    handed_back_epoch,
    lag,
    stop_of,
    within_oracle,
)
from experiments.co_lab.runs import Run
from robustrain.stopping.replay import replay


def outcome(run: Run) -> RunOutcome:
    return classify(run.val["acc_pgd"], run.val["acc_fgsm"])


def stop_for(run: Run, detector: Detector) -> Stop | None:
    """Where the detector's rule, replayed on the run's recorded series, stops it (None: never)."""
    records = run.histories.get(detector.history)
    if records is None:
        raise ValueError(f"{run.name} recorded no {detector.history}_history.csv, which {detector.family!r} needs")
    decisions = replay(records, detector.rule, detector.column_for(run), detector.kind)
    first = next((d for d in decisions if d["should_stop"]), None)
    return stop_of(None if first is None else {**first, "kind": detector.kind}, run.steps_per_epoch)


@dataclass
class Score:
    """A detector on a set of runs.

    Attributes:
        hits: Catastrophic runs whose handed-back model is within 3 points of the oracle's.
        co_runs: Catastrophic runs scored.
        false_stops: Healthy runs it stopped.
        healthy_runs: Healthy runs (robust, no collapse; gradual overfitting included) scored.
        lags: Per catastrophic run, epochs from the collapse to the stop (inf: never stopped).
        handed_back: Run name -> epoch handed back.
    """

    hits: int = 0
    co_runs: int = 0
    false_stops: int = 0
    healthy_runs: int = 0
    lags: list[float] = field(default_factory=list)
    handed_back: dict[str, int] = field(default_factory=dict)

    @property
    def median_lag(self) -> float:
        return statistics.median(self.lags) if self.lags else math.nan


Accuracy = Callable[[Run, int], float]  # (run, epoch) -> robust accuracy of that epoch's model


def val_accuracy(run: Run, epoch: int) -> float:
    return accuracy_at(run.val["acc_pgd"], epoch)


def score(detector: Detector, runs: Sequence[Run], accuracy: Accuracy = val_accuracy) -> Score:
    """Hits on the catastrophic runs and false stops on the healthy ones (never-robust runs are left out), with
    `accuracy` judging the handed-back model against the oracle's."""
    result = Score()
    for run in runs:
        out = outcome(run)
        if out.kind not in ("catastrophic", "healthy"):
            continue
        stop = stop_for(run, detector)
        handed = handed_back_epoch(stop, run.epochs - 1)
        result.handed_back[run.name] = handed
        if out.kind == "healthy":
            result.healthy_runs += 1
            result.false_stops += stop is not None
            continue
        result.co_runs += 1
        result.lags.append(lag(stop, out.collapse_epoch))
        result.hits += within_oracle(accuracy(run, handed), accuracy(run, out.oracle_epoch))
    return result


def choose(detectors: Sequence[Detector], runs: Sequence[Run], max_false_stops: int = 1) -> tuple[Detector, Score]:
    """The detector with the most hits among those with at most `max_false_stops` false stops (fewest false stops
    first if none qualifies); ties go to the smaller |median lag|, then to the earlier in the list (the published
    rule or the callback's default comes first)."""

    def key(item: tuple[int, tuple[Detector, Score]]) -> tuple:
        index, (_, s) = item
        allowed = s.false_stops <= max_false_stops
        closeness = abs(s.median_lag) if math.isfinite(s.median_lag) else math.inf
        return (allowed, s.hits if allowed else -s.false_stops, -s.false_stops, -closeness, -index)

    scored = [(d, score(d, runs)) for d in detectors]
    _, best = max(enumerate(scored), key=key)
    return best
