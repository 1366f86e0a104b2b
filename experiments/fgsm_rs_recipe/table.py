"""Median and spread over seeds of the main job's evaluation (robustness.json of configs/eval_robust_mnist5k.yaml).

    python -m experiments.fgsm_rs_recipe.table runs/fgsm_rs_recipe_seed*_eval [--out docs/results/fgsm_rs_recipe.json]

Prints a markdown table: one row per seed (clean, FGSM, PGD-50-10, AutoAttack in %) and the median, min and max.
"""

import argparse
import json
import statistics
from pathlib import Path

KEYS = ("clean", "fgsm", "pgd_50x10", "autoattack")


def read_reports(dirs: list[Path]) -> dict[str, dict[str, float]]:
    """Run name -> accuracies, from <dir>/version_*/robustness.json (the newest version of each dir)."""
    reports = {}
    for d in dirs:
        found = sorted(Path(d).glob("version_*/robustness.json"), key=lambda p: int(p.parent.name.split("_")[1]))
        if not found:
            raise SystemExit(f"{d}: no version_*/robustness.json (run configs/eval_robust_mnist5k.yaml on it first)")
        reports[Path(d).name] = json.loads(found[-1].read_text())["accuracy"]
    return reports


def table(reports: dict[str, dict[str, float]]) -> str:
    """Markdown: a row per run, then the median and the min-max over runs, in %."""
    lines = ["| run | " + " | ".join(KEYS) + " |", "|---" * (len(KEYS) + 1) + "|"]
    for name, acc in reports.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * acc[k]:.1f}" for k in KEYS) + " |")
    values = {k: [acc[k] for acc in reports.values()] for k in KEYS}
    lines.append("| **median** | " + " | ".join(f"**{100 * statistics.median(values[k]):.1f}**" for k in KEYS) + " |")
    lines.append(
        "| min-max | " + " | ".join(f"{100 * min(values[k]):.1f}-{100 * max(values[k]):.1f}" for k in KEYS) + " |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.fgsm_rs_recipe.table", description=__doc__.split("\n")[0]
    )
    parser.add_argument("dirs", nargs="+", type=Path, help="evaluation log dirs (TensorBoard name dirs)")
    parser.add_argument("--out", type=Path, default=None, help="also write the accuracies as JSON here")
    args = parser.parse_args(argv)
    reports = read_reports(args.dirs)
    print(table(reports))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(reports, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
