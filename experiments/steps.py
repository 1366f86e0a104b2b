"""What the studies' command lines share."""

import sys
from pathlib import Path

NO_RUNS = "run the train step first, or give the folder the runs were trained into"


def refuse_missing_out(prog: str, out: Path, hint: str = NO_RUNS) -> bool:
    """Print the one line for a step that reads runs from `--out` when that folder does not exist; True if so (the
    caller then returns exit code 2)."""
    if out.is_dir():
        return False
    print(f"python -m {prog}: error: --out {out} holds no runs (no such folder): {hint}", file=sys.stderr)
    return True
