"""experiments.autoattack_reference.compare: the table of docs/evaluation.md from recorded per-image results."""

import json

from experiments.autoattack_reference.compare import main, recheck_summary, table


def result(ours: list[int], theirs: list[int]) -> dict:
    disagree = [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
    return {
        "images": len(ours),
        "clean": 1.0,
        "fgsm": 0.9,
        "pgd_50x10": 0.8,
        "torchattacks": {"accuracy": sum(ours) / len(ours), "wall_seconds": 10, "cpu_seconds": 8, "robust": ours},
        "reference": {"accuracy": sum(theirs) / len(theirs), "wall_seconds": 20, "cpu_seconds": 16, "robust": theirs},
        "disagree": disagree,
        "agreement": 1 - len(disagree) / len(ours),
    }


def test_the_table_gives_accuracies_their_difference_agreement_and_times() -> None:
    row = table({"masked": result([1, 1, 0, 0], [1, 0, 0, 0])}).splitlines()[2]
    assert row == "| masked | 4 | 100.0 | 90.0 | 80.0 | 50.0 | 25.0 | +25.0 | 75.0% (1 differ) | 10 / 20 (8 / 16) | - |"


def test_the_recheck_counts_the_seeds_each_disagreeing_image_survived_per_implementation() -> None:
    r = result([1, 1, 0, 1], [1, 0, 0, 0])  # images 1 and 3 differ
    r["recheck"] = {"seeds": [1, 2, 3], "torchattacks": [[1, 0], [0, 0], [1, 0]], "reference": [[0, 1], [0, 0], [0, 1]]}
    assert recheck_summary(r) == "#1: 2/0, #3: 0/2 of 3"
    assert table({"m": r}).splitlines()[2].endswith("| #1: 2/0, #3: 0/2 of 3 |")


def test_table_merges_the_files_of_several_processes(tmp_path, capsys) -> None:
    paths = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"results": {name: result([1, 0], [1, 0])}}))
        paths.append(str(path))
    assert main(["--table", *paths]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| a", "| b"]
