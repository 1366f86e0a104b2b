"""The stop study's command and its steps after training: select the rule, evaluate, write the report.

    python -m experiments.stop_study.report all --out runs/stop_study --docs docs/results/stop_study

Steps: `train` (experiments.stop_study.study), `select`, `evaluate`, `report`; `all` runs them in order and skips
runs already trained. What the study does: experiments/stop_study/study.py.
"""

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from experiments.steps import refuse_missing_out
from experiments.stop_study.study import (
    PAPER_RULE,
    REPORT_SEEDS,
    RULE_GRID,
    TUNE_SEEDS,
    WITHIN,
    aliasing_stop,
    classify,
    evaluate_epoch,
    handed_back,
    load_run,
    oracle_epoch,
    pgd_es_stop,
    score_rule,
    select_rule,
    train,
)

THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.33, 0.35, 0.4, 0.5, 0.6, 0.8, 1.0)


def load_runs(out: Path) -> list[dict[str, Any]]:
    """Every trained run under out/runs, classified, with its half (tune / report)."""
    runs = []
    for path in sorted((out / "runs").glob("*/summary.json")):
        run = load_run(path.parent)
        run["kind"] = classify(run["val_acc_pgd"])
        run["half"] = "tune" if run["seed"] in TUNE_SEEDS else "report"
        runs.append(run)
    if not runs:
        raise SystemExit(f"no trained runs under {out / 'runs'}: run the 'train' step first")
    return runs


