"""robustrain.callbacks.stop_figure: the stop figure's curves, its dashed median and limit, its stop marks."""

import math

from robustrain.callbacks.stop_figure import plot_history, plot_stop_figure


def _history() -> list[dict]:
    values = [1.0, 1.0, 1.0, 2.0]
    return [
        {"epoch": e, "step": 10 * e, "value": v, "median": 1.0 if e else math.nan, "limit": 1.33 if e else math.nan,
         "val_acc_pgd": 0.5, "should_stop": e == 3, "warmup": e < 2}
        for e, v in enumerate(values)
    ]  # fmt: skip


def test_stop_figure_draws_value_median_and_limit_with_the_stop_and_the_hand_back() -> None:
    fig = plot_stop_figure(
        _history(), ["value", "median", "limit"], "AliasingMonitor", stopped_epoch=3, restored_epoch=2
    )
    ax = fig.axes[0]
    styles = {line.get_label(): line.get_linestyle() for line in ax.get_lines()}
    assert styles["value"] == "-" and styles["median"] == "--" and styles["limit"] == "--"
    assert {"stop decided", "hand back this epoch's weights (last_check)"} <= set(styles)
    assert len(fig.axes) == 2  # val/acc_pgd on the twin axis
    shaded = sorted(patch.get_x() for patch in ax.patches)
    assert shaded == [-0.5, 0.5]  # the warm-up: epochs 0 and 1


def test_a_monitor_only_stop_marks_what_it_would_hand_back() -> None:
    fig = plot_stop_figure(_history(), ["value"], "AliasingMonitor", 3, 1, monitor_only=True, hand_back="best_probe")
    labels = {line.get_label() for line in fig.axes[0].get_lines()}
    assert {"stop decided (monitor only)", "would hand back this epoch's weights (best_probe)"} <= labels


def test_history_figure_marks_every_decided_stop() -> None:
    fig = plot_history(_history(), ["value", "limit"], "per batch", x="step")
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels.count("stop decided") == 1 and "limit" in labels


def test_a_stop_on_the_best_of_its_window_names_its_reference_in_the_figures_and_charts() -> None:
    from robustrain.callbacks import PGDEarlyStopping

    stop = PGDEarlyStopping(source="probe", threshold=0.3, window=5, statistic="best", patience=2)
    assert stop.reference_name == "best of the last 5" and PGDEarlyStopping().reference_name == "median"
    labels = {"median": stop.reference_name}
    for fig in (
        plot_stop_figure(_history(), ["value", "median", "limit"], "PGDEarlyStopping", 3, 2, labels=labels),
        plot_history(_history(), ["value", "median"], "per batch", x="step", labels=labels),
    ):
        styles = {line.get_label(): line.get_linestyle() for line in fig.axes[0].get_lines()}
        assert styles["best of the last 5"] == "--" and "median" not in styles
    (title,) = [t for t in stop.tensorboard_charts()["pgd_es"] if "band" in t]
    assert "in the band from best of the last 5 to limit; stops below the band" in title
