"""The stop figure of the early-stopping callbacks: a history's curves, the stop and the weights handed back.

Drawn with matplotlib's object API (no pyplot state), for `logger.experiment.add_figure` or `savefig`.
"""

import math
from collections.abc import Sequence

from matplotlib.figure import Figure

_SERIES_STYLE = {"limit": dict(ls="--", c="r"), "median": dict(ls="--", c="k"), "value": dict(lw=2.5, c="C0")}


def _column(history: Sequence[dict], key: str) -> list[float]:
    """The key's values over the records, nan where a record has none."""
    return [math.nan if record.get(key) is None else record[key] for record in history]


def _draw_series(
    ax, history: Sequence[dict], series: Sequence[str], x: str, other: dict | None = None, labels: dict | None = None
) -> None:
    """One line per key against `x`: "value" thick, the "median" and the "limit" dashed, the rest drawn with `other`'s
    style; each labelled by `labels` (the key itself where it has none)."""
    xs = [record[x] for record in history]
    for key in series:
        label = (labels or {}).get(key, key)
        ax.plot(xs, _column(history, key), marker=".", label=label, **_SERIES_STYLE.get(key, other or {}))


def plot_history(
    history: Sequence[dict],
    series: Sequence[str],
    title: str,
    x: str = "epoch",
    stop_key: str = "should_stop",
    labels: dict | None = None,
) -> Figure:
    """Curves of the given record keys against `x`, the decision series dashed, stops marked by a vertical line.

    Args:
        history: Records (of one kind), oldest first.
        series: Keys to draw; keys named "median" and "limit" are dashed, "value" is thick.
        title: Axes title.
        x: Key of the horizontal axis.
        stop_key: Boolean key marking the records where a stop was (or, monitor-only, would have been) decided.
        labels: Legend labels of some keys (e.g. {"median": "best of the last 5"}); the others are named as keys.

    Returns:
        A matplotlib Figure (no pyplot state), for logger.experiment.add_figure or savefig.
    """
    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    _draw_series(ax, history, series, x, labels=labels)
    stops = [record[x] for record in history if record.get(stop_key)]
    for i, position in enumerate(stops):
        ax.axvline(position, c="r", alpha=0.4, lw=1, label="stop decided" if i == 0 else None)
    ax.set_xlabel(x)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def plot_stop_figure(
    history: Sequence[dict],
    series: Sequence[str],
    title: str,
    stopped_epoch: int | None = None,
    restored_epoch: int | None = None,
    accuracy_key: str = "val_acc_pgd",
    value_label: str = "value",
    monitor_only: bool = False,
    hand_back: str = "last_check",
    labels: dict | None = None,
) -> Figure:
    """The stop as Grabinski et al. draw it (Fig. 14): the monitored curves and the robust accuracy on twin axes.

    Left axis: the record keys in `series` ("value" thick, the "median" and the stop "limit" dashed). Right axis:
    `accuracy_key` (the epoch's val/acc_pgd). The warm-up (records with `warmup` true: no decision) is shaded grey;
    the stop epoch (red) and the epoch whose weights were handed back (green) are marked, labelled "would" for a
    monitor-only stop. Integer epochs.

    Args:
        history: Records of one epoch-level kind, oldest first.
        series: Keys drawn on the left axis.
        title: Axes title.
        stopped_epoch: Epoch the stop was (or, monitor-only, would have been) decided, or None.
        restored_epoch: Epoch whose weights were (or would have been) handed back (-1: the start of fit), or None.
        accuracy_key: Record key of the robust accuracy drawn on the right axis.
        value_label: Label of the left axis.
        monitor_only: Whether the stop only monitored (the marks say "would").
        hand_back: The hand-back policy, named in the legend.
        labels: Legend labels of some keys of `series` (the others are named as keys).
    """
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    epochs = [record["epoch"] for record in history]
    _draw_series(ax, history, series, "epoch", other={"alpha": 0.6}, labels=labels)
    ax.set_xlabel("epoch")
    ax.set_ylabel(value_label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    acc = _column(history, accuracy_key)
    handles, labels = ax.get_legend_handles_labels()
    if any(math.isfinite(a) for a in acc):
        ax2 = ax.twinx()
        ax2.plot(epochs, acc, c="tab:purple", marker="s", ms=3, label="val/acc_pgd")
        ax2.set_ylabel("val/acc_pgd")
        ax2.set_ylim(0, 1)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    warm = [record["epoch"] for record in history if record.get("warmup")]
    for i, epoch in enumerate(warm):
        patch = ax.axvspan(epoch - 0.5, epoch + 0.5, color="0.85", lw=0, zorder=0)
        if i == 0:
            handles.append(patch)
            labels.append("warm-up: no decision")
    would = "would " if monitor_only else ""
    marks = []
    if stopped_epoch is not None:
        marks.append((stopped_epoch, "r", "stop decided" + (" (monitor only)" if monitor_only else "")))
    if restored_epoch is not None:
        marks.append((restored_epoch, "g", f"{would}hand back this epoch's weights ({hand_back})"))
    for epoch, color, label in marks:
        line = ax.axvline(epoch, c=color, alpha=0.6, lw=1.5, label=label)
        handles.append(line)
        labels.append(label)
    ax.set_title(title)
    ax.legend(handles, labels, fontsize=7, ncol=2, loc="upper left")
    fig.tight_layout()
    return fig
