"""Every speed benchmark in one command: each ratio beside its target and its spread, written to a JSON file.

    python -m benchmarks.run_all [--device cpu|cuda] [--threads N] [--parts ...] [--json docs/results/benchmarks.json]

Runs, each with its tasks alternated within every repeat (so load from elsewhere hits both sides of a ratio alike):
- aliasing (benchmarks.aliasing): the probe check of PreActResNet18's layer2 vs Wong et al.'s PGD-5 check;
  SmallCNN's probe check vs one FGSM-RS epoch on MNIST5k; the per-batch mode (AliasingMonitor every_n_train_steps=1)
  vs the FGSM-RS training step it follows;
- training steps (benchmarks.training): SmallCNN FGSM-RS and PGD-10 steps vs a standard step;
- spatial grid (benchmarks.spatial): full grid and early exit vs the one-image-one-transform loop, on a
  worst-of-10-trained SmallCNN (grid accuracy about 60%; trained on first use, about a minute, cached in runs/bench);
- framework (benchmarks.framework): `train.py fit` with the base callbacks and with the stops vs a bare PyTorch loop
  running the same FGSM-RS step: SmallCNN's MNIST recipe on a CPU, Wong et al.'s CIFAR-10 recipe (PreActResNet18,
  batch 128) on synthetic CIFAR-10-shaped images (robustrain.data.SyntheticImages, no download) on a GPU;
- autoattack (benchmarks.autoattack): robustrain's AutoAttack vs Croce & Hein's reference, whole and per component,
  on the worst-of-10 SmallCNN at eps 0.1 (skipped without the `.[reference]` extra).
A ratio's figure is the median of its per-repeat ratios; the spread is their min..max. About 3 minutes on 2 idle CPU
cores for the first three parts (plus a minute the first time, to train the worst-of-10 model), with the framework
and AutoAttack parts about 15. Next to the JSON, the same as a markdown table.
On a machine shared with other jobs, `--threads 1` keeps the ratios stable (two threads oversubscribe it).
"""

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from benchmarks import autoattack as autoattack_bench
from benchmarks import framework
from benchmarks.aliasing import RATIOS as ALIASING_RATIOS
from benchmarks.aliasing import bench_aliasing
from benchmarks.spatial import bench_rates, worst_of_10_setup
from benchmarks.training import bench_training
from robustrain.attacks.autoattack_reference import check_reference_available

PGD_STEPS = 10
SPATIAL_KEYS = ("full", "early", "seed")


