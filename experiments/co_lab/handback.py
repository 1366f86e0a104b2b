"""Which model a stop hands back: hand-back policies replayed on the prevention study's recorded runs, scored with
95% intervals, without retraining.

A detector's stop is its first recorded stop decision (the monitor-only decision of its default rule, in the run's
`<name>_history.csv`), at the end of epoch s. The run keeps every epoch's weights (`checkpoints/epoch=NN.ckpt`), so
each policy's choice among the epochs before s is replayed exactly:

- `last_check`: epoch s - 1, the weights of the last check that said "go on" (robustrain's stops today);
- `best_probe_K`: of the last K epochs before s, the one with the best robust accuracy on a fixed probe (PGD-5 at
  step eps / 4 on 128 training digits, seed 0), measured when its snapshot is taken: K model copies in memory;
- `best_val_K`: of the last K epochs before s, the best `val/acc_pgd` (the held-out PGD-10 the run validates with
  every epoch); `best_val_all`: of every epoch before s (a stop that keeps the best-so-far model, as ModelCheckpoint
  does). best_val needs PGD validation at every epoch, and held-out accuracy picks the oracle by construction, so all
  policies are scored on the test set.

A run without a stop hands back its final epoch. Scores, on the report seeds (20-29) of every SmallCNN single-step
and PGD run of the prevention study:
- a **collapse** (catastrophic or partial, experiments.co_lab.outcomes) is **hit** when the handed-back model's test
  PGD-50-10 (250 test digits, step eps / 10) is within 3 points of the run's best epoch's (the oracle, every epoch
  attacked);
- a **healthy** run is **falsely stopped** when the detector stops it at all;
- rates come with Wilson 95% intervals.
The cost of a policy is counted in forward+backward passes over images per epoch, against an FGSM epoch's (4000
digits x 2 passes): nothing is timed here.

    python -m experiments.co_lab.handback measure --out runs/prevention --parallel 2
    python -m experiments.co_lab.handback report --out runs/prevention --docs docs/results/co_lab
"""

import argparse
import json
import math
import multiprocessing
import statistics
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from experiments.co_lab import evaluate as test_eval
from experiments.co_lab import runs as lab_runs
from experiments.co_lab.outcomes import COLLAPSES, WITHIN, classify, run_class, within_oracle
from experiments.co_lab.prevention import HANDBACK_SEEDS, REPORT_SEEDS, TEST_IMAGES, would_stop
from experiments.co_lab.runs import Run
from experiments.steps import refuse_missing_out
from robustrain.callbacks.rollback_early_stopping import SCORE, choose_hand_back
from robustrain.evaluation import AttackSpec, robust_accuracy
from robustrain.runs.atomic import atomic_write_text

PROBE = "handback_probe.json"  # per run: {epoch: probe accuracy}
PROBE_SIZE, PROBE_STEPS = 128, 5
# the prevention study's arms whose runs are replayed, per network: on SmallCNN those chosen before its runs; on
# PreActResNet18 every arm of the `resnet` and `handback_resnet` plans (FGSM on FLC networks included: its collapses
# are the ResNet's most robust ones). The SmallCNN gradalign, flc and blurpool arms are not replayed: their
# collapses are not measured.
METHODS = {
    "SmallCNN": ("fgsm", "nfgsm", "fgsm_rs", "elle_a", "pgd10"),
    "PreActResNet18": ("fgsm", "fgsm_rs", "nfgsm", "flc", "pgd10", "gradalign", "elle_a"),
}
WINDOWS = (3, 5)
DETECTORS = ("grad_align", "pgd_es", "pgd_es_probe", "aliasing", "abnormal", "masking_gap")
ONLINE_WINDOW = 5  # hand_back_window of the detectors that record their best_probe choice (HANDBACK_SEEDS' runs)
# a collapse from "real" robustness on the ResNet: its best epoch holds at least this test PGD-50-10 (the ResNet
# trained on the clean digits holds 81%; the CO lab's earlier ResNet collapses fell from 28-42%)
REAL_ROBUSTNESS = 0.25
FGSM_EPOCH_PASSES = 4000 * 2  # an FGSM epoch: one attack step and one training step per digit


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score 95% interval of a rate `hits / n` ((0, 1) for n = 0)."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def policies() -> dict[str, Any]:
    """Policy name -> chooser(stop epoch, run record) -> handed-back epoch (-1: the start of training)."""

    def last_check(stop: int, _: dict) -> int:
        return stop - 1

    def best_of(series: str, window: int | None):
        def choose(stop: int, record: dict) -> int:
            first = 0 if window is None else max(stop - window, 0)
            candidates = range(first, stop)
            if not candidates:
                return -1
            values = record[series]
            return max(candidates, key=lambda e: (values[e], e))  # the latest of ties: the freshest model

        return choose

    chosen = {"last_check": last_check}
    for k in WINDOWS:
        chosen[f"best_probe_{k}"] = best_of("probe", k)
    for k in WINDOWS:
        chosen[f"best_val_{k}"] = best_of("val_acc_pgd", k)
    chosen["best_val_all"] = best_of("val_acc_pgd", None)
    return chosen


