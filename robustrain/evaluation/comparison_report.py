"""Comparison report over several runs: one table (markdown, CSV, TensorBoard hparams) plus comparison figures.

    python -m robustrain.evaluation.comparison_report runs/mnist5k_standard runs/mnist5k_fgsm ... \\
        --out docs/results/comparison

A run dir is a TensorBoardLogger experiment dir (`<save_dir>/<name>`, e.g. runs/mnist5k_fgsm) or one of its version
dirs; a checkpoint path stands for the run dir holding its `checkpoints/` folder. The report reads, from the dir itself
and its `version_*` dirs (the newest file wins when several versions have one):
    robustness.json (RobustnessEvaluation), aliasing.json (AliasingAnalysis), spatial_report.json (SpatialEvaluation);
    config.yaml (LightningCLI) of the training version: the method (model class, anti-aliasing, early-stopping
    callbacks); events.out.tfevents.* of the training version (the one logging `train/*` scalars): epochs trained
    (max `epoch` scalar + 1) and wall time (last minus first event time); checkpoints/last.ckpt: epochs trained when
    no training events exist.
Anything not found shows as "—" in the markdown, an empty cell in the CSV and is left out of the hparams metrics:
no number is ever filled in.
"""

import argparse
import csv
import io
import json
import math
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from robustrain.core.errors import EXIT_BAD_INPUT, EXIT_DISK_FULL, BadInputError, DiskFullError
from robustrain.runs.atomic import atomic_savefig, atomic_write_text, check_writable_folder
from robustrain.runs.checkpoints import read_checkpoint, recorded_stops, run_versions

MISSING = "—"
REPORT_FILES = {"robustness": "robustness.json", "aliasing": "aliasing.json", "spatial": "spatial_report.json"}
# AliasingMonitor's decision series (logged as aliasing/<name>): not per-layer measurements, left out of the plot
# the decision's keys beside the layers (`filtered` and `threshold` in runs logged before they became median and limit)
MONITOR_BOOKKEEPING = {"value", "median", "limit", "filtered", "threshold", "should_stop", "lr_rising", "warmup"}
EARLY_STOPPING_CALLBACKS = {  # robustrain.callbacks' five stops, as the method label names them
    "AliasingMonitor": "aliasing stop",
    "PGDEarlyStopping": "PGD stop",
    "GradientAlignmentMonitor": "gradient-alignment stop",
    "AbnormalExamplesMonitor": "abnormal-example stop",
    "MaskingGapMonitor": "FGSM-PGD gap stop",
}


@dataclass
class Run:
    """Everything the report knows about one run; None where a source is missing."""

    name: str
    path: Path
    method: str | None = None
    robustness: dict[str, Any] | None = None
    aliasing: dict[str, Any] | None = None
    spatial: dict[str, Any] | None = None
    epochs: int | None = None
    wall_time_s: float | None = None
    training_scalars: dict[str, list[tuple[int, float]]] = field(default_factory=dict)


# --- reading a run dir --------------------------------------------------------------------------------------------
def run_dirs(path: Path) -> list[Path]:
    """The dir itself and its version_* dirs, oldest version first."""
    return [path, *(folder for _, folder in run_versions(path))]


def _newest(dirs: Sequence[Path], relative: str) -> Path | None:
    """dirs[i] / relative for the last (newest) of the run's dirs that holds it; dirs are oldest first."""
    found = [d / relative for d in dirs if (d / relative).is_file()]
    return found[-1] if found else None


def read_events(version_dir: Path) -> tuple[dict[str, list[tuple[int, float]]], float | None, float | None]:
    """Scalars (tag -> [(step, value)]) and the first / last event wall times of a dir's TensorBoard event files."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    scalars: dict[str, list[tuple[int, float]]] = {}
    first = last = None
    for path in sorted(version_dir.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            first = event.wall_time if first is None else min(first, event.wall_time)
            last = event.wall_time if last is None else max(last, event.wall_time)
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    number = float(value.simple_value)
                elif value.HasField("tensor") and value.metadata.plugin_data.plugin_name == "scalars":
                    number = float(tensor_util.make_ndarray(value.tensor).item())
                else:
                    continue
                scalars.setdefault(value.tag, []).append((int(event.step), number))
    return scalars, first, last


def read_json(path: Path) -> Any:
    """A report file's contents; BadInputError naming the file when it is no readable JSON."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadInputError(f"{path} is not a readable JSON report ({str(error).splitlines()[0]})") from None


