"""SpatialEvaluation's report: its measures from the rank-reduced sums (`summarize`) and a plain-text table.

The report's keys are listed in robustrain.evaluation.spatial_evaluation's docstring.
"""

import math
from pathlib import Path
from typing import Any

from torch import Tensor

SMOOTHNESS_FIELDS = ("gradient_mean", "gradient_std", "total_variation")


def summarize(sums: dict[str, Tensor], k: int) -> dict[str, Any]:
    """Turns the (rank-reduced) sums of `SpatialEvaluation` into the report's measures (fractions, or None)."""

    def ratio(numerator: str, denominator: str) -> float | None:
        total = float(sums[denominator])
        return float(sums[numerator]) / total if total > 0 else None

    n_images = int(sums["n_images"])
    report: dict[str, Any] = {
        "n_images": n_images,
        "clean_acc": ratio("clean_correct", "n_images"),
        "grid_acc": ratio("grid_correct", "n_images"),
        "per_transform_acc": None,
        "per_transform_acc_grid": None,
        "random_acc": ratio("random_correct", "n_images"),
        "worst_of_k_acc": ratio("worst_of_k_correct", "n_images"),
        "worst_of_k": k,
        "first_order_acc": ratio("first_order_correct", "first_order_images"),
        "first_order_grid_acc": ratio("first_order_grid_correct", "first_order_images"),
        "first_order_images": int(sums["first_order_images"]),
        "shift_consistency": ratio("shift_consistent", "shift_pairs"),
        "smoothness": None,
    }
    if "per_transform_correct" in sums and n_images > 0:
        per_transform = sums["per_transform_correct"].double() / n_images  # (T,)
        report["per_transform_acc"] = float(per_transform.mean())
        report["per_transform_acc_grid"] = per_transform.tolist()
    if "smooth_images" in sums and float(sums["smooth_images"]) > 0:
        n = float(sums["smooth_images"])
        report["smoothness"] = {}
        for field in SMOOTHNESS_FIELDS:
            mean = float(sums[f"{field}_sum"]) / n
            variance = max(float(sums[f"{field}_sq_sum"]) / n - mean**2, 0.0)
            report["smoothness"][field] = {"mean": mean, "std": math.sqrt(variance)}
    return report


def format_table(report: dict[str, Any], path: Path | None = None) -> str:
    """A plain-text table of the report's headline measures."""

    def percent(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:6.2f}%"

    rows = [
        ("images", str(report["n_images"])),
        ("clean accuracy", percent(report["clean_acc"])),
        (f"grid accuracy ({report['grid']['n_transforms']} transforms)", percent(report["grid_acc"])),
        ("per-transform accuracy", percent(report["per_transform_acc"])),
        ("random accuracy", percent(report["random_acc"])),
        (f"worst-of-{report['worst_of_k']} accuracy", percent(report["worst_of_k_acc"])),
        (f"first-order accuracy ({report['first_order_images']} images)", percent(report["first_order_acc"])),
        ("grid accuracy on those images", percent(report["first_order_grid_acc"])),
        ("shift consistency", percent(report["shift_consistency"])),
    ]
    for field, stats in (report["smoothness"] or {}).items():
        rows.append((f"loss surface {field}", f"{stats['mean']:.4f} +- {stats['std']:.4f}"))
    width = max(len(name) for name, _ in rows)
    lines = ["Spatial robustness" + (f" (report: {path})" if path else "")]
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines)
