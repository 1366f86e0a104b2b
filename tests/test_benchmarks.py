"""The benchmark command's pure parts: ratio summaries over repeats and target checks."""

import pytest
import torch

from benchmarks.run_all import meets, ratio_summary, to_markdown
from benchmarks.spatial import early_exit_work


def test_ratio_summary_is_median_and_spread_of_per_repeat_ratios() -> None:
    summary = ratio_summary([2.0, 9.0, 3.0], [1.0, 3.0, 2.0])  # ratios 2, 3, 1.5
    assert summary == {"median": 2.0, "min": 1.5, "max": 3.0}


def test_ratio_summary_pairs_repeats_instead_of_dividing_medians() -> None:
    # medians 2 / 2 = 1 would hide that each repeat's numerator was twice its denominator
    assert ratio_summary([1.0, 2.0, 4.0], [0.5, 1.0, 2.0])["median"] == 2.0


@pytest.mark.parametrize(("numerators", "denominators"), [([], []), ([1.0], [1.0, 2.0])])
def test_ratio_summary_refuses_unpaired_repeats(numerators, denominators) -> None:
    with pytest.raises(ValueError, match="one length"):
        ratio_summary(numerators, denominators)


def test_meets_compares_costs_and_speed_ups_in_their_direction() -> None:
    assert meets(0.04, 0.05, "<=") is True
    assert meets(0.06, 0.05, "<=") is False
    assert meets(55.0, 50.0, ">=") is True
    assert meets(20.0, 20.0, ">=") is True
    assert meets(1.0, None, "<=") is None
    with pytest.raises(ValueError, match="direction"):
        meets(1.0, 1.0, "<")


def test_early_exit_work_counts_chunks_up_to_the_first_fooling_transform() -> None:
    correct = torch.ones(3, 8, dtype=torch.bool)
    correct[1, 0] = False  # fooled in chunk 1 of 4: 2 transforms run
    correct[2, 5] = False  # fooled in chunk 3: 6 transforms run; the robust image runs all 8
    assert early_exit_work(correct, chunk_size=2) == (8 + 2 + 6) / 24
    assert early_exit_work(correct, chunk_size=8) == 1.0


def test_markdown_lists_every_ratio_with_its_target_and_verdict() -> None:
    entry = {"median": 0.04, "min": 0.03, "max": 0.05, "target": 0.05, "direction": "<=", "meets": True, "what": ""}
    missed = {**entry, "median": 2.2, "target": 2.1, "meets": False}
    rates = {key: {"median": 10.0, "min": 9.0, "max": 11.0} for key in ("full", "early", "seed")}
    report = {
        "conditions": {
            "command": "python -m benchmarks.run_all",
            "device": "cpu",
            "device_name": "CPU",
            "cpu_threads": 2,
            "torch": "2.x",
            "date_utc": "2026-01-01 00:00",
            "repeats": {"aliasing": 3},
        },
        "results": {
            "a / b": entry,
            "c / d": missed,
            "spatial rates (image-transforms/s)": {**rates, "grid_acc": 0.6, "clean_acc": 0.9, "early_exit_work": 0.5},
            "seconds per part": {"aliasing": 1.0},
        },
    }
    text = to_markdown(report)
    assert "| a / b | 0.04 | 0.03..0.05 | <= 0.05 | yes |" in text
    assert "| c / d | 2.2 | 0.03..0.05 | <= 2.1 | **no** |" in text
    assert "2 CPU threads" in text and "early exit evaluates 50% of the grid" in text


def test_the_training_benchmark_times_every_method_against_fgsm() -> None:
    import torch

    from benchmarks.training import METHODS, _report, bench_training

    times = bench_training("SmallCNN", 1, 4, 1, 2, torch.device("cpu"), METHODS)
    assert set(times) == {"standard", "fgsm", "nfgsm", "gradalign", "elle", "flc", "blurpool", "pgd2"}
    assert all(len(v) == 1 and v[0] > 0 for v in times.values())
    summary = _report("SmallCNN", times, 2)
    assert summary["fgsm"]["vs_fgsm"] == 1.0


def test_every_part_runs_by_name_and_a_report_without_the_spatial_part_reads() -> None:
    from benchmarks.run_all import PART_RUNNERS, PARTS, run_all

    assert tuple(PART_RUNNERS) == PARTS
    calls = []
    runners = {part: (lambda device, repeats, results, part=part: calls.append((part, repeats))) for part in PARTS}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("benchmarks.run_all.PART_RUNNERS", runners)
        results = run_all(torch.device("cpu"), {"framework": 2, "autoattack": 1}, ("framework", "autoattack"))
    assert calls == [("framework", 2), ("autoattack", 1)] and set(results["seconds per part"]) == {
        "framework",
        "autoattack",
    }
    entry = {"median": 1.2, "min": 1.1, "max": 1.3, "target": 1.05, "direction": "<=", "meets": False, "what": ""}
    conditions = {"command": "c", "device": "cuda", "device_name": "GPU", "cpu_threads": 2, "torch": "2.x"}
    report = {"conditions": {**conditions, "date_utc": "d", "repeats": {"framework": 2}}, "results": {"f": entry}}
    assert "| f | 1.2 | 1.1..1.3 | <= 1.05 | **no** |" in to_markdown(report)


def test_the_autoattack_benchmark_counts_the_networks_calls_and_images() -> None:
    from benchmarks.autoattack import CountingNetwork

    net = CountingNetwork(torch.nn.Flatten())
    x = torch.rand(3, 1, 2, 2, requires_grad=True)
    net(x)
    with torch.no_grad():
        net(x[:2])
    assert net.counts == {"calls": 2, "images": 5, "gradient_calls": 1}
