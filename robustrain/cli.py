"""The robustrain command line: a LightningCLI over every training module and datamodule (fit/validate/test/predict).

Refused input ends the process with one line on stderr and exit code 2 before training starts (`--debug`, or
ROBUSTRAIN_DEBUG=1, shows the traceback); the other exit codes are listed in robustrain.errors.
"""

import os
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException

from robustrain.callbacks.run_summary import RunSummary
from robustrain.checkpoints import read_checkpoint, resolve_ckpt_path
from robustrain.console import quiet_console
from robustrain.data import ImageDataModule
from robustrain.errors import (
    EXIT_BAD_INPUT,
    EXIT_NON_FINITE,
    EXIT_SIGTERM,
    USER_ERRORS,
    BadInputError,
    NonFiniteError,
    user_error_message,
)
from robustrain.training import RobustClassifier

DEBUG_FLAG = "--debug"


def _logger_init_args(trainer_config: Any) -> Any | None:
    """The init_args namespace of a single TensorBoard/CSV-style logger config, or None."""
    logger = trainer_config.get("logger")
    if isinstance(logger, list):
        logger = logger[0] if len(logger) == 1 else None
    return logger.get("init_args") if hasattr(logger, "get") else None


def run_dir(trainer_config: Any) -> Path | None:
    """`<save_dir>/<name>` of the configured logger: the folder holding the run's version_N folders."""
    init_args = _logger_init_args(trainer_config)
    if init_args is None or init_args.get("save_dir") is None:
        return None
    return Path(init_args.get("save_dir")) / (init_args.get("name") or "lightning_logs")


def check_writable(folder: Path) -> None:
    """BadInputError unless `folder` exists as a writable folder or can be created (before anything is written)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise BadInputError(f"output folder {folder} cannot be created: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BadInputError(
            f"output folder {folder} is not writable ({existing} is read-only); choose another with "
            "--trainer.logger.init_args.save_dir"
        )


class RobustrainCLI(LightningCLI):
    """LightningCLI with robustrain's defaults and checks.

    Models and data are chosen by `class_path` (`--model FGSMTraining`, `--data MNIST5k`, or a YAML `--config`);
    every resolved config is saved next to the run's TensorBoard logs.
    """

    def add_arguments_to_parser(self, parser) -> None:
        parser.set_defaults({"data": {"class_path": "robustrain.data.MNIST5k"}})

    def before_instantiate_classes(self) -> None:
        subcommand = self.config.get("subcommand")
        if subcommand:
            folder = run_dir(self.config[subcommand].trainer)
            if folder is not None:
                check_writable(folder)

    # LightningCLI has no public hook between parsing and its own use of the checkpoint's hyperparameters, so this
    # private method is overridden; tests/test_cli.py fails loudly if Lightning stops calling it.
    def _parse_ckpt_path(self) -> None:
        """Resolve and check `--ckpt_path`, then take the training module and network from the checkpoint.

        - "last" or a run folder means the newest `version_N/checkpoints/last.ckpt`; `fit` then continues in that
          version folder, so a resumed run keeps one folder and one history.
        - URLs and `--weights_only false` are refused: checkpoints are read weights-only, from local files.
        - A corrupt file, or a config naming another network than the checkpoint's, is refused naming both.
        - LightningCLI would apply every hyperparameter stored in the checkpoint over the config and the command
          line, so `test --config eval.yaml --model.init_args.eval_steps 100 --ckpt_path ...` would silently
          evaluate with the checkpoint's training-time `eval_*` settings. We keep the checkpoint's class, network
          and training arguments (they define the weights) and let the config and command line decide every
          `eval_*` argument.
        """
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        if "weights_only" in config:
            if config.get("weights_only") is False:
                raise BadInputError(
                    "weights_only=false is refused: robustrain reads checkpoints weights-only, since unpickling "
                    "anything else can run arbitrary code"
                )
            config["weights_only"] = True
        ckpt_path = config.get("ckpt_path")
        if not ckpt_path:
            return
        folder = run_dir(config.trainer)
        path, version = resolve_ckpt_path(str(ckpt_path), folder)
        config["ckpt_path"] = str(path)
        init_args = _logger_init_args(config.trainer)
        if (
            subcommand == "fit"
            and version is not None
            and init_args is not None
            and path.parents[2].resolve() == folder.resolve()
        ):
            init_args["version"] = version  # continue the run's own folder
        hparams = read_checkpoint(path).get("hyper_parameters", {})
        hparams.pop("_instantiator", None)
        if "_class_path" not in hparams:  # not written by this CLI: keep Lightning's behaviour
            return super()._parse_ckpt_path()
        class_path = hparams.pop("_class_path")
        _check_same_network(path, hparams.get("net"), config.get("model"))
        init_args = {k: v for k, v in hparams.items() if not k.startswith("eval_")}
        model = {"class_path": class_path, "init_args": init_args}
        self.config = self.parser.parse_object({subcommand: {"model": model}}, self.config)


def _class_path(config: Any) -> str | None:
    return config.get("class_path") if hasattr(config, "get") else None


def _check_same_network(path: Path, ckpt_net: Any, model_config: Any) -> None:
    """BadInputError when the config names a network class other than the one the checkpoint's weights belong to."""
    init_args = model_config.get("init_args") if hasattr(model_config, "get") else None
    wanted, held = _class_path(init_args.get("net")) if init_args else None, _class_path(ckpt_net)
    if wanted and held and wanted.rsplit(".", 1)[-1] != held.rsplit(".", 1)[-1]:
        raise BadInputError(
            f"{path} holds a {held} network but the config asks for model.init_args.net={wanted}: pick the config "
            "that matches the checkpoint, or drop the config's net (the checkpoint's is used)"
        )


def _subcommand(args: list[str]) -> str | None:
    return next((a for a in args if a in ("fit", "validate", "test", "predict")), None)


def _usage_hint(args: list[str]) -> str:
    subcommand = _subcommand(args)
    help_cmd = f"python train.py {subcommand} --help" if subcommand else "python train.py --help"
    return f"(see `{help_cmd}`; add {DEBUG_FLAG} or set ROBUSTRAIN_DEBUG=1 for the traceback)"


def main(args: list[str] | None = None, run: bool = True) -> RobustrainCLI:
    """Entry point of `train.py` and the `robustrain` console script; exits with robustrain.errors' codes.

    Every run gets a RunSummary (the closing summary of fit) and a quiet console (robustrain.console: Lightning's tips
    and the notices known to be irrelevant are filtered; `--debug` shows everything).
    """
    from_argv = args is None
    args = list(sys.argv[1:] if from_argv else args)
    debug = DEBUG_FLAG in args or os.environ.get("ROBUSTRAIN_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != DEBUG_FLAG]
    if from_argv:  # LightningCLI reads sys.argv itself (and warns when given both)
        sys.argv[1:] = args
    try:
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
    except USER_ERRORS as error:
        if debug:
            raise
        print(f"robustrain: error: {user_error_message(error)} {_usage_hint(args)}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


if __name__ == "__main__":
    main()
