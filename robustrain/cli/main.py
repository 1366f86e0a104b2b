"""The robustrain command line: `python train.py fit|validate|test|predict ...` (and the `robustrain` console script).

Refused input ends the process with one line on stderr and exit code 2 before training starts (`--debug`, or
ROBUSTRAIN_DEBUG=1, shows the traceback), and a refused run leaves no new version folder behind; the other exit codes
are listed in robustrain.core.errors. Checkpoints and the saved config.yaml are written atomically (AtomicCheckpointIO,
AtomicSaveConfig).
"""

import errno
import os
import sys
import threading
from pathlib import Path

from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from robustrain.callbacks.run_summary import RunSummary
from robustrain.cli.checks import check_config_file, config_files, integer_batch_limits, remove_refused_run_folders
from robustrain.cli.console import quiet_console
from robustrain.cli.lightning_cli import AtomicSaveConfig, RobustrainCLI
from robustrain.core.errors import (
    EXIT_BAD_INPUT,
    EXIT_DISK_FULL,
    EXIT_NON_FINITE,
    EXIT_SIGTERM,
    NO_SPACE,
    USER_ERRORS,
    DiskFullError,
    NonFiniteError,
    user_error_message,
    write_error,
)
from robustrain.data import ImageDataModule
from robustrain.runs.atomic import partial_target
from robustrain.runs.lock import LOCK_NAME, RunFolderInUseError
from robustrain.training import RobustClassifier

DEBUG_FLAG = "--debug"


def _subcommand(args: list[str]) -> str | None:
    return next((a for a in args if a in ("fit", "validate", "test", "predict")), None)


def _usage_hint(args: list[str]) -> str:
    subcommand = _subcommand(args)
    help_cmd = f"python train.py {subcommand} --help" if subcommand else "python train.py --help"
    return f"(see `{help_cmd}`; add {DEBUG_FLAG} or set ROBUSTRAIN_DEBUG=1 for the traceback)"


def write_error_message(error: OSError) -> str:
    """One line for a failed write: robustrain's own message where it has one, else the file and the reason."""
    if isinstance(error, DiskFullError):
        return str(error)
    name = error.filename
    if name is not None:
        target = partial_target(name)  # a temp file of an atomic write: name the file it was to become
        name = str(target[0] if target is not None else Path(name))
    reason = error.strerror or errno.errorcode.get(error.errno, str(error.errno))
    if error.errno in NO_SPACE:
        what = f"writing {name}" if name else "a write"
        return f"no space left on the device: {what} failed ({reason})"
    if error.errno == errno.EROFS:
        return f"cannot write {name or 'the run folder'}: it is on a read-only filesystem ({reason})"
    return f"cannot access {name or 'the run folder'}: permission denied ({reason})"


def _advice(subcommand: str | None) -> str:
    """What to do once the cause is fixed: resume from this run's last.ckpt where it has one, else run again."""
    lock = RobustrainCLI.lock
    if subcommand == "fit" and lock is not None and (lock.folder / "checkpoints" / "last.ckpt").is_file():
        return "resume with the same command and --ckpt_path last"
    if subcommand == "fit":
        return "run the command again (this run has no last.ckpt yet, so there is nothing to resume)"
    return "run the command again"


def _fix(error: OSError) -> str:
    """The first thing to do about a failed write."""
    if error.errno in NO_SPACE:
        return "free space"
    return "make it writable (or choose another folder with --trainer.logger.init_args.save_dir)"


def _remove_empty_files() -> None:
    """Remove the empty files a failed write left in this run's version folder (Lightning's hparams.yaml, opened
    before the disk refused its bytes): they hold nothing, and would read as a run's broken record."""
    lock = RobustrainCLI.lock
    if lock is None:
        return
    for path in lock.folder.iterdir():
        if path.is_file() and path.name != LOCK_NAME and path.stat().st_size == 0:
            path.unlink(missing_ok=True)


def _quiet_thread_write_errors(hook):
    """A threading.excepthook that leaves a full disk or a refused write in a writer thread (TensorBoard's event
    writer) to the main thread, which meets the same error at its next write and reports it in one line."""

    def excepthook(args) -> None:
        if write_error(args.exc_value) is None:
            hook(args)

    return excepthook


def main(args: list[str] | None = None, run: bool = True) -> RobustrainCLI:
    """Entry point of `train.py` and the `robustrain` console script; exits with robustrain.core.errors' codes.

    Every run gets a RunSummary (the closing summary of fit) and a quiet console (robustrain.cli.console: Lightning's
    tips and the notices known to be irrelevant are filtered; `--debug` shows everything). The run's version folder
    is locked (robustrain.runs.lock) from before the first write to the end of the command.
    """
    from_argv = args is None
    args = list(sys.argv[1:] if from_argv else args)
    debug = DEBUG_FLAG in args or os.environ.get("ROBUSTRAIN_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != DEBUG_FLAG]
    if from_argv:  # LightningCLI reads sys.argv itself (and warns when given both)
        sys.argv[1:] = args
    subcommand = _subcommand(args)
    RobustrainCLI.watched = None
    RobustrainCLI.integer_limits = integer_batch_limits(args)
    thread_hook, threading.excepthook = threading.excepthook, _quiet_thread_write_errors(threading.excepthook)
    try:
        for path in config_files(args):
            check_config_file(path)
        with quiet_console(subcommand, enabled=not debug):
            return RobustrainCLI(
                RobustClassifier,
                ImageDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                args=None if from_argv else args,
                run=run,
                # Attacks inside validation / test need autograd, which inference mode forbids. The summary is in
                # every run, beside the config's callbacks.
                trainer_defaults={"inference_mode": False, "callbacks": [RunSummary()]},
                save_config_callback=AtomicSaveConfig,
                save_config_kwargs={"overwrite": True},
                parser_kwargs={"exit_on_error": False},
            )
    except SIGTERMException:
        if rank_zero_only.rank == 0:  # the one process that knows the run folder (and holds its lock)
            kept = "the last completed epoch's checkpoint is kept"
            print(f"robustrain: interrupted by SIGTERM; {kept}: {_advice(subcommand)}", file=sys.stderr)
        sys.exit(EXIT_SIGTERM)
    except NonFiniteError as error:
        if debug:
            raise
        print(f"robustrain: training stopped: {error}", file=sys.stderr)
        sys.exit(EXIT_NON_FINITE)
    except (*USER_ERRORS, MisconfigurationException, OSError, RuntimeError) as error:
        if debug:
            raise
        failed_write = write_error(error)
        if failed_write is not None:
            _remove_empty_files()
            code = EXIT_DISK_FULL if failed_write.errno in NO_SPACE else EXIT_BAD_INPUT
            advice = f"{_fix(failed_write)}, then {_advice(subcommand)}"
            print(f"robustrain: error: {write_error_message(failed_write)}; {advice}", file=sys.stderr)
            sys.exit(code)
        if not isinstance(error, (*USER_ERRORS, MisconfigurationException)):
            raise
        if not isinstance(error, RunFolderInUseError):  # the folder is another process's
            RobustrainCLI.release_lock()
            remove_refused_run_folders(RobustrainCLI.watched)
        print(f"robustrain: error: {user_error_message(error)} {_usage_hint(args)}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    finally:
        RobustrainCLI.release_lock()
        threading.excepthook = thread_hook


if __name__ == "__main__":
    main()
