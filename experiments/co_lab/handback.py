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

Every score is a function of the runs' compact records, committed in `<docs>/handback.json` (per epoch: held-out and
test PGD, the probe accuracy, and each detector's deciding series as recorded): `report` rebuilds the records of the
runs under `--out` and reads the rest from there, so rules can be re-scored without the run folders. Rules on the
probe series itself (`probe_rules`: a fall from the previous check, the median or the best of a window) are chosen on
the tuning runs and scored on the report runs.

    python -m experiments.co_lab.handback measure --out runs/prevention --parallel 2
    python -m experiments.co_lab.handback report --out runs/prevention --docs docs/results/co_lab
"""

import argparse
import dataclasses
import json
import math
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from experiments.co_lab import evaluate as test_eval
from experiments.co_lab import runs as lab_runs
from experiments.co_lab.handback_scores import (
    DETECTORS,
    GOAL_HITS,
    MAX_FALSE_STOPS,
    ONLINE_WINDOW,
    PATIENCE_DETECTOR,
    PATIENCE_POLICY,
    PATIENCES,
    PROBE_SIZE,
    PROBE_STEPS,
    PROBE_THRESHOLDS,
    PROBE_WINDOWS,
    choose_patience,
    choose_probe_rule,
    fall_of,
    keeps_to_cap,
    online_agreement,
    online_record,
    policies,
    policy_cost,
    probe_rule_rows,
    probe_rules,
    rule_label,
    score,
    stop_and_candidates,
)
from experiments.co_lab.outcomes import COLLAPSES, WITHIN, classify, run_class, within_oracle
from experiments.co_lab.prevention import (
    CONFIRM_SEEDS,
    HANDBACK_SEEDS,
    REPORT_SEEDS,
    TEST_IMAGES,
    is_tuning,
    would_stop,
)
from experiments.co_lab.runs import Run
from experiments.steps import refuse_missing_out
from robustrain.callbacks import (
    AbnormalExamplesMonitor,
    AliasingMonitor,
    GradientAlignmentMonitor,
    MaskingGapMonitor,
    PGDEarlyStopping,
)
from robustrain.callbacks.rollback_early_stopping import SCORE, choose_hand_back
from robustrain.evaluation import AttackSpec, robust_accuracy
from robustrain.runs.atomic import atomic_write_text
from robustrain.stopping import Rule
from robustrain.stopping.replay import replay

PROBE = "handback_probe.json"  # per run: {epoch: probe accuracy}
# the prevention study's arms whose runs are replayed, per network: on SmallCNN those chosen before its runs; on
# PreActResNet18 every arm of the `resnet`, `resnet_others` and `handback_resnet` plans (FGSM on FLC networks
# included: its collapses are the ResNet's most robust ones). The SmallCNN gradalign, flc and blurpool arms are not
# replayed: their collapses are not measured.
METHODS = {
    "SmallCNN": ("fgsm", "nfgsm", "fgsm_rs", "elle_a", "pgd10"),
    "PreActResNet18": ("fgsm", "fgsm_rs", "nfgsm", "flc", "blurpool", "pgd10", "gradalign", "elle_a"),
}
# each detector's rule as the runs recorded it: its class's default (detectors_*.yaml set no rule argument), replayed
# at every patience (checks in a row a fall must last); patience 1 must give the recorded stop
RULES = {
    "grad_align": GradientAlignmentMonitor.default_rule,
    "pgd_es": PGDEarlyStopping.default_rule,
    "pgd_es_probe": PGDEarlyStopping.default_rule,
    "aliasing": AliasingMonitor.default_rule,
    "abnormal": AbnormalExamplesMonitor.default_rule,
    "masking_gap": MaskingGapMonitor.default_rule,
}
# a collapse from "real" robustness on the ResNet: its best epoch holds at least this test PGD-50-10 (the ResNet
# trained on the clean digits holds 81%; the CO lab's earlier ResNet collapses fell from 28-42%)
REAL_ROBUSTNESS = 0.25


# --- measure --------------------------------------------------------------------------------------------------------
def selected(runs: Sequence[Run]) -> list[Run]:
    """The report-seed runs of the replayed methods."""
    seeds = set(REPORT_SEEDS) | set(HANDBACK_SEEDS) | set(CONFIRM_SEEDS)
    return [r for r in runs if r.seed in seeds and replayed(r.network, r.setting)]


def tuning(runs: Sequence[Run]) -> list[Run]:
    """The tuning-seed runs of every arm (the patience is chosen on them)."""
    return [r for r in runs if is_tuning(r)]


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
    # the oracle needs every epoch of a collapse; a tuning run is scored on held-out PGD, its test set never attacked
    if not is_tuning(run) and classify(run.val["acc_pgd"], run.val["acc_fgsm"]).kind in COLLAPSES:
        # as many test images as the prevention study attacks the run's final and best epochs with, whose cached
        # results the oracle shares
        images = test_eval.images_for(TEST_IMAGES, run.network)
        test_eval.evaluate_epochs(run, set(range(run.epochs)), ("clean", "pgd_50x10"), images, 0)
    return run.name


def measure(out: Path, parallel: int) -> None:
    """Probe accuracy of every epoch of every selected and tuning run, and test PGD-50-10 of every epoch of the
    selected collapses."""
    runs = lab_runs.load_runs(out)
    folders = [run.folder for run in [*selected(runs), *tuning(runs)]]
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
        "falls": fall_replays(run),
        "online": online_choices(run, stops),
        "series": deciding_series(run),
    }


def deciding_series(run: Run) -> dict[str, dict[str, list]]:
    """Detector -> the epoch-end series its rule decides on, as recorded: {"kind", "epoch", "step", "lr_rising",
    "value"}, compact enough to commit, so that any rule can be replayed on it without the run (`series_rows`);
    the detectors of RULES that recorded one."""
    out = {}
    for detector, records in run.histories.items():
        if detector not in RULES or not records:
            continue
        (kind,) = {r["kind"] for r in records} - {"batch"}  # the epoch-end series that decides
        rows = [r for r in records if r["kind"] == kind]
        out[detector] = {"kind": kind} | {
            key: [_plain(r.get(key)) for r in rows] for key in ("epoch", "step", "lr_rising", "value")
        }
    return out


def _plain(value: Any) -> Any:
    """A history cell as JSON holds it (a non-finite value as None)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def series_rows(series: dict[str, list]) -> list[dict[str, Any]]:
    """A deciding_series entry back as the history records robustrain.stopping.replay reads."""
    keys = ("epoch", "step", "lr_rising", "value")
    return [{"kind": series["kind"]} | dict(zip(keys, cells)) for cells in zip(*(series[k] for k in keys))]


def fall_replays(run: Run) -> dict[str, dict[str, dict[str, Any]]]:
    """Detector -> patience -> fall_of its recorded history replayed with its rule at that patience
    (robustrain.stopping.replay)."""
    recorded = would_stop(run)
    falls: dict[str, dict[str, dict[str, Any]]] = {}
    decided = deciding_series(run)
    for detector, rule in RULES.items():
        if detector not in decided:
            continue
        rows, kind = series_rows(decided[detector]), decided[detector]["kind"]
        falls[detector] = {}
        for patience in PATIENCES:
            fall = fall_of(replay(rows, dataclasses.replace(rule, patience=patience), kind=kind))
            if patience == 1 and fall["stop"] != recorded.get(detector):
                raise ValueError(
                    f"{run.name}: {detector} replayed stops at {fall['stop']}, recorded at {recorded[detector]}"
                )
            falls[detector][str(patience)] = fall
    return falls


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
            replayed = choose(stop_and_candidates(record, detector)[1], record)
            row["runs"] += 1
            row["same"] += online == replayed
            if record["class"] in COLLAPSES:
                test = record["test_pgd"]
                oracle = max(t for t in test if t is not None)
                row["collapses"] += 1
                for name, epoch in (("online_hits", online), ("replay_hits", replayed)):
                    row[name] = row.get(name, 0) + within_oracle(0.0 if epoch < 0 else test[epoch], oracle)
    return list(rows.values())


def _pct(low_high: tuple[float, float]) -> str:
    return f"{100 * low_high[0]:.0f}-{100 * low_high[1]:.0f}%"


def _scored(row: dict[str, Any], patience: bool = False) -> str:
    """A score row's table cells: detector, policy (and patience), hits and false stops with their intervals, the
    kept accuracy."""
    policy = f"{row['policy']} | {row['patience']}" if patience else row["policy"]
    return (
        f"| {row['detector']} | {policy} | {row['hits']} / {row['collapses']} | "
        f"{_pct(row['hit_interval'])} | {row['false_stops']} / {row['healthy']} | "
        f"{_pct(row['false_interval'])} | {100 * row['median_test_pgd']:.1f} |"
    )


def markdown(rows: Sequence[dict[str, Any]], records: Sequence[dict[str, Any]], command: str) -> str:
    classes = {k: sum(r["class"] == k for r in records) for k in (*COLLAPSES, "healthy", "unstable")}
    lines = [
        "# Hand-back policies replayed on the prevention study's runs",
        "",
        f"Generated by `{command}`. Report seeds 20-29 of the SmallCNN runs of "
        f"{', '.join(METHODS['SmallCNN'])}; 30-39 "
        "of plain FGSM (trained once the stops' hand-back was settled); and "
        f"{_seed_ranges(CONFIRM_SEEDS)} of FGSM and N-FGSM on the injected and natural settings (trained once the "
        "probe rule below was chosen): "
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
            f"window {ONLINE_WINDOW}, in the runs of seeds "
            f"{_seed_ranges(sorted({_tag_and_seed(r)[1] for r in records if r.get('online')}))}), against its replay "
            "above (the same probe images; "
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


PATIENCE_DETECTORS = ("pgd_es", "pgd_es_probe", "grad_align", "masking_gap")  # those that hit at all
PATIENCE_POLICIES = (f"best_probe_{ONLINE_WINDOW}", "best_val_all")


def _tuning_runs(tuned: Sequence[dict[str, Any]]) -> str:
    """The tuning runs' count and seeds, e.g. "46 runs at seeds 100-107"."""
    return f"{len(tuned)} runs at seeds {_seed_ranges(sorted({_tag_and_seed(r)[1] for r in tuned}))}"


def _classes(records: Sequence[dict[str, Any]]) -> str:
    """The records' collapses and healthy runs, e.g. "23 collapses, 18 healthy"."""
    collapses, healthy = sum(r["class"] in COLLAPSES for r in records), sum(r["class"] == "healthy" for r in records)
    return f"{collapses} collapses, {healthy} healthy"


def _tuning_table(first: str, rows: Sequence[dict[str, Any]], key: str) -> list[str]:
    """A tuning table: the row's `key` (a patience, a rule), its hits and its false stops."""
    lines = [f"| {first} | hits / collapses | false stops / healthy |", "|---|---|---|"]
    for row in rows:
        lines.append(f"| {row[key]} | {row['hits']} / {row['collapses']} | {row['false_stops']} / {row['healthy']} |")
    return lines


def patience_markdown(
    chosen: int, tuning_rows: Sequence[dict[str, Any]], tuned: Sequence[dict[str, Any]], networks: dict[str, list]
) -> str:
    """The patience section: the tuning runs' choice, then every patience on each network's report runs."""
    arms = sorted({_tag_and_seed(r)[0] for r in tuned})
    lines = [
        "",
        "## Patience: a fall that lasts",
        "",
        f"A stop with patience p stops when p checks in a row lie past the limit set before the first of them "
        "(robustrain.stopping.Rule); the checks of a fall not yet long enough never join the hand-back window. "
        f"Chosen for {PATIENCE_DETECTOR} with {PATIENCE_POLICY} on the tuning runs ({_tuning_runs(tuned)}: "
        f"{', '.join(arms)}; {_classes(tuned)}; hits judged on held-out PGD-10, the test set untouched): the most "
        f"hits minus false stops, the smallest of ties. **Chosen: patience {chosen}.**",
        "",
        *_tuning_table("patience", tuning_rows, "patience"),
    ]
    for network, rows in networks.items():
        lines += [
            "",
            f"{network}, report runs (as above), every patience:",
            "",
            "| detector | policy | patience | hits / collapses | hit interval | false stops / healthy | "
            "false-stop interval | median test PGD-50-10 kept (collapses) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        lines += [_scored(row, patience=True) for row in rows]
    return "\n".join(lines) + "\n"


def _bar(row: dict[str, Any]) -> str:
    """How a score row stands against the goal (hits >= GOAL_HITS, false stops <= MAX_FALSE_STOPS), in point
    estimates."""
    hit, false = row["hits"] / max(row["collapses"], 1), row["false_stops"] / max(row["healthy"], 1)
    short = [f"hits {100 * hit:.0f}% < {100 * GOAL_HITS:.0f}%"] * (hit < GOAL_HITS)
    short += [f"false stops {100 * false:.0f}% > {100 * MAX_FALSE_STOPS:.0f}%"] * (false > MAX_FALSE_STOPS)
    return "met" if not short else "; ".join(short)


def probe_rule_markdown(
    chosen: Rule,
    tuning_rows: Sequence[dict[str, Any]],
    tuned: Sequence[dict[str, Any]],
    networks: dict[str, list],
    same: tuple[int, int, str] = (0, 0, "none"),
) -> str:
    """The probe rule section: the tuning runs' choice (the ten best rules and Wong's), then each network's runs;
    `same`: (runs where the rule stops alike on the recorded check, runs that recorded it, their seeds)."""
    order = sorted(tuning_rows, key=lambda r: (not keeps_to_cap(r), -r["hits"], r["false_stops"]))
    wong = [r for r in tuning_rows if r["settings"]["window"] == 1 and r["settings"]["threshold"] == 0.2]
    shown = order[:10] + [r for r in wong if r not in order[:10]]
    lines = [
        "",
        "## A fall from the best: a rule on the probe's own series",
        "",
        "PGD-ES on the probe with the best_probe hand-back decides on the accuracy the hand-back scores its snapshots "
        "with (PGD-5 at step eps / 4 on 128 training digits), so any rule on it costs nothing beyond the hand-back: "
        f"{100 * policy_cost(PATIENCE_POLICY):.0f}% of an FGSM epoch, against PGD-ES's "
        f"{100 * policy_cost('best_val_5'):.0f}%. Rules are replayed on each run's probe series (the attack's random "
        "start seeded 0 at every epoch; online it changes with the epoch). A fall from the best of the window "
        "(`Rule(statistic='best')`) adds up a fall spread over several checks, which Wong et al.'s rule (against the "
        f"previous check) misses. {len(probe_rules())} rules "
        f"(windows {', '.join(map(str, PROBE_WINDOWS))}, median or best, thresholds "
        f"{', '.join(map(str, PROBE_THRESHOLDS))}, patience {', '.join(map(str, PATIENCES))}) were tried with "
        f"{PATIENCE_POLICY} on the tuning runs ({_tuning_runs(tuned)}; {_classes(tuned)}; hits judged on held-out "
        f"PGD-10). Chosen: the most hits among the rules that falsely stop at most {100 * MAX_FALSE_STOPS:.0f}% of the "
        f"healthy tuning runs. **Chosen: {rule_label(chosen)}.** The runs trained since their histories are kept "
        f"({same[1]}, seeds {same[2]}) also recorded the stop's own check during training (its attack seeded per "
        f"epoch): replayed on it, the chosen rule stops at the same epoch as on the probe series in {same[0]} of them.",
        "",
        *_tuning_table("rule (tuning runs)", shown, "rule"),
    ]
    for network, rows in networks.items():
        lines += [
            "",
            f"{network}:",
            "",
            "| rule | policy | hits / collapses | hit interval | false stops / healthy | false-stop interval | "
            "median test PGD-50-10 kept (collapses) | against the goal |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in rows:
            lines.append(f"{_scored(row | {'detector': row['rule']})} {_bar(row)} |")
    return "\n".join(lines) + "\n"


def _patience_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = [r for p in PATIENCES for r in score(records, p)]
    rows = [r for r in rows if r["detector"] in PATIENCE_DETECTORS and r["policy"] in PATIENCE_POLICIES]
    return sorted(rows, key=lambda r: (PATIENCE_DETECTORS.index(r["detector"]), r["policy"], r["patience"]))


def committed_records(docs: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The report runs' and the tuning runs' records of the last report (`<docs>/handback.json`); none without one."""
    path = docs / "handback.json"
    if not path.is_file():
        return [], []
    tables = json.loads(path.read_text())
    return tables.get("runs", []), tables.get("patience", {}).get("tuning_runs", [])


def merged(fresh: Sequence[dict[str, Any]], kept: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records built from run folders, and the kept ones of runs not among them, in the runs' order."""
    names = {r["run"] for r in fresh}
    return sorted([*fresh, *(r for r in kept if r["run"] not in names)], key=_tag_and_seed)


def report(out: Path, docs: Path, command: str) -> list[dict[str, Any]]:
    """The tables, from the runs under `out` and, for runs no longer there, the records the last report committed
    (`<docs>/handback.json`: every score here is a function of them)."""
    runs = lab_runs.load_runs(out) if out.is_dir() else []
    kept, kept_tuned = committed_records(docs)
    records = merged([run_record(run) for run in selected(runs)], kept)
    missing = [r["run"] for r in records if r["class"] in COLLAPSES and None in r["test_pgd"]]
    if missing:
        raise SystemExit(f"runs not measured yet (run the measure step): {', '.join(missing)}")
    small = [r for r in records if r["network"] == "SmallCNN"]
    resnet = [r for r in records if r["network"] == "PreActResNet18"]
    rows, resnet_rows = score(small), score(resnet)
    docs.mkdir(parents=True, exist_ok=True)
    online = agreement(small)
    tuned = merged([run_record(run) for run in tuning(runs)], kept_tuned)
    chosen, tuning_rows = choose_patience(tuned)
    networks = {"SmallCNN": _patience_rows(small), "PreActResNet18": _patience_rows(resnet)}
    rule, rule_tuning_rows = choose_probe_rule(tuned)
    rule_networks = {
        "SmallCNN, report runs (as above)": probe_rule_rows(small, rule),
        "PreActResNet18, report runs (as above)": probe_rule_rows(resnet, rule),
    }
    for network, network_records in (("SmallCNN", small), ("PreActResNet18", resnet)):
        confirm = [r for r in network_records if _tag_and_seed(r)[1] in CONFIRM_SEEDS]
        if confirm:
            label = f"{network}, seeds {_seed_ranges(CONFIRM_SEEDS)} alone (trained after the rule was chosen)"
            rule_networks[label] = probe_rule_rows(confirm, rule)
            recorded = [o for o in map(online_record, confirm) if o is not None]
            label = f"{label}, replayed on the stop's own check as the runs recorded it"
            rule_networks[label] = probe_rule_rows(recorded, rule)[:4]
    same = online_agreement([*records, *tuned], rule)
    with_check = sorted({_tag_and_seed(r)[1] for r in [*records, *tuned] if online_record(r) is not None})
    tables = {
        "rows": rows,
        "resnet_rows": resnet_rows,
        "online": online,
        "patience": {"chosen": chosen, "tuning_rows": tuning_rows, "rows": networks, "tuning_runs": tuned},
        "probe_rule": {
            "online_agreement": same,
            "chosen": dataclasses.asdict(rule),
            "label": rule_label(rule),
            "tuning_rows": rule_tuning_rows,
            "rows": rule_networks,
        },
        "runs": records,
    }
    text = markdown(rows, small, command) + resnet_markdown(resnet_rows, resnet)
    text += patience_markdown(chosen, tuning_rows, tuned, networks)
    text += probe_rule_markdown(rule, rule_tuning_rows, tuned, rule_networks, (*same, _seed_ranges(with_check)))
    atomic_write_text(docs / "handback.json", json.dumps(tables, indent=1))
    atomic_write_text(docs / "handback.md", text)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.co_lab.handback", description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=("measure", "report", "all"))
    parser.add_argument("--out", type=Path, default=Path("runs/prevention"))
    parser.add_argument("--docs", type=Path, default=Path("docs/results/co_lab"))
    parser.add_argument("--parallel", type=int, default=2, help="processes at a time (one thread each)")
    args = parser.parse_args(argv)
    reads_runs = args.step != "report" or not (args.docs / "handback.json").is_file()  # report: the records do
    hint = "train them with python -m experiments.co_lab.prevention train"
    if reads_runs and refuse_missing_out("experiments.co_lab.handback", args.out, hint):
        return 2
    if args.step in ("measure", "all"):
        measure(args.out, args.parallel)
    if args.step in ("report", "all"):
        report(args.out, args.docs, f"python -m experiments.co_lab.handback report --out {args.out} --docs {args.docs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
