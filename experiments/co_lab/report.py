"""The CO lab: does any detector stop FGSM training before catastrophic overfitting (CO)? One command, four steps.

    python -m experiments.co_lab.report all --out runs/co_lab --docs docs/results/co_lab \\
        --setting configs/co_lab/smallcnn_injected.yaml --seeds 0 1 2 3 4 5 \\
        --setting configs/co_lab/preact18_injected.yaml --seeds 0 1 2 3 4 5 ...

- train: every setting (a config file, or several stacked with `+`, plus `key=value` overrides after `:`) at its
  seeds, through `python train.py fit`, every detector recording monitor-only (configs/co_lab/detectors_*.yaml) and
  the weights of every epoch kept (experiments.co_lab.runs).
- select: each run is classified from its held-out PGD / FGSM accuracy per epoch (experiments.co_lab.outcomes:
  catastrophic, healthy, never robust); every rule of every detector family is replayed on the recorded
  histories (the callbacks' own decision function), and each family's rule is chosen on the tuning seeds (even
  seeds) by held-out accuracy only: most CO runs handed back within 3 points of the oracle, at most one false stop.
- evaluate: PGD-50-10 (and, on the reporting seeds, AutoAttack) on the test set of the models the chosen rules hand
  back and of the oracle's (experiments.co_lab.evaluate).
- report: tables and figures into --docs: co_lab.md, co_lab.json, distance_vs_threshold.png (Grabinski et al.'s
  Fig. 15 for every detector) and signals.png (every signal through the collapse).
"""

import argparse
import json
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from experiments.co_lab import evaluate as test_eval
from experiments.co_lab import runs as lab_runs
from experiments.co_lab.detectors import THRESHOLDS, Detector, cost_task, families
from experiments.co_lab.outcomes import COLLAPSED, WITHIN, within_oracle
from experiments.co_lab.runs import Run
from experiments.co_lab.scoring import Score, choose, outcome, score, stop_for
from experiments.steps import refuse_missing_out
from robustrain.stopping import Rule

SELECTION = "selection.json"


def is_tuning(run: Run) -> bool:
    """Even seeds tune the rules, odd seeds report them."""
    return run.seed % 2 == 0


# --- select ---------------------------------------------------------------------------------------------------------
def select(out: Path) -> dict[str, Any]:
    """Choose every family's rule on the tuning runs; writes and returns <out>/selection.json."""
    runs = lab_runs.load_runs(out)
    tuning = [r for r in runs if is_tuning(r)]
    chosen = {}
    for family, detectors in families().items():
        applicable = [d for d in detectors if all(records_of(r, d) for r in runs)]
        if not applicable:
            continue
        detector, tuned = choose(applicable, tuning)
        chosen[family] = {"detector": _detector_json(detector), "tuning": _score_json(tuned), "tried": len(applicable)}
    (out / SELECTION).write_text(json.dumps(chosen, indent=1))
    return chosen


def records_of(run: Run, detector: Detector) -> list[dict]:
    """The run's records the detector reads (none: it was not recorded, e.g. no step-level checks)."""
    return [r for r in run.histories.get(detector.history, []) if r["kind"] == detector.kind]


def _detector_json(detector: Detector) -> dict[str, Any]:
    return {**asdict(detector), "rule": asdict(detector.rule)}


def _detector_of(data: dict[str, Any]) -> Detector:
    return Detector(**{**data, "rule": Rule(**data["rule"])})


def _score_json(s: Score) -> dict[str, Any]:
    return {
        "hits": s.hits,
        "co_runs": s.co_runs,
        "false_stops": s.false_stops,
        "healthy_runs": s.healthy_runs,
        "lags": [None if not math.isfinite(v) else v for v in s.lags],
    }


def chosen_detectors(out: Path) -> dict[str, Detector]:
    selection = json.loads((out / SELECTION).read_text())
    return {family: _detector_of(item["detector"]) for family, item in selection.items()}


# --- evaluate -------------------------------------------------------------------------------------------------------
def epochs_to_test(run: Run, detectors: dict[str, Detector]) -> set[int]:
    """The oracle's and the final epoch, and every chosen rule's hand-back."""
    epochs = {outcome(run).oracle_epoch, run.epochs - 1}
    for detector in detectors.values():
        stop = stop_for(run, detector)
        epochs.add(run.epochs - 1 if stop is None else stop.handed_back)
    return epochs