def select(out: Path) -> dict[str, Any]:
    """Tune each measure's rule on the tuning seeds, compare the tuned rules on the report seeds.

    Writes selection.json.
    """
    runs = load_runs(out)
    tune = [r for r in runs if r["half"] == "tune"]
    held = [r for r in runs if r["half"] == "report"]
    result: dict[str, Any] = {"tune_seeds": TUNE_SEEDS, "report_seeds": REPORT_SEEDS, "rules": {}}
    for measure in RULE_GRID["measure"]:
        best, _ = select_rule(tune, dict(RULE_GRID, measure=(measure,)))
        result["rules"][measure] = {"rule": best, "tune": score_rule(tune, best), "report": score_rule(held, best)}
    result["rules"]["paper"] = {
        "rule": PAPER_RULE,
        "tune": score_rule(tune, PAPER_RULE),
        "report": score_rule(held, PAPER_RULE),
    }

    def held_score(measure: str) -> tuple:
        s = result["rules"][measure]["report"]
        return (
            s["hits"] - 2 * s["false_stops"],
            -s["mean_abs_distance"] if math.isfinite(s["mean_abs_distance"]) else -99,
        )

    # the measure that scores better on the report half; a tie keeps the paper's (absolute)
    result["default_measure"] = max(RULE_GRID["measure"], key=lambda m: (*held_score(m), m == "absolute"))
    (out / "selection.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return result


def _stops(run: dict, selection: dict) -> dict[str, tuple[int | None, int]]:
    """Method -> (stop epoch or None, handed-back epoch)."""
    last = len(run["val_acc_pgd"]) - 1
    acc = run["val_acc_pgd"]
    oracle = oracle_epoch(acc)
    stops = {"oracle": (oracle, oracle), "final": (None, last)}
    pgd = pgd_es_stop(run)
    stops["pgd_es"] = (pgd, handed_back(pgd, last))
    for name, entry in selection["rules"].items():
        stop = aliasing_stop(run, entry["rule"])
        stops[f"aliasing_{name}"] = (stop, handed_back(stop, last))
    return stops


def evaluate(out: Path, n_images: int, shard: str = "0/1") -> None:
    """PGD-50-10 and AutoAttack of every handed-back model (unique epochs per run); cached in each run's evals.json."""
    selection = json.loads((out / "selection.json").read_text())
    k, n = (int(v) for v in shard.split("/"))
    runs = [r for r in load_runs(out) if r["kind"] != "never_robust"]  # no robustness to lose: not scored
    for i, run in enumerate(runs):
        if i % n != k:
            continue
        path = Path(run["dir"]) / "evals.json"
        evals = json.loads(path.read_text()) if path.exists() else {}
        for epoch in sorted({back for _, back in _stops(run, selection).values()}):
            key = f"{epoch}@{n_images}"
            if key not in evals:
                print(f"evaluating {Path(run['dir']).name} epoch {epoch}", flush=True)
                evals[key] = evaluate_epoch(run, epoch, n_images)
                path.write_text(json.dumps(evals, indent=1))


def measure_cost(repeats: int = 15) -> dict[str, Any]:
    """Seconds per check of the two stops as the study ran them, on SmallCNN: the aliasing probe (100 fixed training
    digits, both measures) vs Wong's PGD-5 check (one training batch of 100). Alternated, median and spread."""
    from robustrain.aliasing import probe_aliasing
    from robustrain.attacks import pgd
    from robustrain.core.train_eval_modes import eval_mode
    from robustrain.data import MNIST5k
    from robustrain.models import SmallCNN

    data = MNIST5k(batch_size=100)
    data.setup("fit")
    probe = data.probe_set(100, 0)[0]
    x, y = next(iter(data.train_dataloader()))
    net = SmallCNN()

    def aliasing_check() -> None:
        probe_aliasing(net, probe)

    def pgd_check() -> None:
        with eval_mode(net):
            adv = pgd(net, x, y, 0.3, 0.1, 5)
            with torch.no_grad():
                net(adv).argmax(1)

    times: dict[str, list[float]] = {"aliasing": [], "pgd_es": []}
    for i in range(repeats + 1):
        for name, fn in (("aliasing", aliasing_check), ("pgd_es", pgd_check)):
            start = time.perf_counter()
            fn()
            if i:
                times[name].append(time.perf_counter() - start)
    ratios = sorted(a / p for a, p in zip(times["aliasing"], times["pgd_es"]))
    return {
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "aliasing_ms": 1000 * statistics.median(times["aliasing"]),
        "pgd_es_ms": 1000 * statistics.median(times["pgd_es"]),
        "ratio_median": statistics.median(ratios),
        "ratio_min": ratios[0],
        "ratio_max": ratios[-1],
    }


def _fmt(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.0f}"


def write(out: Path, docs: Path) -> None:
    """docs/<...>/stop_study.md (per-run table, summary), stop_study.json and the figures."""
    selection = json.loads((out / "selection.json").read_text())
    default = f"aliasing_{selection['default_measure']}"
    runs = load_runs(out)
    docs.mkdir(parents=True, exist_ok=True)
    rows, records = [], []
    for run in runs:
        stops = _stops(run, selection)
        evals = (
            json.loads((Path(run["dir"]) / "evals.json").read_text())
            if (Path(run["dir"]) / "evals.json").exists()
            else {}
        )
        acc = run["val_acc_pgd"]

        def ev(epoch: int, key: str, evals: dict = evals) -> float | None:
            hits = [v for k, v in evals.items() if k.split("@")[0] == str(epoch)]
            return hits[0].get(key) if hits else None

        record = {
            "setting": run["setting"],
            "seed": run["seed"],
            "half": run["half"],
            "kind": run["kind"],
            "best_val_pgd": max(acc),
            "final_val_pgd": acc[-1],
            "seconds": run["seconds"],
        }
        for method, (stop, back) in stops.items():
            record[method] = {
                "stop": stop,
                "epoch": back,
                "val_pgd": acc[back] if back >= 0 else 0.0,
                "pgd_50x10": ev(back, "pgd_50x10"),
                "autoattack": ev(back, "autoattack"),
                "clean": ev(back, "clean"),
            }
        records.append(record)
        o, p, a = record["oracle"], record["pgd_es"], record[default]
        rows.append(
            f"| {run['setting']} | {run['seed']} | {run['half']} | {run['kind']} | {o['epoch']} | {_fmt(o['val_pgd'])} "
            f"| {_fmt(o['pgd_50x10'])} / {_fmt(o['autoattack'])} "
            f"| {p['stop'] if p['stop'] is not None else '—'} | {_fmt(p['val_pgd'])} "
            f"| {_fmt(p['pgd_50x10'])} / {_fmt(p['autoattack'])} "
            f"| {a['stop'] if a['stop'] is not None else '—'} | {a['epoch'] - o['epoch']:+d} | {_fmt(a['val_pgd'])} "
            f"| {_fmt(a['pgd_50x10'])} / {_fmt(a['autoattack'])} | {_fmt(acc[-1])} |"
        )
    summary = _summary(records, selection)
    cost = measure_cost()
    (docs / "stop_study.json").write_text(
        json.dumps({"selection": selection, "summary": summary, "cost": cost, "runs": records}, indent=1)
    )
    _figure_distance_vs_threshold(runs, selection, docs / "distance_vs_threshold.png")
    _figure_curves(runs, selection, docs / "curves.png")
    rule = selection["rules"][selection["default_measure"]]["rule"]
    lines = [
        "# Aliasing early stop vs PGD early stop vs the oracle, MNIST5k FGSM runs",
        "",
        "Regenerate: `python -m experiments.stop_study.report all --out runs/stop_study "
        "--docs docs/results/stop_study`",
        "",
        f"Default rule (tuned on seeds {list(TUNE_SEEDS)}, scored on seeds {list(REPORT_SEEDS)}): "
        + ", ".join(f"{k}={v}" for k, v in rule.items()),
        "",
        "Val PGD: held-out PGD-20 (step 0.03) accuracy of the handed-back epoch on the 500 validation digits; "
        "PGD-50-10 / AA: PGD-50-10 (step 0.01) and AutoAttack (standard, 100 iterations) on the first test digits "
        "(see `--eval-images`), in %. Distance: handed-back epoch minus the oracle's.",
        "",
        "## Summary",
        "",
        *_summary_lines(summary),
        "",
        f"Never robust (best val PGD < 25%, not scored): {summary['all/never_robust']['runs']} runs. "
        "`aliasing_paper` is the rule before the study (the paper's t = 0.33, window 3, 5-epoch warm-up, lr-peak "
        "wait); `aliasing_absolute` / `aliasing_relative` are the rules tuned per measure on the tuning seeds; "
        "`final` hands back the last epoch.",
        "",
        f"Cost per check (SmallCNN, {cost['threads']} thread(s), alternated, median of {cost['repeats']}): aliasing "
        f"probe {cost['aliasing_ms']:.1f} ms, PGD-5 check {cost['pgd_es_ms']:.1f} ms, ratio {cost['ratio_median']:.2f} "
        f"(spread {cost['ratio_min']:.2f}-{cost['ratio_max']:.2f}).",
        "",
        "## Every run",
        "",
        "| setting | seed | half | kind | oracle epoch | val PGD | PGD-50-10 / AA "
        "| PGD-ES stop | val PGD | PGD-50-10 / AA "
        "| aliasing stop | distance | val PGD | PGD-50-10 / AA | final val PGD |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "![distance vs threshold](distance_vs_threshold.png)",
        "",
        "![curves](curves.png)",
    ]
    (docs / "stop_study.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _summary(records: list[dict], selection: dict) -> dict[str, Any]:
    methods = ["pgd_es", *(f"aliasing_{m}" for m in selection["rules"]), "final"]
    summary: dict[str, Any] = {}
    for half in ("tune", "report", "all"):
        for kind in ("catastrophic", "gradual", "healthy", "never_robust"):
            group = [r for r in records if r["kind"] == kind and (half == "all" or r["half"] == half)]
            entry = {"runs": len(group)}
            for method in methods:
                if not group:
                    continue
                within = [r[method]["val_pgd"] >= r["oracle"]["val_pgd"] - WITHIN for r in group]
                stopped = [r[method]["stop"] is not None for r in group]
                dist = [r[method]["epoch"] - r["oracle"]["epoch"] for r in group]
                entry[method] = {
                    "within_3_points": sum(within),
                    "stopped": sum(stopped),
                    "median_distance": statistics.median(dist),
                }
            summary[f"{half}/{kind}"] = entry
    return summary


def _summary_lines(summary: dict[str, Any]) -> list[str]:
    """The scored kinds, per half; never-robust runs (nothing to lose) are only counted."""
    lines = [
        "| half / kind | runs | method | within 3 points of the oracle | stopped | median distance (epochs) |",
        "|---|---|---|---|---|---|",
    ]
    for key, entry in summary.items():
        if key.endswith("never_robust"):
            continue
        for method, v in entry.items():
            if method == "runs":
                continue
            lines.append(
                f"| {key} | {entry['runs']} | {method} | {v['within_3_points']} | {v['stopped']} "
                f"| {v['median_distance']:+g} |"
            )
    return lines


def _figure_distance_vs_threshold(runs: list[dict], selection: dict, path: Path) -> None:
    """The paper's Fig. 15: handed-back epoch minus the oracle's, per overfitting run, against the threshold t."""
    fig = Figure(figsize=(10, 4))
    for i, measure in enumerate(("absolute", "relative")):
        ax = fig.add_subplot(1, 2, i + 1)
        rule = dict(selection["rules"][measure]["rule"])
        for run in runs:
            if run["kind"] in ("healthy", "never_robust"):
                continue
            acc = run["val_acc_pgd"]
            oracle = oracle_epoch(acc)
            dist = [handed_back(aliasing_stop(run, dict(rule, threshold=t)), len(acc) - 1) - oracle for t in THRESHOLDS]
            style = "-" if run["half"] == "report" else ":"
            ax.plot(
                THRESHOLDS, dist, style, marker="o", ms=3, label=f"{run['setting']} s{run['seed']} ({run['kind'][:4]})"
            )
        ax.axhline(0, color="k", lw=0.8)
        ax.axvline(0.33, color="grey", ls="--", lw=0.8)
        ax.set_xlabel("threshold t")
        ax.set_ylabel("handed-back epoch - oracle epoch")
        ax.set_title(f"{measure} measure (other settings: tuned)")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _figure_curves(runs: list[dict], selection: dict, path: Path) -> None:
    """Held-out PGD accuracy and the monitored aliasing per epoch for every overfitting run, stops marked."""
    chosen = [r for r in runs if r["kind"] in ("catastrophic", "gradual")][:12] or runs[:4]
    cols = 4
    rows = -(-len(chosen) // cols)
    fig = Figure(figsize=(4 * cols, 3 * rows))
    measure = selection["default_measure"]
    for i, run in enumerate(chosen):
        ax = fig.add_subplot(rows, cols, i + 1)
        epochs = range(len(run["val_acc_pgd"]))
        ax.plot(epochs, run["val_acc_pgd"], color="tab:blue", label="val PGD acc")
        ax.set_ylim(0, 1)
        ax.set_xlabel("epoch")
        ax2 = ax.twinx()
        column = ("relative/" if measure == "relative" else "") + run["series"]
        ax2.plot(
            [r["epoch"] for r in run["aliasing"]],
            [r[column] for r in run["aliasing"]],
            color="tab:red",
            label=f"aliasing ({measure})",
        )
        stops = _stops(run, selection)
        for method, color in (("oracle", "k"), ("pgd_es", "tab:green"), (f"aliasing_{measure}", "tab:red")):
            if stops[method][0] is not None:
                ax.axvline(stops[method][1], color=color, ls="--", lw=1, label=f"{method} hands back")
        ax.set_title(f"{run['setting']} seed {run['seed']} ({run['kind']})", fontsize=8)
        if i == 0:
            ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.stop_study.report", description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=("train", "select", "evaluate", "report", "all"))
    parser.add_argument("--out", type=Path, default=Path("runs/stop_study"))
    parser.add_argument("--docs", type=Path, default=Path("docs/results/stop_study"))
    parser.add_argument("--only", nargs="*", default=None, help="settings to train (default all)")
    parser.add_argument("--shard", default="0/1", help="k/n: train only every n-th run starting at k (parallel jobs)")
    parser.add_argument("--eval-images", type=int, default=100, help="test digits for PGD-50-10 and AutoAttack")
    args = parser.parse_args(argv)
    if args.step not in ("train", "all") and refuse_missing_out("experiments.stop_study.report", args.out):
        return 2
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))  # one thread per job: run shards side by side
    if args.step in ("train", "all"):
        train(args.out, args.only, args.shard)
    if args.step in ("select", "all"):
        select(args.out)
    if args.step in ("evaluate", "all"):
        evaluate(args.out, args.eval_images, args.shard)
    if args.step in ("report", "all"):
        write(args.out, args.docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