def policy_cost(name: str) -> float:
    """Forward+backward passes per epoch a policy adds, as a share of an FGSM epoch's (see the module docstring)."""
    if name.startswith("best_probe"):
        return PROBE_SIZE * (PROBE_STEPS + 1) / FGSM_EPOCH_PASSES  # PGD-5 plus the clean pass, per snapshot
    if name.startswith("best_val"):
        return 500 * (10 + 1) / FGSM_EPOCH_PASSES  # PGD-10 on the 500 held-out digits (the run's validation)
    return 0.0


# --- measure --------------------------------------------------------------------------------------------------------
def selected(out: Path) -> list[Run]:
    """The report-seed runs of the replayed methods."""
    runs = lab_runs.load_runs(out)
    seeds = set(REPORT_SEEDS) | set(HANDBACK_SEEDS)
    return [r for r in runs if r.seed in seeds and replayed(r.network, r.setting)]


def replayed(network: str, setting: str) -> bool:
    """Whether the runs of an arm ("setting@method") on a network are replayed (METHODS)."""
    return setting.partition("@")[2] in METHODS.get(network, ())


def probe_accuracy(run: Run) -> dict[int, float]:
    """{epoch: PGD-5 accuracy on the fixed training probe}, cached in the run's folder."""
    path = run.folder / PROBE
    cache = {int(k): v for k, v in json.loads(path.read_text()).items()} if path.is_file() else {}
    missing = [e for e in range(run.epochs) if e not in cache]
    if missing:
        data = test_eval.instantiate(run.config["data"])
        x, y = data.probe_set(PROBE_SIZE, seed=0)
        eps = run.eval_eps
        spec = AttackSpec("pgd", eps, alpha=eps / 4, steps=PROBE_STEPS, restarts=1)
        for epoch in missing:
            torch.manual_seed(0)
            net = test_eval.network_at(run, epoch)
            cache[epoch] = robust_accuracy(net, [(x, y)], [spec], tuple(data.input_range))["pgd_5x1"]
        atomic_write_text(path, json.dumps({str(k): v for k, v in sorted(cache.items())}, indent=1))
    return cache


def _measure_run(folder: Path) -> str:
    torch.set_num_threads(1)
    run = lab_runs.load_run(folder)
    probe_accuracy(run)
    if classify(run.val["acc_pgd"], run.val["acc_fgsm"]).kind in COLLAPSES:  # the oracle needs every epoch
        # as many test images as the prevention study attacks the run's final and best epochs with, whose cached
        # results the oracle shares
        images = test_eval.images_for(TEST_IMAGES, run.network)
        test_eval.evaluate_epochs(run, set(range(run.epochs)), ("clean", "pgd_50x10"), images, 0)
    return run.name


def measure(out: Path, parallel: int) -> None:
    """Probe accuracy of every epoch of every selected run, and test PGD-50-10 of every epoch of the collapses."""
    folders = [run.folder for run in selected(out)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=max(parallel, 1), mp_context=context) as pool:
        for name in pool.map(_measure_run, folders):
            print(f"measured {name}", flush=True)


