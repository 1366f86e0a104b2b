"""Replay of a recorded history (robustrain.stopping.replay): the decisions, the command line, old histories."""

import csv

from robustrain.stopping import Rule, read_history_csv, write_history_csv
from robustrain.stopping.replay import first_stop, main, replay


def _records(values: list[float]) -> list[dict]:
    return [
        {"epoch": e, "step": 10 * (e + 1), "kind": "probe", "lr_rising": False, "value": v}
        for e, v in enumerate(values)
    ]


def test_replay_cli_reads_a_history_csv_and_reports_the_stop(tmp_path, capsys) -> None:
    path = write_history_csv(_records([1.0, 1.0, 1.0, 1.0, 1.5]), tmp_path / "aliasing_history.csv")
    assert read_history_csv(path)[4] == _records([1.0, 1.0, 1.0, 1.0, 1.5])[4]
    assert main([str(path), "--threshold", "0.3", "--window", "3", "--warmup-epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "stop at epoch 4" in out and out.splitlines()[0].split() == [
        "epoch",
        "step",
        "value",
        "median",
        "limit",
        "decision",
    ]
    main([str(path), "--threshold", "0.6"])
    assert "no stop" in capsys.readouterr().out


def test_replay_reports_median_and_limit_per_record() -> None:
    decisions = replay(_records([1.0, 2.0, 4.0, 10.0]), Rule(threshold=0.5, window=2, warmup_epochs=0))
    assert list(decisions[3]) == [
        "epoch",
        "step",
        "value",
        "median",
        "limit",
        "warmup",
        "past",
        "should_stop",
        "reason",
    ]
    assert (decisions[3]["median"], decisions[3]["limit"]) == (3.0, 4.5)
    assert [d["should_stop"] for d in decisions] == [False, True, True, True]  # each against its own median
    assert first_stop(decisions)["epoch"] == 1


def test_a_history_written_before_the_rename_is_replayed_with_its_median_and_limit(tmp_path, capsys) -> None:
    """Histories recorded before `filtered` / `threshold` became `median` / `limit` read with the new names."""
    path = tmp_path / "aliasing_history.csv"
    columns = [
        "epoch",
        "step",
        "kind",
        "lr_rising",
        "warmup",
        "value",
        "filtered",
        "threshold",
        "should_stop",
        "reason",
    ]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for e, v in enumerate([1.0, 1.0, 1.0, 1.0, 1.5]):
            writer.writerow([e, 10 * (e + 1), "probe", False, False, v, 1.0, 1.33, e == 4, ""])
    records = read_history_csv(path)
    assert "filtered" not in records[0] and "threshold" not in records[0]
    assert (records[4]["median"], records[4]["limit"]) == (1.0, 1.33)
    assert main([str(path), "--threshold", "0.3", "--warmup-epochs", "2"]) == 0
    assert "stop at epoch 4" in capsys.readouterr().out


def test_replay_cli_waits_for_a_fall_that_lasts_with_patience(tmp_path, capsys) -> None:
    path = write_history_csv(_records([0.57, 0.62, 0.23, 0.06, 0.78]), tmp_path / "pgd_es_probe_history.csv")
    wong = ["--threshold", "0.2", "--window", "1", "--warmup-epochs", "0", "--no-wait-for-lr-peak"]
    wong += ["--direction", "fall", "--scale", "absolute"]
    main([str(path), *wong])
    assert "stop at epoch 2" in capsys.readouterr().out
    main([str(path), *wong, "--patience", "2"])
    out = capsys.readouterr().out
    assert "stop at epoch 3" in out and "for 2 checks in a row" in out
    assert out.splitlines()[3].split()[-1] == "pending"  # epoch 2: past the limit, not yet for 2 checks