def evaluate(out: Path, images: Sequence[str], autoattack_images: Sequence[str]) -> None:
    """Test PGD-50-10 and AutoAttack of the oracle's and the handed-back models of the reporting CO runs (healthy runs
    are scored by their false stops alone)."""
    detectors = chosen_detectors(out)
    for run in lab_runs.load_runs(out):
        if is_tuning(run) or outcome(run).kind != "catastrophic":
            continue
        print(f"evaluating {run.name}", flush=True)
        attacks = ("clean", "pgd_50x10", "autoattack")
        n = test_eval.images_for(images, run.network)
        n_autoattack = test_eval.images_for(autoattack_images, run.network)
        test_eval.evaluate_epochs(run, epochs_to_test(run, detectors), attacks, n, n_autoattack)


# --- report ---------------------------------------------------------------------------------------------------------
def _fmt_lag(lags: Sequence[float]) -> str:
    if not lags:
        return "—"
    finite = [v for v in lags if math.isfinite(v)]
    never = len(lags) - len(finite)
    text = f"{statistics.median(lags):+.2g}" if len(finite) * 2 > len(lags) else "never"
    if finite:
        text += f" ({min(finite):+.2g}..{max(finite):+.2g})"
    return text + (f", {never} never" if never and finite else "")


def weak_attack_only(run: Run) -> bool:
    """A catastrophic run whose oracle model holds no more than COLLAPSED under the test's PGD-50-10: it was robust
    only against the weak validation attack, so "within 3 points of the oracle" would say nothing. Such runs are
    left out of the report's scores and listed (run_rows' "strong_attack_oracle")."""
    out_ = outcome(run)
    if out_.kind != "catastrophic":
        return False
    oracle = test_eval.cache_of(run).get(out_.oracle_epoch, {})
    return "pgd_50x10" in oracle and oracle["pgd_50x10"] <= COLLAPSED + 1e-9