def ratio_summary(numerators: list[float], denominators: list[float]) -> dict[str, float]:
    """Median, min and max over repeats of the per-repeat ratios numerator / denominator.

    Args:
        numerators: One value per repeat.
        denominators: One value per repeat, the same count, each > 0.

    Returns:
        {"median", "min", "max"} of the ratios.
    """
    if len(numerators) != len(denominators) or not numerators:
        raise ValueError(
            f"numerators and denominators must be non-empty and of one length, got {len(numerators)} and "
            f"{len(denominators)}"
        )
    ratios = [a / b for a, b in zip(numerators, denominators)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def meets(value: float, target: float | None, direction: str) -> bool | None:
    """Whether value meets the target: direction "<=" (a cost) or ">=" (a speed-up); None without a target."""
    if direction not in ("<=", ">="):
        raise ValueError(f"direction={direction!r} is not valid; choose one of ['<=', '>=']")
    if target is None:
        return None
    return value <= target if direction == "<=" else value >= target


def _entry(summary: dict[str, float], target: float | None, direction: str, what: str) -> dict[str, object]:
    met = meets(summary["median"], target, direction)
    return {**summary, "target": target, "direction": direction, "meets": met, "what": what}


PARTS = ("aliasing", "training", "spatial", "framework", "autoattack")


def run_all(
    device: torch.device, repeats: dict[str, int], parts: tuple[str, ...] = PARTS
) -> dict[str, dict[str, object]]:
    """The ratios of `parts`, name -> {median, min, max, target, direction, meets, what}, plus the spatial rates and
    the seconds each part took."""
    results: dict[str, dict[str, object]] = {}
    seconds: dict[str, float] = {}
    for part in parts:
        start = time.perf_counter()
        PART_RUNNERS[part](device, repeats[part], results)
        seconds[part] = time.perf_counter() - start
    results["seconds per part"] = seconds
    return results


def _aliasing(device: torch.device, repeats: int, results: dict) -> None:
    times = bench_aliasing(repeats, device)
    for name, (a, b, target, count) in ALIASING_RATIOS.items():
        per_check = [t / count for t in times[a]]
        what = f"{a} / {count} / {b}" if count > 1 else f"{a} / {b}"
        results[name] = _entry(ratio_summary(per_check, times[b]), target, "<=", what)


def _training(device: torch.device, repeats: int, results: dict) -> None:
    steps = bench_training("SmallCNN", 10, 100, repeats, PGD_STEPS, device)
    pgd_target = round(1.05 * (PGD_STEPS + 1), 2)
    for mode, target in (("fgsm", 2.1), (f"pgd{PGD_STEPS}", pgd_target)):
        what = f"SmallCNN {mode} training step / standard step, 10 MNIST5k batches of 100"
        results[f"{mode} step / standard step (SmallCNN)"] = _entry(
            ratio_summary(steps[mode], steps["standard"]), target, "<=", what
        )


def _spatial(device: torch.device, repeats: int, results: dict) -> None:
    model, x, y = worst_of_10_setup(50)
    spatial = bench_rates(model.to(device), x.to(device), y.to(device), repeats, 8, 2, 100)
    rates = spatial["rates"]
    for key, label, target in (("full", "full grid", 20.0), ("early", "early exit", 50.0)):
        what = (
            f"SmallCNN worst-of-10 (grid acc {spatial['grid_acc']:.2f}), 50 images x 775 transforms, {label} vs the "
            "one-image-one-transform loop, image-transforms per second"
        )
        results[f"spatial {label} / one-by-one loop (SmallCNN worst-of-10)"] = _entry(
            ratio_summary(rates[key], rates["seed"]), target, ">=", what
        )
    results["spatial rates (image-transforms/s)"] = {
        key: {"median": statistics.median(r), "min": min(r), "max": max(r)} for key, r in rates.items()
    }
    results["spatial rates (image-transforms/s)"].update(
        grid_acc=spatial["grid_acc"], clean_acc=spatial["clean_acc"], early_exit_work=spatial["early_exit_work"]
    )


def _summary_of(row: dict) -> dict[str, float]:
    """A benchmark's ratio row ({"ratio", "min", "max", ...}) as ratio_summary gives it ({"median", "min", "max"})."""
    return {"median": row["ratio"], "min": row["min"], "max": row["max"]}


def _framework(device: torch.device, repeats: int, results: dict) -> None:
    """fit against the bare loop (benchmarks.framework): SmallCNN's MNIST recipe on a CPU, Wong et al.'s CIFAR-10
    recipe on synthetic CIFAR-10-shaped images on a GPU."""
    model = "PreActResNet18-CIFAR10" if device.type == "cuda" else "SmallCNN"
    rows = framework.measure([model], repeats, str(device))[model]["rows"]
    for config, target in (("base", 1.05), ("stops", 1.10)):
        what = f"{model} FGSM-RS step, `train.py fit` with {config} callbacks / a bare PyTorch loop"
        results[f"fit ({config}) / bare loop ({model})"] = _entry(_summary_of(rows[config]), target, "<=", what)


def _autoattack(device: torch.device, repeats: int, results: dict) -> None:
    """robustrain's AutoAttack against Croce & Hein's reference on a fixed model (benchmarks.autoattack's default)."""
    try:
        check_reference_available()
    except ImportError as error:
        print(f"autoattack part skipped: {error}")
        return
    model, x, y = autoattack_bench.default_setup(100)
    parts = autoattack_bench.bench_autoattack(model.to(device).eval(), x.to(device), y.to(device), 0.1, repeats)
    for part, row in parts.items():
        what = f"AutoAttack {part} on the worst-of-10 SmallCNN, 100 digits, eps 0.1: robustrain / reference seconds"
        target = 1.0 if part == "standard" else None
        results[f"autoattack {part} / reference"] = _entry(_summary_of(row), target, "<=", what)


PART_RUNNERS = {
    "aliasing": _aliasing,
    "training": _training,
    "spatial": _spatial,
    "framework": _framework,
    "autoattack": _autoattack,
}


def to_markdown(report: dict[str, object]) -> str:
    """The report as markdown: its conditions, then one row per ratio (median, min..max, target, met)."""
    conditions = report["conditions"]
    lines = [
        f"`{conditions['command']}`: {conditions['device']} ({conditions['device_name']}), "
        f"{conditions['cpu_threads']} CPU threads, torch {conditions['torch']}, {conditions['date_utc']} UTC; "
        f"repeats {', '.join(f'{k} {v}' for k, v in conditions['repeats'].items())}. Each figure is the median of the "
        "per-repeat ratios, the tasks of a ratio alternated within every repeat; spread = min..max.",
        "",
        "| ratio | median | min..max | target | met |",
        "|---|---|---|---|---|",
    ]
    for name, r in report["results"].items():
        if "direction" not in r:
            continue
        target = "" if r["target"] is None else f"{r['direction']} {r['target']:g}"
        met = {True: "yes", False: "**no**", None: ""}[r["meets"]]
        lines.append(f"| {name} | {r['median']:.4g} | {r['min']:.4g}..{r['max']:.4g} | {target} | {met} |")
    rates = report["results"].get("spatial rates (image-transforms/s)")
    if rates is None:
        return "\n".join(lines) + "\n"
    parts = [f"{k} {rates[k]['median']:.0f} ({rates[k]['min']:.0f}..{rates[k]['max']:.0f})" for k in SPATIAL_KEYS]
    lines += [
        "",
        f"Spatial rates (image-transforms/s, median and min..max): {', '.join(parts)}; grid accuracy "
        f"{rates['grid_acc']:.2f}, early exit evaluates {rates['early_exit_work']:.0%} of the grid.",
    ]
    return "\n".join(lines) + "\n"


def _print(results: dict[str, dict[str, object]]) -> None:
    print(f"{'ratio':62s} {'median':>8s} {'min..max':>18s} {'target':>9s}  met")
    for name, r in results.items():
        if "direction" not in r:
            continue
        target = "" if r["target"] is None else f"{r['direction']} {r['target']:g}"
        met = {True: "yes", False: "NO", None: "-"}[r["meets"]]
        print(f"{name:62s} {r['median']:8.4g} {r['min']:8.4g}..{r['max']:<8.4g} {target:>9s}  {met}")
    rates = results.get("spatial rates (image-transforms/s)")
    if rates is not None:
        parts = [f"{k} {rates[k]['median']:.0f} ({rates[k]['min']:.0f}..{rates[k]['max']:.0f})" for k in SPATIAL_KEYS]
        print(
            f"spatial image-transforms/s: {', '.join(parts)}; grid acc {rates['grid_acc']:.2f}; early exit evaluates "
            f"{rates['early_exit_work']:.0%} of the grid's image-transforms"
        )
    print("seconds per part: " + ", ".join(f"{k} {v:.0f}" for k, v in results["seconds per part"].items()))


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run_all", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="torch device of every run: cpu (default) or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--aliasing-repeats", type=int, default=3)
    parser.add_argument("--training-repeats", type=int, default=5)
    parser.add_argument("--spatial-repeats", type=int, default=3)
    parser.add_argument("--framework-repeats", type=int, default=3)
    parser.add_argument("--autoattack-repeats", type=int, default=2)
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS, help="which parts (default: all)")
    parser.add_argument("--json", type=Path, default=Path("docs/results/benchmarks.json"), help="where to write")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    command = " ".join(["python -m benchmarks.run_all", *(sys.argv[1:] if argv is None else argv)])
    conditions = {
        "device": str(device),
        "device_name": where,
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "command": command,
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
    }
    print(", ".join(f"{k} {v}" for k, v in conditions.items()))
    repeats = {part: getattr(args, f"{part}_repeats") for part in args.parts}
    results = run_all(device, repeats, tuple(args.parts))
    _print(results)
    report = {"conditions": {**conditions, "repeats": repeats}, "results": results}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    args.json.with_suffix(".md").write_text(to_markdown(report))
    print(f"written to {args.json} and {args.json.with_suffix('.md')}")
    return report


if __name__ == "__main__":
    main()
