"""Replay a stop rule on a recorded history with other settings, without retraining.

    python -m robustrain.stopping.replay runs/mnist5k_fgsm_aliasing/version_0/aliasing_history.csv \\
        --threshold 0.3 --window 5 --warmup-epochs 2
    python -m robustrain.stopping.replay runs/<run>/version_0/pgd_es_probe_history.csv --kind probe \\
        --threshold 0.2 --window 1 --warmup-epochs 0 --no-wait-for-lr-peak --direction fall --scale absolute \\
        --patience 2
    python -m robustrain.stopping.replay runs/<run>/version_0/pgd_es_history.csv --kind probe --threshold 0.3 \\
        --window 5 --statistic best --warmup-epochs 0 --no-wait-for-lr-peak --direction fall --scale absolute \\
        --patience 2

Replaying a history with the settings it was recorded with gives the decisions the callback logged (as if it were
monitor-only: a run that stopped has no records after its stop, so other settings can only move the stop earlier
or find none in the recorded epochs). Histories written before `filtered` / `threshold` were renamed `median` /
`limit` are read as well.
"""

import argparse
import math
from collections.abc import Sequence

from robustrain.core.errors import EXIT_BAD_INPUT
from robustrain.stopping.history import read_history_csv
from robustrain.stopping.rules import (
    ALIASING_RULE,
    DEFAULT_THRESHOLD,
    DEFAULT_WARMUP_EPOCHS,
    DEFAULT_WINDOW,
    DIRECTIONS,
    REFERENCES,
    SCALES,
    STATISTICS,
    Rule,
    decide,
)


def replay(
    records: Sequence[dict], rule: Rule = ALIASING_RULE, column: str = "value", kind: str = "probe"
) -> list[dict]:
    """The rule's decision at every record of one kind, each against all the values before it.

    Args:
        records: A callback's history (read_history_csv, or AliasingMonitor.history); needs `epoch`, `step`, `kind`,
            `lr_rising` (read only with rule.wait_for_lr_peak) and the column.
        rule: The settings to replay (default: the aliasing stop's).
        column: The series to decide on: "value" (what the run monitored), or any layer / group / "mean", or the
            relative measure's "relative/<layer, group or mean>".
        kind: "probe" (epoch-end probe set), "batch" (every n steps), "first_batch" (PGDEarlyStopping), "epoch"
            (AbnormalExamplesMonitor's per-epoch fraction) or "val" (MaskingGapMonitor).

    Returns:
        One dict per record: epoch, step, value, median, limit, warmup, past (past the limit: stopping, or pending
        under patience), should_stop, reason.
    """
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
        warmup = rule.in_warmup(record["epoch"], bool(record.get("lr_rising")))
        decision = decide(values, warmups, current, warmup, rule, name=column)
        decisions.append(
            {
                "epoch": record["epoch"],
                "step": record["step"],
                "value": current,
                "median": decision.median,
                "limit": decision.limit,
                "warmup": warmup,
                "past": decision.past,
                "should_stop": decision.should_stop,
                "reason": decision.reason or "",
            }
        )
        values.append(current)
        warmups.append(warmup)
    return decisions


def first_stop(decisions: Sequence[dict]) -> dict | None:
    """The first decision that stops, or None."""
    return next((d for d in decisions if d["should_stop"]), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m robustrain.stopping.replay", description=__doc__.split("\n")[0])
    parser.add_argument("history", help="a <name>_history.csv written by a stop callback (e.g. aliasing_history.csv)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW)
    parser.add_argument("--warmup-epochs", type=int, default=DEFAULT_WARMUP_EPOCHS)
    parser.add_argument("--no-wait-for-lr-peak", dest="wait_for_lr_peak", action="store_false")
    parser.add_argument("--reference", default="window", choices=REFERENCES)
    parser.add_argument("--direction", default="rise", choices=DIRECTIONS)
    parser.add_argument("--scale", default="relative", choices=SCALES)
    parser.add_argument("--patience", type=int, default=1, help="checks in a row past the limit that stop")
    parser.add_argument(
        "--statistic", default="median", choices=STATISTICS, help="the limit from the window's median or its best"
    )
    parser.add_argument("--column", default="value", help="series to decide on: value, mean, a layer or a group")
    parser.add_argument(
        "--kind",
        default="probe",
        choices=("probe", "batch", "first_batch", "epoch", "val"),
        help="records to replay: epoch-end probe, every n steps (batch), PGD-ES's first batch, the abnormal-example "
        "fraction per epoch (epoch) or the FGSM-PGD gap per validation (val)",
    )
    args = parser.parse_args(argv)
    try:
        rule = Rule(
            threshold=args.threshold,
            window=args.window,
            warmup_epochs=args.warmup_epochs,
            wait_for_lr_peak=args.wait_for_lr_peak,
            reference=args.reference,
            direction=args.direction,
            scale=args.scale,
            patience=args.patience,
            statistic=args.statistic,
        )
        records = read_history_csv(args.history)
        if not records:
            raise ValueError(f"{args.history} holds no records (an empty file, or a header only)")
        decisions = replay(records, rule, args.column, args.kind)
    except (ValueError, OSError) as error:
        parser.exit(EXIT_BAD_INPUT, f"{parser.prog}: error: {error}\n")
    print(f"{'epoch':>5} {'step':>7} {'value':>10} {'median':>10} {'limit':>10}  decision")
    for d in decisions:
        verdict = "STOP" if d["should_stop"] else ("warm-up" if d["warmup"] else "pending" if d["past"] else "go on")
        print(f"{d['epoch']:>5} {d['step']:>7} {d['value']:>10.4g} {d['median']:>10.4g} {d['limit']:>10.4g}  {verdict}")
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