def report_rows(out: Path, costs: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per family on the reporting runs (test-set accuracies)."""
    runs = [r for r in lab_runs.load_runs(out) if not is_tuning(r) and not weak_attack_only(r)]
    selection = json.loads((out / SELECTION).read_text())
    tests = {run.name: test_eval.cache_of(run) for run in runs}  # read once, for every family

    def test_pgd(run: Run, epoch: int) -> float:
        return 0.0 if epoch < 0 else tests[run.name][epoch]["pgd_50x10"]

    rows = []
    for family, item in selection.items():
        detector = _detector_of(item["detector"])
        s = score(detector, runs, test_pgd)
        aa_handed, aa_oracle, per_run = [], [], []
        for run in runs:
            out_ = outcome(run)
            if out_.kind != "catastrophic":
                continue
            handed = s.handed_back[run.name]
            cache = tests[run.name]
            aa_h = 0.0 if handed < 0 else cache[handed].get("autoattack", math.nan)
            aa_o = cache[out_.oracle_epoch].get("autoattack", math.nan)
            aa_handed.append(aa_h)
            aa_oracle.append(aa_o)
            per_run.append(
                {
                    "run": run.name,
                    "collapse_epoch": out_.collapse_epoch,
                    "oracle_epoch": out_.oracle_epoch,
                    "handed_back": handed,
                    "pgd_handed": test_pgd(run, handed),
                    "pgd_oracle": test_pgd(run, out_.oracle_epoch),
                    "autoattack_handed": aa_h,
                    "autoattack_oracle": aa_o,
                    "within_3_points": within_oracle(test_pgd(run, handed), test_pgd(run, out_.oracle_epoch)),
                }
            )
        by_network = {}
        for network in sorted({run.network for run in runs}):
            n = score(detector, [run for run in runs if run.network == network], test_pgd)
            by_network[network] = {
                "hits": n.hits,
                "co_runs": n.co_runs,
                "false_stops": n.false_stops,
                "healthy_runs": n.healthy_runs,
                "lag": _fmt_lag(n.lags),
            }
        task, per_epoch = cost_task(detector)
        cost = {
            network: {k: per_epoch * tasks[task][k] for k in ("vs_fgsm_epoch", "vs_pgd_es")}
            for network, tasks in costs.items()
            if task in tasks
        }
        rows.append(
            {
                "family": family,
                "rule": detector.describe(),
                "tuning": item["tuning"],
                "hits": s.hits,
                "co_runs": s.co_runs,
                "false_stops": s.false_stops,
                "healthy_runs": s.healthy_runs,
                "lags": [None if not math.isfinite(v) else v for v in s.lags],
                "lag": _fmt_lag(s.lags),
                "autoattack_handed_median": _median(aa_handed),
                "autoattack_oracle_median": _median(aa_oracle),
                "cost_per_epoch": cost,
                "runs": per_run,
                "by_network": by_network,
            }
        )
    return rows


def _median(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return statistics.median(finite) if finite else math.nan


def runs_table(out: Path) -> list[dict[str, Any]]:
    rows = []
    for run in lab_runs.load_runs(out):
        o = outcome(run)
        rows.append(
            {
                "run": run.name,
                "half": "tune" if is_tuning(run) else "report",
                "network": run.network,
                "class": o.kind + (" (gradual decline)" if o.gradual else ""),
                "collapse_epoch": o.collapse_epoch,
                "oracle_epoch": o.oracle_epoch,
                "best_val_pgd": max(run.val["acc_pgd"]),
                "final_val_pgd": run.val["acc_pgd"][-1],
                "final_val_fgsm": run.val["acc_fgsm"][-1],
                "test_pgd_oracle": test_eval.cache_of(run).get(o.oracle_epoch, {}).get("pgd_50x10"),
                "weak_attack_only": weak_attack_only(run),
                "val_pgd": run.val["acc_pgd"],
                "val_fgsm": run.val["acc_fgsm"],
            }
        )
    return rows


def _pct(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


def _ratio(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.3g}"


def _costs(cost: dict[str, dict[str, float]]) -> str:
    if not cost:
        return "not measured"
    return "; ".join(
        f"{network}: {_ratio(c['vs_fgsm_epoch'])} of an FGSM epoch, {_ratio(c['vs_pgd_es'])} x PGD-ES"
        for network, c in cost.items()
    )


def _oracle_note(r: dict[str, Any]) -> str:
    if r.get("test_pgd_oracle") is None:
        return ""
    weak = ": robust only to the weak validation attack, left out of the scores" if r["weak_attack_only"] else ""
    return f" (test PGD-50-10 {_pct(r['test_pgd_oracle'])}{weak})"


def markdown(rows: list[dict[str, Any]], run_rows: list[dict[str, Any]], command: str) -> str:
    lines = [
        "# CO lab: which signal stops FGSM training before catastrophic overfitting",
        "",
        f"Regenerate from the trained runs: `{command}` (the whole study, training included: docs/co_lab.md)",
        "",
        "## Detectors on the reporting seeds (odd seeds; rules chosen on the even seeds)",
        "",
        "Per detector family: the rule chosen on the tuning seeds; how many catastrophic runs it hands back a model "
        f"within {100 * WITHIN:.0f} points of the oracle's (test PGD-50-10); the median lag of its stop behind the "
        "collapse, in epochs (negative: before the collapse epoch's end; min..max); the median AutoAttack accuracy of "
        "the handed-back models and of the oracles' (%); its false stops on the healthy runs; and the measured cost of "
        "its checks per epoch, as a fraction of one FGSM training epoch and against Wong et al.'s PGD-ES check "
        "(python -m benchmarks.detectors).",
        "",
    ]
    for row in rows:
        t = row["tuning"]
        lines += [
            f"- **{row['family']}**: {row['hits']}/{row['co_runs']} CO runs within 3 points; lag {row['lag']}; "
            f"AutoAttack handed back {_pct(row['autoattack_handed_median'])} vs oracle "
            f"{_pct(row['autoattack_oracle_median'])}; false stops {row['false_stops']}/{row['healthy_runs']}; "
            f"cost per epoch {_costs(row['cost_per_epoch'])} "
            f"(tuning: {t['hits']}/{t['co_runs']}, {t['false_stops']}/{t['healthy_runs']} false stops)",
            f"  - rule: {row['rule']}",
        ]
    networks = sorted({network for row in rows for network in row.get("by_network", {})})
    if networks:
        lines += [
            "",
            "## By network (reporting seeds)",
            "",
            "Per network: CO runs handed back within 3 points of the oracle / CO runs, false stops / healthy runs, and "
            "the median lag in epochs (min..max).",
            "",
            "| detector | " + " | ".join(networks) + " |",
            "|---" * (len(networks) + 1) + "|",
        ]
        for row in rows:
            cells = []
            for network in networks:
                n = row["by_network"].get(network)
                cells.append(
                    "—"
                    if n is None
                    else f"{n['hits']}/{n['co_runs']} hit, {n['false_stops']}/{n['healthy_runs']} false, lag {n['lag']}"
                )
            lines.append(f"| {row['family']} | " + " | ".join(cells) + " |")
    counts: dict[str, dict[str, int]] = {}
    for r in run_rows:
        setting = r["run"].split("/")[0]
        counts.setdefault(setting, {}).setdefault(r["class"], 0)
        counts[setting][r["class"]] += 1
    lines += ["", "## Runs per setting", ""]
    for setting, by_class in counts.items():
        lines.append(f"- {setting}: " + ", ".join(f"{n} {k}" for k, n in sorted(by_class.items())))
    lines += ["", "## Every run (held-out PGD accuracy per epoch, %)", ""]
    for r in run_rows:
        curve = " ".join(f"{100 * v:.0f}" for v in r["val_pgd"])
        lines.append(
            f"- {r['run']} ({r['half']}, {r['network']}): **{r['class']}**"
            + (f", collapse at epoch {r['collapse_epoch']}" if r["collapse_epoch"] is not None else "")
            + f", oracle epoch {r['oracle_epoch']}"
            + _oracle_note(r)
            + f"; PGD: {curve}"
        )
    return "\n".join(lines) + "\n"


def report(out: Path, docs: Path, costs_path: Path | None, command: str) -> dict[str, Any]:
    """Tables and figures of the study into `docs`."""
    from experiments.co_lab import figures

    costs = json.loads(costs_path.read_text()).get("networks", {}) if costs_path and costs_path.is_file() else {}
    rows = report_rows(out, costs)
    run_rows = runs_table(out)
    docs.mkdir(parents=True, exist_ok=True)
    result = {"detectors": rows, "runs": run_rows, "command": command}
    (docs / "co_lab.json").write_text(json.dumps(result, indent=1, default=str))
    (docs / "co_lab.md").write_text(markdown(rows, run_rows, command))
    runs = lab_runs.load_runs(out)
    figures.distance_vs_threshold(runs, chosen_detectors(out), THRESHOLDS, docs / "distance_vs_threshold.png")
    figures.signals(runs, docs / "signals.png")
    return result


# --- CLI ------------------------------------------------------------------------------------------------------------
def _settings(args: argparse.Namespace) -> list[lab_runs.Job]:
    jobs = []
    for spec, seeds in zip(args.setting or [], args.seeds or [], strict=True):
        configs, _, overrides = spec.partition(":")
        tag = None
        if "@" in configs:
            configs, _, tag = configs.partition("@")
        jobs += lab_runs.jobs(configs.split("+"), seeds, [o for o in overrides.split(",") if o], tag)
    return jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.co_lab.report", description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=("train", "select", "evaluate", "report", "all"))
    parser.add_argument("--out", type=Path, default=Path("runs/co_lab"))
    parser.add_argument("--docs", type=Path, default=Path("docs/results/co_lab"))
    parser.add_argument(
        "--setting",
        action="append",
        help="config[+config...][@name][:key=value,...]; repeat, each followed by its --seeds",
    )
    parser.add_argument("--seeds", action="append", type=int, nargs="+", help="the seeds of the preceding --setting")
    parser.add_argument("--parallel", type=int, default=1, help="training processes at a time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training process")
    test_eval.add_image_count_arguments(parser, ["500"], ["200"])
    parser.add_argument("--costs", type=Path, default=Path("docs/results/benchmarks_detectors.json"))
    args = parser.parse_args(argv)
    if args.step not in ("train", "all") and refuse_missing_out("experiments.co_lab.report", args.out):
        return 2
    if len(args.setting or []) != len(args.seeds or []):
        parser.error("give every --setting its --seeds")
    given = list(sys.argv[1:] if argv is None else argv)
    shown = ["runs/co_lab" if i and given[i - 1] == "--out" else a for i, a in enumerate(given)]
    command = "python -m experiments.co_lab.report " + " ".join(shown)
    if args.step in ("train", "all"):
        lab_runs.train(_settings(args), args.out, args.parallel, args.threads)
    if args.step in ("select", "all"):
        select(args.out)
    if args.step in ("evaluate", "all"):
        evaluate(args.out, args.test_images, args.autoattack_images)
    if args.step in ("report", "all"):
        report(args.out, args.docs, args.costs, command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