# --- report ---------------------------------------------------------------------------------------------------------
def run_record(run: Run) -> dict[str, Any]:
    """A run's compact record: class, per-epoch val/acc_pgd, probe and test PGD-50-10, and each detector's stop."""
    probe = probe_accuracy(run) if (run.folder / PROBE).is_file() else {}
    cache = test_eval.cache_of(run)
    test = [cache.get(e, {}).get("pgd_50x10") for e in range(run.epochs)]
    stops = would_stop(run)
    return {
        "run": run.name,
        "network": run.network,  # SmallCNN's and PreActResNet18's runs are scored apart
        # "unstable" (a collapse that climbed back): neither a collapse nor healthy
        "class": run_class(classify(run.val["acc_pgd"], run.val["acc_fgsm"]), run.val["acc_pgd"]),
        "val_acc_pgd": [round(v, 4) for v in run.val["acc_pgd"]],
        "probe": [probe.get(e) for e in range(run.epochs)],
        "test_pgd": test,
        "stops": {d: stops.get(d) for d in DETECTORS},
        "online": online_choices(run, stops),
    }


def online_choices(run: Run, stops: dict[str, int | None]) -> dict[str, int]:
    """Detector -> the epoch its best_probe hand-back chose during training (the detectors that recorded one: their
    history's hand_back_score, PGD-5 on the same probe under the stop's own attack seeds), for the detectors that
    would have stopped."""
    chosen = {}
    for detector, records in run.histories.items():
        stop = stops.get(detector)
        scored = [r for r in records if r["kind"] != "batch" and r.get(SCORE) not in (None, "")]
        if stop is None or not scored:
            continue
        candidates = [(-1, math.nan)] + [(int(r["epoch"]), float(r[SCORE])) for r in scored if int(r["epoch"]) < stop]
        chosen[detector] = choose_hand_back(candidates[-ONLINE_WINDOW:], "best_probe")
    return chosen


