"""What happened in a run, and what a stop rule would have made of it: pure functions of recorded curves.

Units: a run's epochs are 0-based; "epochs completed" counts training progress (the check at the end of epoch e is at
e + 1 epochs completed, a check at global step g at g / steps_per_epoch).

- A run overfits *catastrophically* (CO) when its held-out PGD accuracy first reaches ROBUST (0.3) and then, within
  COLLAPSE_EPOCHS (2) epochs, falls to COLLAPSED (0.05) or below, while its FGSM accuracy is high (>= FGSM_HIGH, 0.5)
  at the collapse or the epoch after: the model resists the one-step attack it trains on and nothing stronger. The
  *collapse epoch* is the first epoch whose end-of-epoch model is collapsed.
- It *never becomes robust* when its held-out PGD accuracy stays below ROBUST.
- It *collapses partly* when, not catastrophic, it became robust and later fell below PARTIAL (a third) of its best
  PGD accuracy so far while its FGSM accuracy was high: the same failure, slower than COLLAPSE_EPOCHS or stopping
  short of COLLAPSED. Such runs are neither hits nor false stops (a stop there is right, but the lab's definition of
  CO does not hold): they are counted and listed apart.
- It is *healthy* otherwise; a healthy run that ends more than GRADUAL_DROP (0.1) below its best has overfitted
  *gradually* (robust overfitting, Rice et al.), which a CO detector should not mistake for a collapse.
- The *oracle* epoch is the one with the best held-out PGD accuracy: the model a perfect stop would hand back.
- A collapse (catastrophic or partial) whose held-out PGD accuracy climbs back, within RECOVERY_EPOCHS (3) epochs of
  the fall, to within GRADUAL_DROP of its best before the fall is *unstable training*, not CO (`recovers`): e.g. a
  ResNet run at 0.52, 0.0, 0.10, 0.60. The hand-back scores count such runs apart, neither hit nor false stop.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

ROBUST = 0.3
COLLAPSED = 0.05
COLLAPSE_EPOCHS = 2
FGSM_HIGH = 0.5
GRADUAL_DROP = 0.10
PARTIAL = 1 / 3
RECOVERY_EPOCHS = 3
WITHIN = 0.03  # "within 3 points of the oracle"
COLLAPSES = ("catastrophic", "partial_collapse")


@dataclass(frozen=True)
class RunOutcome:
    """The class of a run and its landmarks.

    Attributes:
        kind: "catastrophic", "partial_collapse", "healthy" or "never_robust".
        collapse_epoch: The first collapsed epoch of a catastrophic run, else None.
        oracle_epoch: The epoch with the best held-out PGD accuracy (the first of ties).
        gradual: A healthy run that ended more than GRADUAL_DROP below its best.
        fall_epoch: The first fallen epoch of a collapse: the collapse epoch of a catastrophic run, the first epoch
            below PARTIAL of the best so far (FGSM accuracy high) of a partial collapse, else None.
    """

    kind: str
    collapse_epoch: int | None
    oracle_epoch: int
    gradual: bool = False
    fall_epoch: int | None = None


def classify(acc_pgd: Sequence[float], acc_fgsm: Sequence[float]) -> RunOutcome:
    """The run's class from its per-epoch held-out PGD and FGSM accuracies (see the module docstring)."""
    if len(acc_pgd) == 0 or len(acc_pgd) != len(acc_fgsm):
        raise ValueError(f"acc_pgd and acc_fgsm must be non-empty and as long, got {len(acc_pgd)} and {len(acc_fgsm)}")
    oracle = max(range(len(acc_pgd)), key=lambda e: (acc_pgd[e], -e))
    for start, value in enumerate(acc_pgd):
        if value < ROBUST:
            continue
        for epoch in range(start + 1, min(start + COLLAPSE_EPOCHS, len(acc_pgd) - 1) + 1):
            # float32 metrics: 25 of 500 images logged as 0.0500000007 is still 5%
            if acc_pgd[epoch] <= COLLAPSED + 1e-6 and max(acc_fgsm[epoch : epoch + 2]) >= FGSM_HIGH - 1e-6:
                return RunOutcome("catastrophic", epoch, oracle, fall_epoch=epoch)
    if max(acc_pgd) < ROBUST - 1e-6:
        return RunOutcome("never_robust", None, oracle)
    best = 0.0
    for epoch, (value, fgsm) in enumerate(zip(acc_pgd, acc_fgsm, strict=True)):
        if best >= ROBUST - 1e-6 and value < PARTIAL * best and fgsm >= FGSM_HIGH - 1e-6:
            return RunOutcome("partial_collapse", None, oracle, fall_epoch=epoch)
        best = max(best, value)
    return RunOutcome("healthy", None, oracle, gradual=max(acc_pgd) - acc_pgd[-1] > GRADUAL_DROP)


