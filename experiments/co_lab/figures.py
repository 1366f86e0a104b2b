"""The CO lab's figures: Grabinski et al.'s Fig. 15 for every detector, and every signal through the collapse."""

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from matplotlib.figure import Figure

from experiments.co_lab.detectors import Detector
from experiments.co_lab.runs import Run
from experiments.co_lab.scoring import outcome, stop_for

NETWORK_COLORS = {"SmallCNN": "tab:blue", "PreActResNet18": "tab:red"}


def distance_vs_threshold(
    runs: Sequence[Run], detectors: Mapping[str, Detector], thresholds: Mapping[str, Sequence[float]], path: Path
) -> Path:
    """One panel per detector family: for every CO run, the handed-back epoch minus the oracle's against the
    threshold (the family's chosen rule otherwise), as the paper's Fig. 15; "never stops" drawn at the top."""
    co = [r for r in runs if outcome(r).kind == "catastrophic"]
    n = len(detectors)
    cols = 3
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(5 * cols, 3.4 * rows))
    for i, (family, detector) in enumerate(detectors.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        key = detector.history.removesuffix("_bn_train").removesuffix("_probe")
        ts = sorted(set(thresholds.get(key, [detector.rule.threshold])) | {detector.rule.threshold})
        top = max((r.epochs for r in co), default=1)
        for run in co:
            out = outcome(run)
            ys = []
            for t in ts:
                stop = stop_for(run, replace(detector, rule=replace(detector.rule, threshold=t)))
                ys.append(top if stop is None else stop.handed_back - out.oracle_epoch)
            ax.plot(ts, ys, marker=".", alpha=0.6, color=NETWORK_COLORS.get(run.network, "gray"))
        ax.axhline(0, color="k", lw=0.8)
        ax.axvline(detector.rule.threshold, color="g", ls="--", lw=0.8)
        ax.set_title(family, fontsize=8)
        ax.set_xlabel("threshold")
        ax.set_ylabel("handed back - oracle (epochs)")
        ax.grid(alpha=0.3)
    for network, color in NETWORK_COLORS.items():
        fig.axes[0].plot([], [], color=color, label=network) if fig.axes else None
    if fig.axes:
        fig.axes[0].legend(fontsize=7)
    fig.suptitle(f"distance to the oracle vs threshold on {len(co)} CO runs (top: never stops; dashed: chosen)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


# (title, history, column or callable, normalise by the pre-collapse median)
SIGNALS = (
    ("held-out PGD (solid) / FGSM (dotted) accuracy", None, None, False),
    ("aliasing, monitored layer (x pre-collapse median)", "aliasing", "@monitored", True),
    ("aliasing, relative measure (x median)", "aliasing", "relative/@monitored", True),
    ("aliasing, BatchNorm in train mode (x median)", "aliasing_bn_train", "@monitored", True),
    ("gradient alignment (cosine)", "grad_align", "cosine", False),
    ("abnormal examples (fraction)", "abnormal", "fraction", False),
    ("FGSM - PGD gap", "masking_gap", "gap", False),
    ("PGD-ES accuracy (first batch)", "pgd_es", "acc", False),
)


def _series(run: Run, history: str, column: str, kind: str) -> tuple[list[float], list[float]]:
    records = [r for r in run.histories.get(history, []) if r["kind"] == kind]
    column = column.replace("@monitored", run.monitored(history))
    if kind == "batch":
        return [r["step"] / run.steps_per_epoch - 1 for r in records], [r.get(column, math.nan) for r in records]
    return [r["epoch"] for r in records], [r.get(column, math.nan) for r in records]


def signals(runs: Sequence[Run], path: Path) -> Path:
    """Every recorded signal of every CO run against epochs from its collapse (left: epoch-end checks; right: the
    checks every n steps where recorded), one line per run coloured by network."""
    co = [r for r in runs if outcome(r).kind == "catastrophic"]
    fig = Figure(figsize=(12, 2.4 * len(SIGNALS)))
    for row, (title, history, column, normalise) in enumerate(SIGNALS):
        for col, kinds in enumerate((("probe", "epoch", "val", "first_batch"), ("batch",))):
            ax = fig.add_subplot(len(SIGNALS), 2, 2 * row + col + 1)
            for run in co:
                c = outcome(run).collapse_epoch
                color = NETWORK_COLORS.get(run.network, "gray")
                if history is None:
                    if col == 0:
                        xs = [e - c for e in range(run.epochs)]
                        ax.plot(xs, run.val["acc_pgd"], color=color, alpha=0.6)
                        ax.plot(xs, run.val["acc_fgsm"], color=color, alpha=0.6, ls=":")
                    continue
                kind = next((k for k in kinds if any(r["kind"] == k for r in run.histories.get(history, []))), None)
                if kind is None:
                    continue
                xs, ys = _series(run, history, column, kind)
                if normalise:
                    before = sorted(y for x, y in zip(xs, ys) if x < c and math.isfinite(y))
                    scale = before[len(before) // 2] if before else 1.0
                    ys = [y / scale if scale else math.nan for y in ys]
                ax.plot([x - c for x in xs], ys, color=color, alpha=0.6, lw=1)
            ax.axvline(0, color="k", lw=0.8)
            ax.set_title(title + ("" if col == 0 else ", every n steps"), fontsize=8)
            ax.grid(alpha=0.3)
            if row == len(SIGNALS) - 1:
                ax.set_xlabel("epochs from the collapse epoch (its end at +1)")
    fig.suptitle(f"every signal through the collapse, {len(co)} CO runs (blue: SmallCNN, red: PreActResNet18)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