def agreement(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per detector that chose online: how often the online choice is the replayed best_probe_5 choice, and the
    hits of each on the collapses among those runs."""
    choose = policies()[f"best_probe_{ONLINE_WINDOW}"]
    rows = {}
    for record in records:
        for detector, online in record.get("online", {}).items():
            row = rows.setdefault(detector, {"detector": detector, "runs": 0, "same": 0, "collapses": 0})
            replayed = choose(record["stops"][detector], record)
            row["runs"] += 1
            row["same"] += online == replayed
            if record["class"] in COLLAPSES:
                test = record["test_pgd"]
                oracle = max(t for t in test if t is not None)
                row["collapses"] += 1
                for name, epoch in (("online_hits", online), ("replay_hits", replayed)):
                    row[name] = row.get(name, 0) + within_oracle(0.0 if epoch < 0 else test[epoch], oracle)
    return list(rows.values())


def score(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (detector, policy): hits on collapses and false stops on healthy runs, with Wilson intervals."""
    collapses = [r for r in records if r["class"] in COLLAPSES]
    healthy = [r for r in records if r["class"] == "healthy"]
    rows = []
    for detector in DETECTORS:
        for name, choose in policies().items():
            hits, kept = 0, []
            for record in collapses:
                stop = record["stops"][detector]
                test = record["test_pgd"]
                oracle = max(t for t in test if t is not None)
                epoch = choose(stop, record) if stop is not None else len(test) - 1
                accuracy = 0.0 if epoch < 0 else test[epoch]
                kept.append(accuracy)
                hits += stop is not None and within_oracle(accuracy, oracle)
            false = sum(r["stops"][detector] is not None for r in healthy)
            rows.append(
                {
                    "detector": detector,
                    "policy": name,
                    "hits": hits,
                    "collapses": len(collapses),
                    "hit_interval": wilson(hits, len(collapses)),
                    "false_stops": false,
                    "healthy": len(healthy),
                    "false_interval": wilson(false, len(healthy)),
                    "median_test_pgd": statistics.median(kept) if kept else math.nan,
                    "cost": policy_cost(name),
                }
            )
    return rows


def _pct(low_high: tuple[float, float]) -> str:
    return f"{100 * low_high[0]:.0f}-{100 * low_high[1]:.0f}%"


def _scored(row: dict[str, Any]) -> str:
    """A score row's table cells: detector, policy, hits and false stops with their intervals, the kept accuracy."""
    return (
        f"| {row['detector']} | {row['policy']} | {row['hits']} / {row['collapses']} | "
        f"{_pct(row['hit_interval'])} | {row['false_stops']} / {row['healthy']} | "
        f"{_pct(row['false_interval'])} | {100 * row['median_test_pgd']:.1f} |"
    )


def markdown(rows: Sequence[dict[str, Any]], records: Sequence[dict[str, Any]], command: str) -> str:
    classes = {k: sum(r["class"] == k for r in records) for k in (*COLLAPSES, "healthy", "unstable")}
    lines = [
        "# Hand-back policies replayed on the prevention study's runs",
        "",
        f"Generated by `{command}`. Report seeds 20-29 of the SmallCNN runs of "
        f"{', '.join(METHODS['SmallCNN'])}, and 30-39 "
        "of plain FGSM (trained once the stops' hand-back was settled): "
        f"{len(records)} runs, {classes['catastrophic']} catastrophic and {classes['partial_collapse']} partial "
        f"collapses, {classes['healthy']} healthy, {classes['unstable']} unstable (collapses that climbed back "
        "within 3 epochs, outcomes.recovers: neither hit nor false stop; the rest never became robust). A hit: a "
        f"collapse whose handed-back model holds test PGD-50-10 within {100 * WITHIN:.0f} points of its best "
        "epoch's. Intervals: Wilson 95%. Cost: passes per epoch as a share of an FGSM epoch's.",
        "",
        "| detector | policy | hits / collapses | hit interval | false stops / healthy | false-stop interval | "
        "median test PGD-50-10 kept (collapses) | cost per epoch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(f"{_scored(row)} {100 * row['cost']:.0f}% |")
    fresh = [r for r in records if _tag_and_seed(r)[1] in HANDBACK_SEEDS]
    if fresh:
        lines += [
            "",
            f"Seeds 30-39 alone, trained after the window of {ONLINE_WINDOW} was chosen on seeds 20-29 "
            f"({sum(r['class'] in COLLAPSES for r in fresh)} collapses, "
            f"{sum(r['class'] == 'healthy' for r in fresh)} healthy):",
            "",
            "| detector | policy | hits / collapses | hit interval |",
            "|---|---|---|---|",
        ]
        for row in score(fresh):
            if row["policy"] in ("last_check", f"best_probe_{ONLINE_WINDOW}") and row["detector"] != "aliasing":
                lines.append(
                    f"| {row['detector']} | {row['policy']} | {row['hits']} / {row['collapses']} | "
                    f"{_pct(row['hit_interval'])} |"
                )
    online = agreement(records)
    if online:
        lines += [
            "",
            f"The best_probe hand-back as the stops ran it, during training (detectors with `hand_back: best_probe`, "
            f"window {ONLINE_WINDOW}, in the runs of seeds 30-39), against its replay above (the same probe images; "
            "the attack's random start seeded per epoch online, once offline):",
            "",
            "| detector | runs that stopped | same epoch as the replay | hits online / replayed (collapses) |",
            "|---|---|---|---|",
        ]
        for row in online:
            lines.append(
                f"| {row['detector']} | {row['runs']} | {row['same']} | {row.get('online_hits', 0)} / "
                f"{row.get('replay_hits', 0)} ({row['collapses']}) |"
            )
    return "\n".join(lines) + "\n"


def _tag_and_seed(record: dict[str, Any]) -> tuple[str, int]:
    """A record's run "setting@method/seedN" as ("setting@method", N)."""
    tag, _, seed = record["run"].rpartition("/seed")
    return tag, int(seed)


def _seed_ranges(seeds: Sequence[int]) -> str:
    """[20, 21, 22, 30, 31] -> "20-22, 30-31"."""
    ordered = sorted(seeds)
    spans: list[list[int]] = []
    for seed in ordered:
        if spans and seed == spans[-1][1] + 1:
            spans[-1][1] = seed
        else:
            spans.append([seed, seed])
    return ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in spans)


def resnet_markdown(rows: Sequence[dict[str, Any]], records: Sequence[dict[str, Any]]) -> str:
    """The PreActResNet18 runs' table (the prevention study's `resnet` plan), scored apart from SmallCNN's, with each
    collapse's best-epoch robustness (whether the collapses lose real robustness)."""
    if not records:
        return ""
    classes = {k: sum(r["class"] == k for r in records) for k in (*COLLAPSES, "healthy", "unstable")}
    seeds: dict[str, list[int]] = {}
    for r in records:  # "preact18_injected_beta0.03@fgsm/seed31" -> arm "fgsm (beta0.03)", seed 31
        tag, seed = _tag_and_seed(r)
        setting, _, method = tag.partition("@")
        label = setting.partition("preact18_injected")[2].lstrip("_")
        seeds.setdefault(f"{method} ({label})" if label else method, []).append(seed)
    arms = ", ".join(f"{arm} at seed{'s' * (len(found) > 1)} {_seed_ranges(found)}" for arm, found in seeds.items())
    bests = {r["run"]: max(t for t in r["test_pgd"] if t is not None) for r in records if r["class"] in COLLAPSES}
    best = "; ".join(f"{run} {100 * value:.0f}%" for run, value in bests.items())
    robust = sum(value >= REAL_ROBUSTNESS for value in bests.values())
    lines = [
        "",
        f"PreActResNet18 (`preact18_injected`; {arms}): {len(records)} runs, {classes['catastrophic']} catastrophic "
        f"and {classes['partial_collapse']} partial collapses, {classes['healthy']} healthy, "
        f"{classes['unstable']} unstable (the rest never became "
        f"robust). The collapses' best epochs, test PGD-50-10 on {test_eval.images_for(TEST_IMAGES, 'PreActResNet18')} "
        f"digits: {best or 'none'} ({robust} of {len(bests)} from {100 * REAL_ROBUSTNESS:.0f}% or more).",
        "",
        "| detector | policy | hits / collapses | hit interval | false stops / healthy | false-stop interval | "
        "median test PGD-50-10 kept (collapses) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row["policy"] in ("last_check", f"best_probe_{ONLINE_WINDOW}", "best_val_all"):
            lines.append(_scored(row))
    return "\n".join(lines) + "\n"


def report(out: Path, docs: Path, command: str) -> list[dict[str, Any]]:
    records = [run_record(run) for run in selected(out)]
    missing = [r["run"] for r in records if r["class"] in COLLAPSES and None in r["test_pgd"]]
    if missing:
        raise SystemExit(f"runs not measured yet (run the measure step): {', '.join(missing)}")
    small = [r for r in records if r["network"] == "SmallCNN"]
    resnet = [r for r in records if r["network"] == "PreActResNet18"]
    rows, resnet_rows = score(small), score(resnet)
    docs.mkdir(parents=True, exist_ok=True)
    online = agreement(small)
    tables = {"rows": rows, "resnet_rows": resnet_rows, "online": online, "runs": records}
    atomic_write_text(docs / "handback.json", json.dumps(tables, indent=1))
    atomic_write_text(docs / "handback.md", markdown(rows, small, command) + resnet_markdown(resnet_rows, resnet))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.co_lab.handback", description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=("measure", "report", "all"))
    parser.add_argument("--out", type=Path, default=Path("runs/prevention"))
    parser.add_argument("--docs", type=Path, default=Path("docs/results/co_lab"))
    parser.add_argument("--parallel", type=int, default=2, help="processes at a time (one thread each)")
    args = parser.parse_args(argv)
    if refuse_missing_out(
        "experiments.co_lab.handback", args.out, "train them with python -m experiments.co_lab.prevention train"
    ):
        return 2
    if args.step in ("measure", "all"):
        measure(args.out, args.parallel)
    if args.step in ("report", "all"):
        report(args.out, args.docs, f"python -m experiments.co_lab.handback report --out {args.out} --docs {args.docs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
