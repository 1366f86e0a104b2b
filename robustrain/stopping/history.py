"""Run histories of the early-stopping callbacks: one record (dict) per check, written to and read from CSV.

A record holds `epoch`, `step`, `kind` ("probe", "batch" or "first_batch"), the measured values and the decision
(`value`, `median`, `limit`, `should_stop`, `reason`; robustrain.stopping.rules.Decision). The CSV is rewritten whole
at every check (a history is a few hundred rows at most), so it is always complete and readable while training runs.
Histories written before the rename of `filtered` to `median` and `threshold` to `limit` are read with the new names.
"""

import csv
from collections.abc import Sequence
from pathlib import Path

_INT_COLUMNS = ("epoch", "step")
_BOOL_COLUMNS = ("should_stop", "warmup", "lr_rising")
_TEXT_COLUMNS = ("kind", "reason")
RENAMED = {"filtered": "median", "threshold": "limit"}  # old name -> name of the decision's keys since the rename


def upgrade_record(record: dict) -> dict:
    """The record with the decision's old keys (`filtered`, `threshold`) under their names now (`median`, `limit`)."""
    renamed = {old: new for old, new in RENAMED.items() if old in record and new not in record}
    if not renamed:
        return record
    return {renamed.get(key, key): value for key, value in record.items()}


def history_columns(history: Sequence[dict]) -> list[str]:
    """All keys of the records, in order of first appearance."""
    columns: dict[str, None] = {}
    for record in history:
        columns.update(dict.fromkeys(record))
    return list(columns)


def write_history_csv(history: Sequence[dict], path: str | Path) -> Path:
    """Write the records to `path` (parent folders created); missing values are left empty."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=history_columns(history), restval="")
        writer.writeheader()
        writer.writerows(history)
    return path


def _parse(column: str, text: str) -> object:
    if text == "" and column not in _TEXT_COLUMNS:
        return None
    if column in _INT_COLUMNS:
        return int(text)
    if column in _BOOL_COLUMNS:
        if text not in ("True", "False"):
            raise ValueError(f"column {column!r} must hold True or False, got {text!r}")
        return text == "True"
    if column in _TEXT_COLUMNS:
        return text
    return float(text)  # float("nan") and float("inf") round-trip


def read_history_csv(path: str | Path) -> list[dict]:
    """The records of a history CSV, with ints, bools, floats (nan included) and text restored.

    Raises:
        ValueError: naming the file, line and column of the first value that does not parse.
    """
    records = []
    with Path(path).open(newline="") as f:
        reader = csv.DictReader(f)
        for row in reader:
            if None in row or None in row.values():
                raise ValueError(f"{path}, line {reader.line_num}: {len(reader.fieldnames)} columns expected")
            record = {}
            for key, text in row.items():
                try:
                    record[key] = _parse(key, text)
                except ValueError as error:
                    raise ValueError(f"{path}, line {reader.line_num}, column {key!r}: {error}") from None
            records.append(upgrade_record(record))
    return records