def recovers(outcome: RunOutcome, acc_pgd: Sequence[float]) -> bool:
    """Whether a run's collapse (its classify outcome) is unstable training: within RECOVERY_EPOCHS epochs after its
    fall, held-out PGD accuracy is back to within GRADUAL_DROP of its best before the fall (False without a fall)."""
    fall = outcome.fall_epoch
    if fall is None:
        return False
    before = max(acc_pgd[:fall])
    after = acc_pgd[fall + 1 : fall + 1 + RECOVERY_EPOCHS]
    return bool(after) and max(after) >= before - GRADUAL_DROP - 1e-6


def run_class(outcome: RunOutcome, acc_pgd: Sequence[float]) -> str:
    """The outcome's kind, with a collapse that `recovers` named "unstable"."""
    return "unstable" if recovers(outcome, acc_pgd) else outcome.kind


@dataclass(frozen=True)
class Stop:
    """Where a rule stopped a run and which model it hands back.

    Attributes:
        epoch: Epoch in which the stop was decided.
        completed: Epochs completed at the decision (epoch + 1 for an epoch-end check).
        handed_back: The epoch whose end-of-epoch weights are handed back (-1: the weights training started from).
    """

    epoch: int
    completed: float
    handed_back: int


def stop_of(decision: dict | None, steps_per_epoch: int) -> Stop | None:
    """The Stop of a replayed decision (robustrain.stopping.replay's dict; None: the rule never stopped).

    An epoch-end check ("probe", "epoch", "val", "first_batch") hands back the previous epoch; a check every n steps
    ("batch") hands back the last epoch end before it, as the callbacks keep the weights of every epoch end.
    """
    if decision is None:
        return None
    epoch = int(decision["epoch"])
    if decision.get("kind") == "batch":
        return Stop(epoch, decision["step"] / steps_per_epoch, epoch - 1)
    return Stop(epoch, epoch + 1.0, epoch - 1)


def lag(stop: Stop | None, collapse_epoch: int) -> float:
    """Epochs completed at the stop minus at the end of the collapse epoch: 0 = caught by the check that first sees
    the collapsed model, negative = before it (a lead), inf = never stopped."""
    return math.inf if stop is None else stop.completed - (collapse_epoch + 1)


def handed_back_epoch(stop: Stop | None, final_epoch: int) -> int:
    """The epoch whose model the run ends with: the stop's hand-back, or the final epoch without a stop."""
    return final_epoch if stop is None else stop.handed_back


def accuracy_at(accuracies: Sequence[float], epoch: int) -> float:
    """accuracies[epoch], 0.0 for the untrained start (epoch -1: no robustness to speak of)."""
    return 0.0 if epoch < 0 else accuracies[epoch]


def within_oracle(accuracy: float, oracle_accuracy: float, points: float = WITHIN) -> bool:
    """Whether a handed-back model's accuracy is at most `points` below the oracle's."""
    return accuracy >= oracle_accuracy - points - 1e-12
