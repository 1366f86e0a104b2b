"""Errors robustrain raises on purpose, the exit codes of its command line, and one-line messages for users.

Exit codes of `python train.py ...` (and the `robustrain` command):
    0    finished (an early stop is a normal finish);
    2    bad input: a refused parameter, file or checkpoint, reported in one line before training starts;
    3    training stopped on a non-finite loss, gradient or weight (NonFiniteError);
    2    also: a write refused by a read-only filesystem or by permissions (EROFS, EACCES, EPERM), wherever it happens
         (robustrain's writes, Lightning's, TensorBoard's);
    4    a write found the disk (or quota) full (ENOSPC, EDQUOT; DiskFullError for robustrain's own writes), wherever
         it happens: nothing was torn, the previous checkpoint is intact, and the run resumes with `--ckpt_path last`
         once there is space (where it had written one);
    143  interrupted by SIGTERM (128 + 15): the run resumes exactly with `--ckpt_path last`.
    1    anything else (a bug: the traceback is printed), or Ctrl-C (Lightning's own exit code).
"""

import errno
import re
import signal
from argparse import ArgumentError

EXIT_BAD_INPUT = 2
EXIT_NON_FINITE = 3
EXIT_DISK_FULL = 4
EXIT_SIGTERM = 128 + signal.SIGTERM


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
REFUSED_WRITE = (errno.EROFS, errno.EACCES, errno.EPERM)


class NonFiniteError(RuntimeError):
    """Training met a nan or inf (loss, gradient or weight) and stopped before it could spread to a checkpoint."""


class DiskFullError(OSError):
    """A write found no space left (ENOSPC or EDQUOT); its message names the folder and the bytes needed."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


class BadInputError(ValueError):
    """A refused input (file, checkpoint, folder) found by robustrain itself; its message is the whole story."""


# exception types whose message, for input given by the user, says what is wrong (others are bugs: traceback)
USER_ERRORS = (ArgumentError, ValueError, TypeError, FileNotFoundError, NotADirectoryError, PermissionError)

_PARSER_KEY = re.compile(r'^Parser key "([^"]+)":')
_EXPECTED = re.compile(r"^Expected a <class '(\w+)'>\. Got value: (.*)$")
# what a key takes, where jsonargparse's "expected a <type>" names only the last of its types
NOT_FINITE = ("nan", "inf", "infinity", ".nan", ".inf")  # spellings the parser reads as text, not as a float
EXPECTED_VALUES = {"seed_everything": "an integer seed, or true (draw one) / false (no seeding)"}


def _chain(exc: BaseException) -> list[BaseException]:
    """exc and the exceptions it was raised from, outermost first."""
    out, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        out.append(exc)
        exc = exc.__cause__ if exc.__cause__ is not None or exc.__suppress_context__ else exc.__context__
    return out


def user_error_message(exc: BaseException) -> str:
    """One line for a refused input: the innermost message of the chain, prefixed by the config key it concerns.

    jsonargparse wraps a refused value in several layers ("Does not validate against any of the Union subtypes",
    "Problem with given class_path ...", "Parser key ..."): the innermost exception holds the real reason (for
    robustrain's own checks, a message naming the value and what is valid) and the `Parser key` layers hold its key.
    """
    chain = _chain(exc)
    keys: list[str] = []
    for e in chain:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        match = _PARSER_KEY.match(first)
        if match and (not keys or keys[-1] != match.group(1)):
            keys.append(match.group(1))
        elif first.startswith("Problem with given class_path") and keys and keys[-1] != "init_args":
            keys.append("init_args")
    message = " ".join(str(chain[-1]).split())
    key = ".".join(k for i, k in enumerate(keys) if k != "init_args" or i < len(keys) - 1)
    expected = _EXPECTED.match(message)
    if expected and expected.group(1) == "float" and expected.group(2).strip().lower().lstrip("+-") in NOT_FINITE:
        message = f"got {expected.group(2)}, but only a finite number is valid here"
    elif expected:
        message = f"expected {EXPECTED_VALUES.get(key, 'a ' + expected.group(1))}, got {expected.group(2)}"
    return f"{key}: {message}" if key and not message.startswith(keys[-1]) else message


def write_error(exc: BaseException) -> OSError | None:
    """The OSError of a full disk (NO_SPACE) or a refused write (REFUSED_WRITE) in `exc` or the exceptions it was
    raised from (Lightning re-raises a writer's error from its teardown), or None."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in NO_SPACE + REFUSED_WRITE:
            return e
    return None
