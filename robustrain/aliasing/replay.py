"""Replay Algorithm 1 on a logged aliasing history with other settings, without retraining.

    python -m robustrain.aliasing.replay runs/mnist5k_fgsm_aliasing/version_0/aliasing_history.csv \\
        --threshold 0.3 --window 5 --warmup-epochs 2

Replaying a history with the settings it was recorded with gives the decisions the callback logged (as if it were
monitor-only: a run that stopped has no records after its stop, so other settings can only move the stop earlier
or find none in the recorded epochs).
"""

import argparse
import math
from collections.abc import Sequence

from robustrain.aliasing.stopping import (
    DEFAULT_THRESHOLD,
    DEFAULT_WARMUP_EPOCHS,
    DEFAULT_WINDOW,
    REFERENCES,
    check_rule,
    evaluate_stopping_criteria,
    in_warmup,
    reference_history,
    stop_limit,
)
from robustrain.callbacks.history import read_history_csv
from robustrain.errors import EXIT_BAD_INPUT


def replay(
    records: Sequence[dict],
    threshold: float = DEFAULT_THRESHOLD,
    window: int = DEFAULT_WINDOW,
    warmup_epochs: int = DEFAULT_WARMUP_EPOCHS,
    wait_for_lr_peak: bool = True,
    column: str = "value",
    kind: str = "probe",
    reference: str = "window",
) -> list[dict]:
    """Algorithm 1's decision at every record of one kind, each against all the values before it.

    Args:
        records: An AliasingMonitor history (read_history_csv or AliasingMonitor.history); needs `epoch`, `step`,
            `kind`, `lr_rising` and the column.
        threshold, window, warmup_epochs, wait_for_lr_peak, reference: The rule's settings (see AliasingMonitor).
        column: The series to decide on: "value" (what the run monitored), or any layer / group / "mean", or the
            relative measure's "relative/<layer, group or mean>".
        kind: "probe" (epoch-end probe set) or "batch" (on the fly).

    Returns:
        One dict per record: epoch, step, value, filtered, threshold, warmup, should_stop, reason.
    """
    check_rule(threshold, window, warmup_epochs, reference)
    series = [r for r in records if r["kind"] == kind]
    if not series:
        raise ValueError(
            f"the history has no records of kind={kind!r}; kinds found: {sorted({r['kind'] for r in records})}"
        )
    if column not in series[0]:
        raise ValueError(f"column={column!r} is not in the history; columns: {list(series[0])}")
    decisions, values, warmups = [], [], []
    for record in series:
        current = record[column]
        current = math.nan if current is None else current
        warmup = in_warmup(record["epoch"], warmup_epochs, bool(record.get("lr_rising")), wait_for_lr_peak)
        history = reference_history(values, warmups, reference)
        median, limit = stop_limit(history, threshold, window)
        should_stop, reason = evaluate_stopping_criteria(history, current, threshold, window, warmup, name=column)
        decisions.append(
            {
                "epoch": record["epoch"],
                "step": record["step"],
                "value": current,
                "filtered": median,
                "threshold": limit,
                "warmup": warmup,
                "should_stop": should_stop,
                "reason": reason or "",
            }
        )
        values.append(current)
        warmups.append(warmup)
    return decisions


def first_stop(decisions: Sequence[dict]) -> dict | None:
    """The first decision that stops, or None."""
    return next((d for d in decisions if d["should_stop"]), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m robustrain.aliasing.replay", description=__doc__.split("\n")[0])
    parser.add_argument("history", help="aliasing_history.csv written by AliasingMonitor")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW)
    parser.add_argument("--warmup-epochs", type=int, default=DEFAULT_WARMUP_EPOCHS)
    parser.add_argument("--no-wait-for-lr-peak", dest="wait_for_lr_peak", action="store_false")
    parser.add_argument("--column", default="value", help="series to decide on: value, mean, a layer or a group")
    parser.add_argument("--kind", default="probe", choices=("probe", "batch"))
    parser.add_argument("--reference", default="window", choices=REFERENCES)
    args = parser.parse_args(argv)
    try:
        decisions = replay(
            read_history_csv(args.history),
            args.threshold,
            args.window,
            args.warmup_epochs,
            args.wait_for_lr_peak,
            args.column,
            args.kind,
            args.reference,
        )
    except (ValueError, OSError) as error:
        parser.exit(EXIT_BAD_INPUT, f"{parser.prog}: error: {error}\n")
    print(f"{'epoch':>5} {'step':>7} {'value':>10} {'median':>10} {'limit':>10}  decision")
    for d in decisions:
        verdict = "STOP" if d["should_stop"] else ("warm-up" if d["warmup"] else "go on")
        print(
            f"{d['epoch']:>5} {d['step']:>7} {d['value']:>10.4g} {d['filtered']:>10.4g} {d['threshold']:>10.4g}  "
            f"{verdict}"
        )
    stop = first_stop(decisions)
    if stop is None:
        print("no stop")
    else:
        print(
            f"stop at epoch {stop['epoch']} (step {stop['step']}): {stop['reason']}; "
            "the weights of the check before it are handed back"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
