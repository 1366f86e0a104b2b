"""The robustrain command line: `python train.py fit|validate|test|predict ...` (and the `robustrain` console script).

Refused input ends the process with one line on stderr and exit code 2 before training starts (`--debug`, or
ROBUSTRAIN_DEBUG=1, shows the traceback), and a refused run leaves no new version folder behind; the other exit codes
are listed in robustrain.core.errors. Checkpoints and the saved config.yaml are written atomically (AtomicCheckpointIO,
AtomicSaveConfig).
"""

import os
import sys

from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from robustrain.callbacks.run_summary import RunSummary
from robustrain.cli.checks import check_config_file, config_files, remove_refused_run_folders
from robustrain.cli.console import quiet_console
from robustrain.cli.lightning_cli import AtomicSaveConfig, RobustrainCLI
from robustrain.core.errors import (
    EXIT_BAD_INPUT,
    EXIT_DISK_FULL,
    EXIT_NON_FINITE,
    EXIT_SIGTERM,
    USER_ERRORS,
    DiskFullError,
    NonFiniteError,
    user_error_message,
)
from robustrain.data import ImageDataModule
from robustrain.training import RobustClassifier

DEBUG_FLAG = "--debug"


def _subcommand(args: list[str]) -> str | None:
    return next((a for a in args if a in ("fit", "validate", "test", "predict")), None)


def _usage_hint(args: list[str]) -> str:
    subcommand = _subcommand(args)
    help_cmd = f"python train.py {subcommand} --help" if subcommand else "python train.py --help"
    return f"(see `{help_cmd}`; add {DEBUG_FLAG} or set ROBUSTRAIN_DEBUG=1 for the traceback)"


def main(args: list[str] | None = None, run: bool = True) -> RobustrainCLI:
    """Entry point of `train.py` and the `robustrain` console script; exits with robustrain.core.errors' codes.

    Every run gets a RunSummary (the closing summary of fit) and a quiet console (robustrain.cli.console: Lightning's
    tips and the notices known to be irrelevant are filtered; `--debug` shows everything).
    """
    from_argv = args is None
    args = list(sys.argv[1:] if from_argv else args)
    debug = DEBUG_FLAG in args or os.environ.get("ROBUSTRAIN_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != DEBUG_FLAG]
    if from_argv:  # LightningCLI reads sys.argv itself (and warns when given both)
        sys.argv[1:] = args
    RobustrainCLI.watched = None
    try:
        for path in config_files(args):
            check_config_file(path)
        with quiet_console(_subcommand(args), enabled=not debug):
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
        print(
            "robustrain: interrupted by SIGTERM; the last completed epoch's checkpoint is kept: resume with the same "
            "command plus --ckpt_path last",
            file=sys.stderr,
        )
        sys.exit(EXIT_SIGTERM)
    except NonFiniteError as error:
        if debug:
            raise
        print(f"robustrain: training stopped: {error}", file=sys.stderr)
        sys.exit(EXIT_NON_FINITE)
    except DiskFullError as error:
        if debug:
            raise
        print(f"robustrain: error: {error}; free space, then resume with --ckpt_path last", file=sys.stderr)
        sys.exit(EXIT_DISK_FULL)
    except (*USER_ERRORS, MisconfigurationException) as error:
        if debug:
            raise
        remove_refused_run_folders(RobustrainCLI.watched)
        print(f"robustrain: error: {user_error_message(error)} {_usage_hint(args)}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


if __name__ == "__main__":
    main()