def read_config(path: Path) -> dict[str, Any]:
    """A run's config.yaml as a mapping; BadInputError naming the file when it is binary, no YAML or no mapping."""
    try:
        config = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise BadInputError(f"{path} is not a text (YAML) file") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise BadInputError(f"{path} is not valid YAML{where}: {getattr(error, 'problem', None) or error}") from None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise BadInputError(f"{path} must hold a LightningCLI config (a mapping), not a {type(config).__name__}")
    return config


def describe_method(config: dict[str, Any]) -> str:
    """A short method label from a LightningCLI config: model class, anti-aliasing, early-stopping callbacks."""
    model = config.get("model") or {}
    name = str(model.get("class_path", "?")).rsplit(".", 1)[-1].removesuffix("Training") or "?"
    args = model.get("init_args") or {}
    net_args = ((args.get("net") or {}).get("init_args")) or {}
    parts = [name]
    if net_args.get("antialias"):
        parts.append(f"anti-aliased (filt {net_args['antialias']})")
    for callback in (config.get("trainer") or {}).get("callbacks") or []:
        cls = str((callback or {}).get("class_path", "")).rsplit(".", 1)[-1]
        if cls in EARLY_STOPPING_CALLBACKS:
            monitor_only = ((callback or {}).get("init_args") or {}).get("monitor_only")
            parts.append(EARLY_STOPPING_CALLBACKS[cls] + (" (monitor only)" if monitor_only else ""))
    return " + ".join(parts)


def stop_that_acted(checkpoint: dict[str, Any]) -> str | None:
    """ "<callback> stopped it at epoch N" for each stop a run's last.ckpt records as decided, or None."""
    return (
        "; ".join(f"{callback} stopped it at epoch {epoch}" for callback, epoch, _ in recorded_stops(checkpoint))
        or None
    )


def load_run(path: Path | str, name: str | None = None) -> Run:
    """Collects a run's reports, method, epochs and wall time (see the module docstring for the sources)."""
    path = Path(path)
    if path.is_file() and path.suffix == ".ckpt":
        path = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    if not path.is_dir():
        raise BadInputError(
            f"run dir {str(path)!r} does not exist (give a TensorBoard run/version dir or a checkpoint)"
        )
    dirs = run_dirs(path)
    run = Run(name=name or path.name, path=path)
    for key, filename in REPORT_FILES.items():
        found = _newest(dirs, filename)
        if found is not None:
            setattr(run, key, read_json(found))
    for d in reversed(dirs):  # the newest training version
        scalars, first, last = read_events(d)
        if not any(tag.startswith("train/") for tag in scalars):
            continue
        run.training_scalars = scalars
        if "epoch" in scalars:
            run.epochs = int(max(v for _, v in scalars["epoch"])) + 1
        if first is not None:
            run.wall_time_s = last - first
        if (d / "config.yaml").is_file():
            run.method = describe_method(read_config(d / "config.yaml"))
        break
    if run.method is None:
        configs = [d / "config.yaml" for d in dirs if (d / "config.yaml").is_file()]
        if configs:
            run.method = describe_method(read_config(configs[0]))
    # the newest last.ckpt (read weights-only: a report never runs pickled code): the epochs, and which stop acted
    ckpt = _newest(dirs, "checkpoints/last.ckpt")
    checkpoint = read_checkpoint(ckpt) if ckpt is not None else {}
    if run.epochs is None and "epoch" in checkpoint:
        run.epochs = int(checkpoint["epoch"]) + 1
    acted = stop_that_acted(checkpoint)
    if acted and run.method is not None:
        run.method = f"{run.method}; {acted}"
    if run.method is None and run.epochs is None and not any(getattr(run, key) for key in REPORT_FILES):
        raise BadInputError(
            f"{path} holds no robustrain run: no config.yaml, TensorBoard events, checkpoint or report "
            f"({', '.join(REPORT_FILES.values())}) in it or its version_* folders"
        )
    return run


# --- the table ----------------------------------------------------------------------------------------------------
def _pgd_keys(runs: Sequence[Run]) -> list[str]:
    keys = {k for r in runs if r.robustness for k in r.robustness.get("accuracy", {}) if k.startswith("pgd_")}
    return sorted(keys, key=lambda k: tuple(int(n) for n in re.findall(r"\d+", k)))


def _layers(runs: Sequence[Run]) -> list[str]:
    layers: list[str] = []
    for r in runs:
        for layer in (r.aliasing or {}).get("aliasing", {}) or {}:
            if layer not in layers:
                layers.append(layer)
    return layers


