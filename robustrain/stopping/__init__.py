"""Early-stopping rules as pure functions (no Lightning): one entry point `decide` and the history records.

Replaying a recorded history is its own command: `python -m robustrain.stopping.replay`.
"""

from robustrain.stopping.history import read_history_csv, upgrade_record, write_history_csv
from robustrain.stopping.rules import (
    ALIASING_RULE,
    Decision,
    Rule,
    decide,
    median_reference,
    pgd_es_rule,
    reference_history,
)

__all__ = [
    "ALIASING_RULE",
    "Decision",
    "Rule",
    "decide",
    "median_reference",
    "pgd_es_rule",
    "read_history_csv",
    "reference_history",
    "upgrade_record",
    "write_history_csv",
]
