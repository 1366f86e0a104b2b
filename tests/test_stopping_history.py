"""robustrain.stopping.history: the early-stopping records written to CSV and read back exactly, old names upgraded."""

import math

import pytest

from robustrain.stopping import read_history_csv, upgrade_record, write_history_csv


def test_records_round_trip_with_their_types(tmp_path) -> None:
    records = [
        {"epoch": 0, "step": 10, "kind": "probe", "value": 1.5, "median": math.nan, "limit": math.nan, "reason": ""},
        {"epoch": 1, "step": 20, "kind": "probe", "value": math.inf, "should_stop": True, "reason": "not finite"},
    ]
    rows = read_history_csv(write_history_csv(records, tmp_path / "h" / "history.csv"))
    assert rows[0]["epoch"] == 0 and rows[0]["kind"] == "probe" and rows[0]["value"] == 1.5
    assert math.isnan(rows[0]["median"]) and rows[0]["should_stop"] is None  # a missing value reads as None
    assert rows[1]["value"] == math.inf and rows[1]["should_stop"] is True and rows[1]["reason"] == "not finite"


def test_upgrade_record_renames_the_old_decision_keys_only_where_the_new_ones_are_missing() -> None:
    old = {"epoch": 3, "value": 2.0, "filtered": 1.0, "threshold": 1.33, "should_stop": True}
    assert upgrade_record(old) == {"epoch": 3, "value": 2.0, "median": 1.0, "limit": 1.33, "should_stop": True}
    assert list(upgrade_record(old)) == ["epoch", "value", "median", "limit", "should_stop"]  # column order kept
    new = {"epoch": 3, "median": 1.0, "limit": 1.33}
    assert upgrade_record(new) is new


def test_a_value_that_does_not_parse_is_named_by_file_line_and_column(tmp_path) -> None:
    path = tmp_path / "history.csv"
    path.write_text("epoch,step,kind,should_stop\n0,10,probe,maybe\n")
    with pytest.raises(ValueError, match=r"history.csv, line 2, column 'should_stop': .*True or False"):
        read_history_csv(path)


def test_a_longer_history_on_disk_is_set_aside_never_replaced_by_a_shorter_one(tmp_path) -> None:
    path = tmp_path / "aliasing_history.csv"
    records = [{"epoch": e, "step": 10 * e, "kind": "probe", "value": float(e)} for e in range(4)]
    write_history_csv(records, path)
    with pytest.warns(UserWarning, match="held 4 checks, more than the 2 of the resumed run: kept as"):
        write_history_csv(records[:2], path)
    assert len(read_history_csv(path)) == 2
    kept = tmp_path / "aliasing_history.before-resume-1.csv"
    assert read_history_csv(kept) == read_history_csv(write_history_csv(records, tmp_path / "whole.csv"))
    write_history_csv(records[:3], path)  # growing again: nothing set aside
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "aliasing_history.before-resume-1.csv",
        "aliasing_history.csv",
        "whole.csv",
    ]
