"""The detectors the CO lab scores: which recorded history each reads, which series, and the rules tried on it.

A *detector* is a history (the callback's file stem), a column of it, a record kind and a stop rule; replaying the
rule on the recorded column (robustrain.stopping.replay, the callbacks' own decision function) gives where it
would have stopped. A *family* is a set of detectors whose best member is chosen on the tuning seeds; the paper's
aliasing rule and Wong et al.'s PGD early stop are also reported as fixed one-member families.
"""

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from experiments.co_lab.runs import Run
from robustrain.stopping import ALIASING_RULE, Rule, pgd_es_rule

THRESHOLDS = {
    "aliasing": (0.1, 0.2, 0.33, 0.5, 1.0),  # relative rise of the aliasing measure
    "grad_align": (0.05, 0.1, 0.2, 0.3, 0.5),  # absolute fall of the cosine
    "abnormal": (0.02, 0.05, 0.1, 0.2, 0.3),  # absolute rise of the abnormal fraction
    "masking_gap": (0.1, 0.2, 0.3, 0.5),  # absolute rise of the FGSM-PGD gap
    "pgd_es": (0.1, 0.2, 0.3),  # absolute fall of PGD accuracy since the previous check (Wong et al.: 0.2)
}
WINDOWS = (1, 3, 5)
WARMUPS = (0, 2, 5)


@dataclass(frozen=True)
class Detector:
    """One stop rule on one recorded series.

    Attributes:
        family: The row it competes in (its best member is chosen on the tuning seeds).
        history: File stem of the history (`<history>_history.csv`), e.g. "aliasing" or "aliasing_bn_train".
        column: The series; "@monitored" is the callback's own monitored series (layer2 on PreActResNet18, mean on
            SmallCNN), "relative/@monitored" its relative measure.
        kind: Record kind: "probe", "batch" (every n steps), "epoch", "val" or "first_batch".
        rule: The stop rule.
    """

    family: str
    history: str
    column: str
    kind: str
    rule: Rule

    def column_for(self, run: Run) -> str:
        return self.column.replace("@monitored", run.monitored(self.history))

    def describe(self) -> str:
        rule = self.rule
        sign = "+" if rule.direction == "rise" else "-"
        amount = f"{sign}{rule.threshold:g}" + ("x" if rule.scale == "relative" else "")
        wait = ", lr-peak wait" if rule.wait_for_lr_peak else ""
        return (
            f"{self.history}:{self.column}[{self.kind}] {amount} over the median of {rule.window}, "
            f"warm-up {rule.warmup_epochs}{wait}"
        )


def _grid(
    family: str, histories: tuple[str, ...], columns: tuple[str, ...], kind: str, name: str, direction: str, scale: str
) -> Iterator[Detector]:
    for history, column, threshold, window, warmup, wait in itertools.product(
        histories, columns, THRESHOLDS[name], WINDOWS, WARMUPS, (False, True)
    ):
        rule = Rule(threshold, window, warmup, wait, "window", direction, scale)
        yield Detector(family, history, column, kind, rule)


def families() -> dict[str, list[Detector]]:
    """Family name -> its detectors, the fixed published rules first."""
    aliasing_columns = ("@monitored", "relative/@monitored", "mean", "relative/mean")
    grids = {
        "aliasing, tuned (measure, layer, BatchNorm, rule)": (
            ("aliasing", "aliasing_bn_train"),
            aliasing_columns,
            "probe",
            "aliasing",
            "rise",
            "relative",
        ),
        "aliasing every n steps, tuned": (("aliasing",), aliasing_columns, "batch", "aliasing", "rise", "relative"),
        "gradient alignment, tuned": (("grad_align",), ("cosine",), "probe", "grad_align", "fall", "absolute"),
        "gradient alignment every n steps, tuned": (
            ("grad_align",),
            ("cosine",),
            "batch",
            "grad_align",
            "fall",
            "absolute",
        ),
        "abnormal examples, tuned": (("abnormal",), ("fraction",), "epoch", "abnormal", "rise", "absolute"),
        "abnormal examples every n steps, tuned": (
            ("abnormal",),
            ("fraction",),
            "batch",
            "abnormal",
            "rise",
            "absolute",
        ),
        "FGSM-PGD gap, tuned": (("masking_gap",), ("gap",), "val", "masking_gap", "rise", "absolute"),
    }
    paper, wong, pgd_tuned = "aliasing, paper's rule", "PGD-ES (Wong et al.)", "PGD-ES, tuned (source, drop)"
    out = {
        paper: [Detector(paper, "aliasing", "@monitored", "probe", ALIASING_RULE)],
        wong: [Detector(wong, "pgd_es", "acc", "first_batch", pgd_es_rule(0.2))],
        pgd_tuned: [
            Detector(pgd_tuned, history, "acc", kind, pgd_es_rule(drop))
            for history, kind in (("pgd_es", "first_batch"), ("pgd_es_probe", "probe"))
            for drop in THRESHOLDS["pgd_es"]
        ],
    }
    out.update({family: list(_grid(family, *grid)) for family, grid in grids.items()})
    return out


CHECKS_PER_EPOCH = 8  # the CO lab's configs check every n steps 8 times per epoch


def cost_task(detector: Detector) -> tuple[str, int]:
    """(benchmarks.detectors task timing one check of the detector, checks per epoch)."""
    base = detector.history.removesuffix("_bn_train").removesuffix("_probe")
    if detector.kind == "batch":
        return f"{base}_step" if base != "abnormal" else base, CHECKS_PER_EPOCH
    return base, 1