def table_rows(runs: Sequence[Run]) -> tuple[list[str], list[list[Any]]]:
    """Column names and one row per run; None marks a missing entry. Accuracies are fractions in [0, 1]."""
    pgd_keys, layers = _pgd_keys(runs), _layers(runs)
    columns = [
        "run",
        "method",
        "clean_acc",
        "fgsm_acc",
        *[f"{k}_acc" for k in pgd_keys],
        "autoattack_acc",
        "grid_acc",
        *[f"aliasing/{layer}" for layer in layers],
        "epochs",
        "wall_time_s",
    ]
    rows = []
    for r in runs:
        acc = (r.robustness or {}).get("accuracy", {})
        alias = (r.aliasing or {}).get("aliasing", {}) or {}
        rows.append(
            [
                r.name,
                r.method,
                acc.get("clean"),
                acc.get("fgsm"),
                *[acc.get(k) for k in pgd_keys],
                acc.get("autoattack"),
                (r.spatial or {}).get("grid_acc"),
                *[alias.get(layer) for layer in layers],
                r.epochs,
                r.wall_time_s,
            ]
        )
    return columns, rows


def _fmt(column: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if column.endswith("_acc"):
        return f"{100 * value:.2f}"
    if column.startswith("aliasing/"):
        return f"{value:.4g}"
    if column == "wall_time_s":
        return f"{value:.0f}"
    return str(value)


def _settings_notes(runs: Sequence[Run]) -> list[str]:
    notes: list[tuple[str, str]] = []
    for r in runs:
        rob = r.robustness or {}
        attacks = rob.get("attacks", {})
        parts = [f"eps={rob['eps']:g}"] if "eps" in rob else []
        for key, spec in attacks.items():
            if spec.get("name") == "pgd":
                parts.append(f"{key}: step {spec['alpha']:g}, early_stop={spec['early_stop']}")
            if spec.get("name") == "autoattack":
                parts.append(
                    f"autoattack: {'+'.join(spec['components'])}, {spec['steps']} iterations, "
                    f"{spec['square_queries']} Square queries"
                )
        if parts:
            counts = rob.get("num_images", {})
            parts.append(f"images: {sorted(set(counts.values()))}")
            notes.append((r.name, "; ".join(parts)))
    grouped: dict[str, list[str]] = {}
    for name, text in notes:
        grouped.setdefault(text, []).append(name)
    return [
        f"- {', '.join(names) if len(names) < len(runs) else 'all runs'}: {text}" for text, names in grouped.items()
    ]


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; accuracies in %, missing entries as '—'."""
    titles = [c.replace("_acc", " (%)").replace("wall_time_s", "wall time (s)") for c in columns]
    lines = ["| " + " | ".join(titles) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(c, v) for c, v in zip(columns, row)) + " |")
    return "\n".join(lines)


# --- figures and TensorBoard --------------------------------------------------------------------------------------
def write_figures(runs: Sequence[Run], out: Path) -> list[Path]:
    """accuracy_vs_eps.png, aliasing_per_layer.png, category_fractions.png, training_aliasing.png (what exists)."""
    import numpy as np
    from matplotlib.figure import Figure

    from robustrain.aliasing import CATEGORIES
    from robustrain.evaluation.figures import CATEGORY_COLORS, plot_accuracy_vs_eps

    written = []

    def save(fig, name: str) -> None:
        atomic_savefig(fig, out / name, dpi=110)
        written.append(out / name)

    curves = {r.name: (c["eps"], c["accuracy"]) for r in runs if (c := (r.robustness or {}).get("accuracy_vs_eps"))}
    if curves:
        save(plot_accuracy_vs_eps(curves), "accuracy_vs_eps.png")
    layers = _layers(runs)
    with_alias = [r for r in runs if (r.aliasing or {}).get("aliasing")]
    if layers and with_alias:
        fig = Figure(figsize=(1.5 + 1.2 * len(with_alias) * len(layers) / 2, 3.5))
        ax = fig.subplots()
        width = 0.8 / len(with_alias)
        for i, r in enumerate(with_alias):
            values = [r.aliasing["aliasing"].get(layer, np.nan) for layer in layers]
            ax.bar(np.arange(len(layers)) + i * width, values, width, label=r.name)
        ax.set_xticks(np.arange(len(layers)) + 0.4 - width / 2, layers)
        ax.set_ylabel("aliasing measure (probe set)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        save(fig, "aliasing_per_layer.png")
    with_cat = [r for r in runs if (r.aliasing or {}).get("categories")]
    if with_cat:
        fig = Figure(figsize=(2 + 0.9 * len(with_cat), 3.5))
        ax = fig.subplots()
        bottom = np.zeros(len(with_cat))
        for c in CATEGORIES:
            values = np.array([r.aliasing["categories"]["overall"]["all"][c] or 0.0 for r in with_cat])
            ax.bar(range(len(with_cat)), values, bottom=bottom, color=CATEGORY_COLORS[c], label=c)
            bottom += values
        ax.set_xticks(range(len(with_cat)), [r.name for r in with_cat], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("fraction of output bins (mean over layers)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        save(fig, "category_fractions.png")
    tags = sorted(
        {
            t
            for r in runs
            for t in r.training_scalars
            if t.startswith("aliasing/") and t.split("/", 1)[1] not in MONITOR_BOOKKEEPING
        }
    )
    if tags:
        fig = Figure(figsize=(4 * len(tags), 3.2))
        axes = fig.subplots(1, len(tags), squeeze=False)
        for ax, tag in zip(axes[0], tags):
            for r in runs:
                if tag in r.training_scalars:
                    steps, values = zip(*r.training_scalars[tag])
                    ax.plot(steps, values, marker=".", label=r.name)
            ax.set_title(tag, fontsize=9)
            ax.set_xlabel("step")
            ax.legend(fontsize=7)
        fig.tight_layout()
        save(fig, "training_aliasing.png")
    return written


def write_hparams(columns: Sequence[str], rows: Sequence[Sequence[Any]], out: Path) -> Path:
    """One TensorBoard hparams entry per run under out/tensorboard: method as hparam, the numbers as metrics."""
    from torch.utils.tensorboard import SummaryWriter

    log_dir = out / "tensorboard"
    if log_dir.is_dir():  # a re-run replaces the previous entries instead of adding duplicates
        shutil.rmtree(log_dir)
    with SummaryWriter(log_dir=str(log_dir)) as writer:
        for row in rows:
            values = dict(zip(columns, row))
            hparams = {"run": values["run"], "method": values["method"] or MISSING}
            metrics = {
                f"report/{c}": float(v)
                for c, v in values.items()
                if c not in ("run", "method") and isinstance(v, (int, float)) and v is not None
            }
            writer.add_hparams(hparams, metrics, run_name=str(values["run"]))
    return log_dir


def build_report(
    paths: Sequence[Path | str], out: Path | str, names: Sequence[str] | None = None, hparams: bool = True
) -> tuple[list[str], list[list[Any]]]:
    """Writes out/comparison.md, comparison.csv, comparison.json, the figures and (hparams) out/tensorboard."""
    if names is not None and len(names) != len(paths):
        raise ValueError(f"names has {len(names)} entries for {len(paths)} runs: give one name per run")
    out = Path(out)
    check_writable_folder(out, "--out")
    runs = [load_run(p, names[i] if names else None) for i, p in enumerate(paths)]
    out.mkdir(parents=True, exist_ok=True)
    columns, rows = table_rows(runs)
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(columns)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    atomic_write_text(out / "comparison.csv", table.getvalue())
    atomic_write_text(out / "comparison.json", json.dumps([dict(zip(columns, row)) for row in rows], indent=2))
    figures = write_figures(runs, out)
    lines = [
        "# Comparison",
        "",
        markdown_table(columns, rows),
        "",
        "Accuracies in % of the evaluated test images; aliasing: mean aliasing measure per downsampling layer on "
        "the probe images (robustrain.aliasing); grid: Engstrom et al.'s grid accuracy (SpatialEvaluation); "
        f"epochs and wall time of the training run. {MISSING} = not measured for that run.",
        "",
    ]
    notes = _settings_notes(runs)
    if notes:
        lines += ["Attack settings:", *notes, ""]
    lines += [f"![{p.stem}]({p.name})" for p in figures]
    atomic_write_text(out / "comparison.md", "\n".join(lines) + "\n")
    if hparams:
        write_hparams(columns, rows, out)
    return columns, rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m robustrain.evaluation.comparison_report", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("runs", nargs="+", help="run dirs (runs/<name>), version dirs or checkpoints")
    parser.add_argument("--out", required=True, help="output dir for comparison.md/.csv/.json, figures, tensorboard/")
    parser.add_argument("--names", nargs="+", help="display names, one per run (default: the dir names)")
    parser.add_argument("--no-hparams", action="store_true", help="skip the TensorBoard hparams view")
    args = parser.parse_args(argv)
    try:
        columns, rows = build_report(args.runs, args.out, args.names, hparams=not args.no_hparams)
    except BadInputError as error:
        parser.exit(EXIT_BAD_INPUT, f"{parser.prog}: error: {error}\n")
    except DiskFullError as error:
        parser.exit(EXIT_DISK_FULL, f"{parser.prog}: error: {error}\n")
    print(markdown_table(columns, rows))
    print(f"\nwritten to {args.out}/comparison.md")


if __name__ == "__main__":
    main()
