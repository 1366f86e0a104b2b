"""Run histories of the early-stopping callbacks: one record (dict) per check, written to / read from CSV, plotted.

A record holds `epoch`, `step`, `kind` ("probe", "batch" or "first_batch"), the measured values and the decision
(`value`, `filtered`, `threshold`, `should_stop`, `reason`). The CSV is rewritten whole at every check (a history is a
few hundred rows at most), so it is always complete and readable while training runs.
"""

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

_INT_COLUMNS = ("epoch", "step")
_BOOL_COLUMNS = ("should_stop", "warmup", "lr_rising")
_TEXT_COLUMNS = ("kind", "reason")


def history_columns(history: Sequence[dict]) -> list[str]:
    """All keys of the records, in order of first appearance."""
    columns: dict[str, None] = {}
    for record in history:
        columns.update(dict.fromkeys(record))
    return list(columns)


def write_history_csv(history: Sequence[dict], path: str | Path) -> Path:
    """Write the records to `path` (parent folders created); missing values are left empty."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=history_columns(history), restval="")
        writer.writeheader()
        writer.writerows(history)
    return path


def _parse(column: str, text: str) -> object:
    if text == "" and column not in _TEXT_COLUMNS:
        return None
    if column in _INT_COLUMNS:
        return int(text)
    if column in _BOOL_COLUMNS:
        if text not in ("True", "False"):
            raise ValueError(f"column {column!r} must hold True or False, got {text!r}")
        return text == "True"
    if column in _TEXT_COLUMNS:
        return text
    return float(text)  # float("nan") and float("inf") round-trip


def read_history_csv(path: str | Path) -> list[dict]:
    """The records of a history CSV, with ints, bools, floats (nan included) and text restored."""
    with Path(path).open(newline="") as f:
        return [{key: _parse(key, text) for key, text in row.items()} for row in csv.DictReader(f)]


def plot_history(
    history: Sequence[dict], series: Sequence[str], title: str, x: str = "epoch", stop_key: str = "should_stop"
) -> Figure:
    """Curves of the given record keys against `x`, the decision series dashed, stops marked by a vertical line.

    Args:
        history: Records (of one kind), oldest first.
        series: Keys to draw; keys named "filtered" and "threshold" are dashed, "value" is thick.
        title: Axes title.
        x: Key of the horizontal axis.
        stop_key: Boolean key marking the records where a stop was (or, monitor-only, would have been) decided.

    Returns:
        A matplotlib Figure (no pyplot state), for logger.experiment.add_figure or savefig.
    """
    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    xs = [record[x] for record in history]
    for key in series:
        ys = [record.get(key) for record in history]
        ys = [math.nan if v is None else v for v in ys]
        style = {"threshold": dict(ls="--", c="r"), "filtered": dict(ls="--", c="k"), "value": dict(lw=2.5, c="C0")}
        ax.plot(xs, ys, marker=".", label=key, **style.get(key, {}))
    stops = [record[x] for record in history if record.get(stop_key)]
    for i, position in enumerate(stops):
        ax.axvline(position, c="r", alpha=0.4, lw=1, label="stop decided" if i == 0 else None)
    ax.set_xlabel(x)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig
