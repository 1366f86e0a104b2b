"""Scores of stops and hand-back policies on runs' compact records (experiments.co_lab.handback.run_record): pure
functions of the records, so that every table of the hand-back study, and any new rule, is computed without the run
folders.

- A *fall* is where a stop acts on a run: {"stop": its epoch or None, "pending": the epochs before it whose check lay
  past a limit without stopping}, from a detector's recorded replays (`recorded_fall`) or from a rule replayed on the
  run's probe series (`probe_fall`).
- A *policy* chooses, among the epochs a fall leaves (`fall_candidates`), the model a stop hands back (`policies`).
- `tally` scores one stop and policy: hits on the collapses (a handed-back model within 3 points of the best epoch)
  and false stops on the healthy runs, with Wilson 95% intervals.
"""

import dataclasses
import functools
import json
import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from experiments.co_lab import runs as lab_runs
from experiments.co_lab.outcomes import COLLAPSES, within_oracle
from robustrain.stopping import Rule, pgd_es_rule
from robustrain.stopping.replay import replay

PROBE_SIZE, PROBE_STEPS = 128, 5  # the fixed probe: PGD-5 on 128 training digits
WINDOWS = (3, 5)
DETECTORS = ("grad_align", "pgd_es", "pgd_es_probe", "aliasing", "abnormal", "masking_gap")
PATIENCES = (1, 2, 3)
ONLINE_WINDOW = 5  # hand_back_window of the detectors that record their best_probe choice (HANDBACK_SEEDS' runs)
# the patience is chosen on the tuning runs (prevention.TUNING_SEEDS, every arm trained there; hits scored on
# held-out PGD-10, never on the test set) for this detector and policy: the most hits minus false stops, the smallest
# of ties. Fixed before the ResNet tuning runs were trained.
PATIENCE_DETECTOR, PATIENCE_POLICY = "pgd_es_probe", f"best_probe_{ONLINE_WINDOW}"
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
    """Policy name -> chooser(candidates, run record) -> handed-back epoch (-1: the start of training). The candidates
    are the epochs a stop could hand back, oldest first, as the callback keeps them: -1 and every epoch before the
    stop whose check lay within the limit (with patience, the checks of a fall not yet long enough never join)."""

    def last_check(candidates: Sequence[int], _: dict) -> int:
        return candidates[-1]

    def best_of(series: str, window: int | None):
        def choose(candidates: Sequence[int], record: dict) -> int:
            kept = [e for e in (candidates if window is None else candidates[-window:]) if e >= 0]
            if not kept:
                return -1
            values = record[series]
            return max(kept, key=lambda e: (values[e], e))  # the latest of ties: the freshest model

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


def fall_of(decisions: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """{"stop": the epoch of the first stop (None), "pending": the epochs before it whose check lay past a limit
    without stopping (their weights are never handed back)} of a replay's decisions."""
    at = next((i for i, d in enumerate(decisions) if d["should_stop"]), len(decisions))
    stop = int(decisions[at]["epoch"]) if at < len(decisions) else None
    return {"stop": stop, "pending": [int(d["epoch"]) for d in decisions[:at] if d["past"]]}


def stop_and_candidates(record: dict[str, Any], detector: str, patience: int = 1) -> tuple[int | None, list[int]]:
    """The epoch a detector stops a run at with this patience (None), and the epochs it could hand back: the start
    of training and every epoch before the stop but the pending ones (each epoch is checked once)."""
    return fall_candidates(recorded_fall(record, detector, patience))


def recorded_fall(record: dict[str, Any], detector: str, patience: int = 1) -> dict[str, Any]:
    """A detector's fall_of in a run's record at this patience (its recorded stop alone for a record without
    replays, at patience 1)."""
    if "falls" in record:
        fall = record["falls"].get(detector, {}).get(str(patience), {"stop": None, "pending": []})  # not recorded
    elif patience == 1:  # a record without replays: its recorded stop, no check pending before it
        fall = {"stop": record["stops"][detector], "pending": []}
    else:
        raise ValueError(f"{record['run']} has no replays: only patience 1 (its recorded stops) can be scored")
    return fall


def fall_candidates(fall: dict[str, Any]) -> tuple[int | None, list[int]]:
    """A fall_of's stop, and the epochs a stop could hand back: the start of training and every epoch before the
    stop but the pending ones."""
    stop = fall["stop"]
    return stop, [] if stop is None else [e for e in range(-1, stop) if e not in fall["pending"]]


def score(records: Sequence[dict[str, Any]], patience: int = 1, truth: str = "test_pgd") -> list[dict[str, Any]]:
    """One row per (detector, policy): hits on collapses and false stops on healthy runs, with Wilson intervals.

    Args:
        records: run_record()s.
        patience: The checks in a row a fall must last (the records' replays at that patience).
        truth: The accuracy a hit is judged on: "test_pgd" (test PGD-50-10) or, on tuning runs, "val_acc_pgd".
    """
    rows = []
    for detector in DETECTORS:
        for name, choose in policies().items():
            fall = functools.partial(recorded_fall, detector=detector, patience=patience)
            head = {"detector": detector, "policy": name, "patience": patience}
            rows.append(head | tally(records, fall, choose, truth) | {"cost": policy_cost(name)})
    return rows


def tally(
    records: Sequence[dict[str, Any]],
    fall: Callable[[dict[str, Any]], dict[str, Any]],
    choose: Callable[[Sequence[int], dict[str, Any]], int],
    truth: str = "test_pgd",
) -> dict[str, Any]:
    """One stop's score: hits on the collapses and false stops on the healthy runs, with Wilson intervals, and the
    median accuracy it keeps on the collapses.

    Args:
        records: run_record()s.
        fall: record -> the stop's fall_of on that run.
        choose: The hand-back policy (a policies() chooser).
        truth: The accuracy a hit is judged on (see `score`).
    """
    collapses = [r for r in records if r["class"] in COLLAPSES]
    healthy = [r for r in records if r["class"] == "healthy"]
    hits, kept = 0, []
    for record in collapses:
        stop, window = fall_candidates(fall(record))
        test = record[truth]
        oracle = max(t for t in test if t is not None)
        epoch = choose(window, record) if stop is not None else len(test) - 1
        accuracy = 0.0 if epoch < 0 else test[epoch]
        kept.append(accuracy)
        hits += stop is not None and within_oracle(accuracy, oracle)
    false = sum(fall(r)["stop"] is not None for r in healthy)
    return {
        "hits": hits,
        "collapses": len(collapses),
        "hit_interval": wilson(hits, len(collapses)),
        "false_stops": false,
        "healthy": len(healthy),
        "false_interval": wilson(false, len(healthy)),
        "median_test_pgd": statistics.median(kept) if kept else math.nan,
    }


def choose_patience(records: Sequence[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
    """The patience of PATIENCE_DETECTOR with PATIENCE_POLICY with the most hits minus false stops on the tuning
    runs (hits judged on held-out PGD-10), the smallest of ties; and its score row at every patience."""
    rows = []
    for patience in PATIENCES:
        rows += [
            r
            for r in score(records, patience, truth="val_acc_pgd")
            if (r["detector"], r["policy"]) == (PATIENCE_DETECTOR, PATIENCE_POLICY)
        ]
    best = max(rows, key=lambda r: (r["hits"] - r["false_stops"], -r["patience"]))
    return best["patience"], rows


# PGD-ES on the probe (PGDEarlyStopping with source="probe", hand_back="best_probe") decides on the accuracy that its
# best_probe hand-back scores the snapshots with, so a rule on that series costs nothing beyond the hand-back. Rules
# are replayed on each record's `probe` series (the attack's random start seeded 0 at every epoch; online it changes
# with the epoch): every run is scored, the committed records of runs no longer on disk included.
PROBE_WINDOWS = (1, 3, 5)
PROBE_THRESHOLDS = (0.3, 0.2, 0.15, 0.1)
MAX_FALSE_STOPS = 0.10  # the goal's false-stop rate: a rule is chosen among those that keep to it on the tuning runs
GOAL_HITS = 0.80  # the goal's hit rate (a handed-back model within 3 points of the best epoch)


def probe_rules() -> list[Rule]:
    """The rules tried on the probe series, in the order that settles ties (the first wins): Wong et al.'s (a fall
    against the previous check), then against the median and against the best of the last 3 and 5 checks; each at
    every patience and threshold, the larger thresholds first."""
    rules = []
    for window in PROBE_WINDOWS:
        for statistic in ("median",) if window == 1 else ("median", "best"):
            for patience in PATIENCES:
                for threshold in PROBE_THRESHOLDS:
                    wong = pgd_es_rule(threshold)
                    rules.append(dataclasses.replace(wong, window=window, statistic=statistic, patience=patience))
    return rules


def rule_label(rule: Rule) -> str:
    """ "a fall > 0.2 from the best of 3, patience 2"."""
    against = "the previous check" if rule.window == 1 else f"the {rule.statistic} of {rule.window}"
    return f"a fall > {rule.threshold:g} from {against}, patience {rule.patience}"


def probe_fall(record: dict[str, Any], rule: Rule) -> dict[str, Any]:
    """The fall_of a rule replayed on a record's probe series."""
    probe = record["probe"]
    if not probe or None in probe:
        raise ValueError(f"{record['run']} has no probe accuracy at every epoch: run the measure step")
    return fall_of(replay([{"epoch": e, "step": e, "kind": "probe", "value": v} for e, v in enumerate(probe)], rule))


def probe_rule_row(records: Sequence[dict[str, Any]], rule: Rule, policy: str, truth: str) -> dict[str, Any]:
    head = {"rule": rule_label(rule), "settings": dataclasses.asdict(rule), "policy": policy}
    return head | tally(records, functools.partial(probe_fall, rule=rule), policies()[policy], truth)


def choose_probe_rule(records: Sequence[dict[str, Any]]) -> tuple[Rule, list[dict[str, Any]]]:
    """The probe rule, with PATIENCE_POLICY, that hits the most collapses of the tuning runs (held-out PGD-10) of
    those that falsely stop at most MAX_FALSE_STOPS of their healthy runs (fewer false stops, then probe_rules'
    order, settle ties; the fewest false stops if none keeps to it); and every rule's row."""
    rows = [probe_rule_row(records, rule, PATIENCE_POLICY, "val_acc_pgd") for rule in probe_rules()]
    eligible = [r for r in rows if keeps_to_cap(r)]
    if not eligible:
        eligible = [min(rows, key=lambda r: r["false_stops"])]
    best = max(eligible, key=lambda r: (r["hits"], -r["false_stops"], -rows.index(r)))
    return Rule(**best["settings"]), rows


def chosen_probe_rule(docs: Path = lab_runs.REPO / "docs/results/co_lab") -> Rule:
    """The probe rule the last report chose on the tuning runs (`<docs>/handback.json`), as configs should use it."""
    return Rule(**json.loads((docs / "handback.json").read_text())["probe_rule"]["chosen"])


def keeps_to_cap(row: dict[str, Any]) -> bool:
    """Whether a tuning row's false stops keep to MAX_FALSE_STOPS of its healthy runs."""
    return row["false_stops"] <= MAX_FALSE_STOPS * row["healthy"]


PROBE_POLICIES = ("last_check", "best_probe_3", f"best_probe_{ONLINE_WINDOW}", "best_val_all")


def probe_rule_rows(records: Sequence[dict[str, Any]], chosen: Rule) -> list[dict[str, Any]]:
    """The chosen rule with each policy, then Wong et al.'s rule on the probe at patience 1 and 2 with the chosen
    policy, on a network's report runs (hits on test PGD-50-10)."""
    rows = [probe_rule_row(records, chosen, policy, "test_pgd") for policy in PROBE_POLICIES]
    for patience in (1, 2):
        wong = dataclasses.replace(pgd_es_rule(0.2), patience=patience)
        if wong != chosen:
            rows.append(probe_rule_row(records, wong, PATIENCE_POLICY, "test_pgd"))
    return rows


def online_record(record: dict[str, Any]) -> dict[str, Any] | None:
    """A record whose probe series is the stop's own check as the run recorded it (PGD-ES on the probe, the attack
    seeded per epoch), None for a run that recorded no series (records committed before they were kept)."""
    series = record.get("series", {}).get("pgd_es_probe")
    if series is None or series["epoch"] != list(range(len(record["probe"]))):
        return None
    return record | {"probe": series["value"]}


def online_agreement(records: Sequence[dict[str, Any]], rule: Rule) -> tuple[int, int]:
    """(runs where the rule stops at the same epoch on the recorded online check as on the replayed probe, runs that
    recorded the check)."""
    pairs = [(r, o) for r, o in zip(records, map(online_record, records)) if o is not None]
    return sum(probe_fall(r, rule)["stop"] == probe_fall(o, rule)["stop"] for r, o in pairs), len(pairs)
