"""Run histories of the early-stopping callbacks: one record (dict) per check, written to and read from CSV.

A record holds `epoch`, `step`, `kind` ("probe", "batch" or "first_batch"), the measured values and the decision
(`value`, `median`, `limit`, `should_stop`, `pending`, `reason`; robustrain.stopping.rules.Decision). The CSV is
rewritten whole at every check (a history is a few hundred rows at most), atomically (robustrain.runs.atomic), so it
is always complete and readable while training runs, and never replaced by a shorter one: a file holding more rows
than the history to be written (a run resumed from an earlier checkpoint) is first set aside as
`<stem>.before-resume-<k>.csv`.
Histories written before the rename of `filtered` to `median` and `threshold` to `limit` are read with the new names.
"""

import csv
import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from robustrain.core.errors import BadInputError
from robustrain.runs.atomic import atomic_write_text

_INT_COLUMNS = ("epoch", "step")
_BOOL_COLUMNS = ("should_stop", "pending", "warmup", "lr_rising")
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


def check_history_path(path: str | Path) -> None:
    """BadInputError when something other than a file (a folder, say) stands where a history CSV is written."""
    path = Path(path)
    if path.exists() and not path.is_file():
        kind = "folder" if path.is_dir() else "special file"
        raise BadInputError(
            f"{path} is a {kind}, where this run writes its history CSV: move it away (or run in another folder)"
        )


def count_history_rows(path: str | Path) -> int:
    """Data rows of a history CSV (0 when it does not exist). Undecodable bytes count as text: the count only
    decides whether the file holds more checks than the history about to replace it."""
    check_history_path(path)
    try:
        text = Path(path).read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return 0
    return max(sum(1 for _ in csv.reader(io.StringIO(text, newline=""))) - 1, 0)


def set_aside(path: str | Path) -> Path:
    """Rename `path` to the first free `<stem>.before-resume-<k><suffix>` beside it (k = 1, 2, ...); returns it."""
    path = Path(path)
    k = 1
    while (target := path.with_name(f"{path.stem}.before-resume-{k}{path.suffix}")).exists():
        k += 1
    os.replace(path, target)
    return target


def write_history_csv(history: Sequence[dict], path: str | Path) -> Path:
    """Write the records to `path` atomically (parent folders created); missing values are left empty.

    A file at `path` holding more rows than `history` is set aside first (`set_aside`), with a warning.
    """
    path = Path(path)
    had = count_history_rows(path)
    if had > len(history):
        kept = set_aside(path)
        warnings.warn(
            f"{path} held {had} checks, more than the {len(history)} of the resumed run: kept as {kept.name}",
            stacklevel=2,
        )
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=history_columns(history), restval="")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(path, text.getvalue())
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
        ValueError: naming the file (and the line and column) of the first value that does not parse or decode.
        BadInputError: when the path is a folder.
    """
    records = []
    check_history_path(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path} is not a history CSV: byte {error.start} is not UTF-8 text ({error.reason})"
        ) from None
    with io.StringIO(text, newline="") as f:
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
