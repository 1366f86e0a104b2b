"""The robustrain command line: a LightningCLI over every training module and datamodule (fit/validate/test/predict).

Refused input ends the process with one line on stderr and exit code 2 before training starts (`--debug`, or
ROBUSTRAIN_DEBUG=1, shows the traceback), and a refused run leaves no new version folder behind; the other exit codes
are listed in robustrain.errors. Checkpoints and the saved config.yaml are written atomically (AtomicCheckpointIO,
AtomicSaveConfig). A `fit --ckpt_path` resume is refused when the command would train under other settings than the
checkpoint's (robustrain.resume), unless `--allow_changed_settings true`.
"""

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.fabric.utilities.seed import seed_everything
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from robustrain import resume
from robustrain.atomic import atomic_write_text, check_writable_folder, remove_stale_partials
from robustrain.callbacks.rollback_early_stopping import RollbackEarlyStopping
from robustrain.callbacks.run_summary import RunSummary
from robustrain.checkpoint_io import AtomicCheckpointIO
from robustrain.checkpoints import read_checkpoint, resolve_ckpt_path, run_versions
from robustrain.console import quiet_console
from robustrain.data import ImageDataModule
from robustrain.errors import (
    EXIT_BAD_INPUT,
    EXIT_DISK_FULL,
    EXIT_NON_FINITE,
    EXIT_SIGTERM,
    USER_ERRORS,
    BadInputError,
    DiskFullError,
    NonFiniteError,
    user_error_message,
)
from robustrain.train_eval_modes import eval_mode
from robustrain.training import RobustClassifier, network_of
from robustrain.training.safeguards import first_non_finite

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
    check_writable_folder(folder, "output folder", "; choose another with --trainer.logger.init_args.save_dir")


TRAIN_LENGTH_HINT = "give trainer.max_epochs >= 1 (or trainer.max_steps >= 1)"


def check_training_length(trainer_config: Any) -> None:
    """BadInputError for a `fit` that could train no batch, or one without an end (robustrain's lr schedules are
    fractions of the run, so they need its length)."""
    max_epochs, max_steps = trainer_config.get("max_epochs"), trainer_config.get("max_steps", -1)
    if max_steps is not None and max_steps != -1 and (not isinstance(max_steps, int) or max_steps < 1):
        raise BadInputError(f"trainer.max_steps={max_steps!r} is not valid: it must be an integer >= 1, or -1 (none)")
    if max_epochs is not None and max_epochs < -1:
        raise BadInputError(f"trainer.max_epochs={max_epochs} is not valid: {TRAIN_LENGTH_HINT}")
    if max_epochs == 0:
        raise BadInputError(f"trainer.max_epochs=0 trains nothing: {TRAIN_LENGTH_HINT}")
    if max_epochs == -1 and max_steps in (None, -1):
        raise BadInputError(
            "trainer.max_epochs=-1 (no limit) is not valid here: robustrain's lr schedules are fractions of the run, "
            f"so they need its length; {TRAIN_LENGTH_HINT}"
        )
    limit = trainer_config.get("limit_train_batches")
    if limit is not None and not isinstance(limit, bool) and limit <= 0:
        raise BadInputError(
            f"trainer.limit_train_batches={limit:g} trains no batch: give a number of batches >= 1 or a fraction in "
            "(0, 1]"
        )


def check_accelerator(trainer_config: Any) -> None:
    """BadInputError when the config asks for a GPU this machine does not have (Lightning's own error says less)."""
    accelerator = trainer_config.get("accelerator")
    if isinstance(accelerator, str) and accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        mps = getattr(torch.backends, "mps", None)
        if accelerator == "gpu" and mps is not None and mps.is_available():
            return
        raise BadInputError(
            f"trainer.accelerator={accelerator} asks for a GPU, but this machine has none that torch can use "
            "(torch.cuda.is_available() is False): use --trainer.accelerator cpu (or auto)"
        )


class AtomicSaveConfig(SaveConfigCallback):
    """Lightning's SaveConfigCallback, writing `config.yaml` atomically (robustrain.atomic)."""

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self.already_saved:
            return
        if self.save_to_log_dir:
            log_dir = trainer.log_dir  # broadcasts the folder: every rank calls it
            if trainer.is_global_zero:
                text = self.parser.dump(self.config, skip_none=False)
                atomic_write_text(Path(log_dir) / self.config_filename, text)
        if trainer.is_global_zero:
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)


@dataclass
class LoadedCheckpoint:
    """What the CLI read from `--ckpt_path` before building anything."""

    path: Path
    shapes: dict[str, tuple[int, ...]]
    signature: dict[str, Any]
    run_seed: int | None
    epoch: int | None
    global_step: int
    epochs_done: int | None = None  # epochs whose training part ran (Lightning's epoch_progress "processed")
    stops: list[tuple[str, int]] = field(default_factory=list)  # (callback state key, epoch) of stops decided
    requested_seed: Any = None


def _watched_versions(folder: Path | None) -> tuple[Path, set[str]] | None:
    return None if folder is None else (folder, {p.name for _, p in run_versions(folder)})


def remove_refused_run_folders(watched: tuple[Path, set[str]] | None) -> list[Path]:
    """Remove the version folders a refused run created (those absent before it started that hold no checkpoint)."""
    if watched is None or rank_zero_only.rank != 0:
        return []
    folder, before = watched
    removed = []
    for _, version in run_versions(folder):
        if version.name not in before and not any(version.rglob("*.ckpt")):
            shutil.rmtree(version, ignore_errors=True)
            removed.append(version)
    return removed


class RobustrainCLI(LightningCLI):
    """LightningCLI with robustrain's defaults and checks.

    Models and data are chosen by `class_path` (`--model FGSMTraining`, `--data MNIST5k`, or a YAML `--config`);
    every resolved config is saved next to the run's TensorBoard logs.
    """

    watched: tuple[Path, set[str]] | None = None  # the run folder's versions before this run (see main)
    loaded: LoadedCheckpoint | None = None  # what --ckpt_path holds (set by _parse_ckpt_path)

    def add_arguments_to_parser(self, parser) -> None:
        parser.set_defaults({"data": {"class_path": "robustrain.data.MNIST5k"}})
        parser.add_argument(
            f"--{resume.ALLOW_FLAG}",
            type=bool,
            default=False,
            help="fit --ckpt_path: continue the run even though settings that shape it changed (see robustrain.resume)",
        )

    def before_instantiate_classes(self) -> None:
        subcommand = self.config.get("subcommand")
        if subcommand:
            trainer_config = self.config[subcommand].trainer
            folder = run_dir(trainer_config)
            if folder is not None:
                check_writable(folder)
            check_accelerator(trainer_config)
            if subcommand == "fit":
                check_training_length(trainer_config)
            RobustrainCLI.watched = _watched_versions(folder)

    def instantiate_trainer(self, **kwargs: Any):
        """The configured trainer, writing checkpoints through AtomicCheckpointIO unless its plugins name a
        CheckpointIO of their own."""
        plugins = self._get(self.config_init, "trainer", default={}).get("plugins")
        plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            kwargs["plugins"] = [*plugins, AtomicCheckpointIO()]
        return super().instantiate_trainer(**kwargs)

    # LightningCLI has no public hook between parsing and its own use of the checkpoint's hyperparameters, so this
    # private method is overridden; tests/test_cli.py fails loudly if Lightning stops calling it.
    def _parse_ckpt_path(self) -> None:
        """Resolve and check `--ckpt_path`; for `fit`, prepare the resume check; otherwise take the training module
        and network from the checkpoint.

        - "last" or a run folder means the newest `version_N/checkpoints/last.ckpt`; `fit` then continues in that
          version folder, so a resumed run keeps one folder and one history.
        - URLs, an empty path and `--weights_only false` are refused: checkpoints are read weights-only, from local
          files. So are a corrupt file, one that is no Lightning checkpoint (a bare state dict), one whose weights
          are not finite, and for `fit` one without the optimizer state a resume needs.
        - `fit`: the config and command line decide everything; `before_fit` compares them with the checkpoint's
          run signature (robustrain.resume) and refuses a change that would mix two runs.
        - `validate` / `test` / `predict`: LightningCLI would apply every hyperparameter stored in the checkpoint over
          the config and the command line, so `test --config eval.yaml --model.init_args.eval_steps 100 --ckpt_path
          ...` would silently evaluate with the checkpoint's training-time `eval_*` settings. We keep the
          checkpoint's class, network and training arguments (they define the weights) and let the config and
          command line decide every `eval_*` argument. A config naming another network class is refused.
        """
        self.loaded = None
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
        if ckpt_path is None:
            return
        if not str(ckpt_path).strip():
            raise BadInputError(
                "ckpt_path is empty: give a .ckpt file, a run folder or 'last', or leave out --ckpt_path to start a "
                "new run"
            )
        folder = run_dir(config.trainer)
        # a run folder given to test / validate / predict names the model the run ends with (a stop's hand-back)
        path, version = resolve_ckpt_path(str(ckpt_path), folder, model=subcommand != "fit")
        config["ckpt_path"] = str(path)
        checkpoint = read_checkpoint(path)
        _check_lightning_checkpoint(path, checkpoint, subcommand)
        state_dict = checkpoint["state_dict"]
        bad = first_non_finite(state_dict.items())
        if bad is not None:
            harm = "training would go on from nan" if subcommand == "fit" else "they would report chance accuracy"
            raise BadInputError(
                f"{path} holds non-finite weights ({bad}): {harm}; use a checkpoint written before training diverged"
            )
        record = checkpoint.get("robustrain") or {}
        self.loaded = LoadedCheckpoint(
            path=path,
            shapes={k: tuple(v.shape) for k, v in state_dict.items() if isinstance(v, torch.Tensor)},
            signature=resume.checkpoint_signature(checkpoint),
            run_seed=record.get("run_seed"),
            epoch=checkpoint.get("epoch"),
            global_step=int(checkpoint.get("global_step", 0)),
            epochs_done=_epochs_done(checkpoint),
            stops=[
                (key, state["stopped_epoch"])
                for key, state in (checkpoint.get("callbacks") or {}).items()
                if isinstance(state, dict) and state.get("stopped_epoch") is not None
            ],
        )
        init_args = _logger_init_args(config.trainer)
        if subcommand == "fit":
            if version is not None and init_args is not None and path.parents[2].resolve() == folder.resolve():
                init_args["version"] = version  # continue the run's own folder
            self._prepare_resume_seed(config)
            return
        hparams = checkpoint.get("hyper_parameters", {})
        hparams.pop("_instantiator", None)
        if "_class_path" not in hparams:  # not written by this CLI: keep Lightning's behaviour
            return super()._parse_ckpt_path()
        class_path = hparams.pop("_class_path")
        _check_same_network(path, hparams.get("net"), config.get("model"))
        init_args = {k: v for k, v in hparams.items() if not k.startswith("eval_")}
        model = {"class_path": class_path, "init_args": init_args}
        self.config = self.parser.parse_object({subcommand: {"model": model}}, self.config)

    def _prepare_resume_seed(self, config: Any) -> None:
        """A resume keeps the checkpoint's seed: `seed_everything` true / false (no fixed seed asked) takes it; a
        different fixed seed is a change the resume check names."""
        loaded = self.loaded
        loaded.requested_seed = config.get("seed_everything")
        if loaded.run_seed is not None and isinstance(loaded.requested_seed, bool):
            config["seed_everything"] = loaded.run_seed

    # private too: LightningCLI seeds (and logs "Seed set to N") between parsing and instantiation
    def _set_seed(self) -> None:
        """As LightningCLI, except that a resume asking another seed than its checkpoint's is seeded quietly: the
        resume check (before_fit) names the difference instead of a log line claiming the new seed is in force."""
        loaded, subcommand = self.loaded, self.config.get("subcommand")
        seed = self.config[subcommand].get("seed_everything") if subcommand == "fit" else None
        if loaded is None or loaded.run_seed is None or isinstance(seed, bool) or seed == loaded.run_seed:
            return super()._set_seed()
        seed_everything(seed, workers=True, verbose=False)

    # --- checks on the built objects, before anything is written ----------------------------------------------------
    def _check_model_and_data(self) -> None:
        if self.loaded is not None:
            _check_shapes(self.loaded.path, self.model.state_dict(), self.loaded.shapes)
        _check_network_takes_the_data(self.model, self.datamodule)

    def before_fit(self) -> None:
        self._check_model_and_data()
        config = self.config["fit"]
        stop_callbacks = [c for c in self.trainer.callbacks if isinstance(c, RollbackEarlyStopping)]
        trainer = self.trainer
        signature = resume.run_signature(
            model=(config.model.get("class_path"), config.model.get("init_args")),
            data=(config.data.get("class_path"), config.data.get("init_args")) if config.get("data") else None,
            trainer={
                "max_epochs": trainer.max_epochs,
                "max_steps": trainer.max_steps,
                "limit_train_batches": trainer.limit_train_batches,
                "accumulate_grad_batches": trainer.accumulate_grad_batches,
                "gradient_clip_val": trainer.gradient_clip_val,
                "gradient_clip_algorithm": trainer.gradient_clip_algorithm,
                "precision": trainer.precision,
                "processes": trainer.world_size,
            },
            callbacks=[(c.name, c.hparams()) for c in stop_callbacks],
            seed=config.get("seed_everything"),
        )
        if hasattr(self.model, "run_signature"):
            self.model.run_signature = signature
        self._start_step = 0
        loaded = self.loaded
        if loaded is None:
            return
        self._start_step = loaded.global_step
        remove_stale_partials(loaded.path.parent)  # a writer killed mid-write left its temp file
        for callback in self.trainer.checkpoint_callbacks:
            # The resumed run retrains the interrupted epoch: its checkpoints replace (atomically) the files the
            # interrupted run wrote for that epoch, instead of sitting beside them as `best-epoch=NN-v1.ckpt`.
            # Lightning has no public switch after construction; tests/test_faults.py's mid-write kill checks it.
            if hasattr(callback, "_enable_version_counter"):
                callback._enable_version_counter = False
        changes = resume.differences(loaded.signature, signature)
        if changes and not config.get(resume.ALLOW_FLAG):
            raise BadInputError(resume.refusal(loaded.path, changes))
        if changes:
            rank_zero_warn(resume.allowed_note(changes))
            if hasattr(self.model, "settings_changes"):
                epoch = None if loaded.epoch is None else loaded.epoch + 1
                self.model.settings_changes = [{"epoch": epoch, "changes": [list(c) for c in changes]}]
            if any(key == "seed_everything" for key, _, _ in changes):
                self.model._seed_override = config.get("seed_everything")
        elif loaded.run_seed is not None and loaded.requested_seed is True:
            rank_zero_info(f"resuming with the checkpoint's seed {loaded.run_seed}")
        _check_something_left(loaded, self.trainer)

    def after_fit(self) -> None:
        """A fit that trained no batch is no success: exit non-zero, saying why."""
        if self.trainer.interrupted or self.trainer.global_step > getattr(self, "_start_step", 0):
            return
        if self.loaded is not None:
            raise BadInputError(
                f"nothing was trained: {self.loaded.path} had already finished its run (epoch {self.loaded.epoch}, "
                f"max_epochs {self.trainer.max_epochs})"
            )
        raise BadInputError(
            "nothing was trained: fit ran no training batch (check trainer.limit_train_batches and the training set)"
        )

    def before_validate(self) -> None:
        self._check_model_and_data()

    before_test = before_validate
    before_predict = before_validate


def _epochs_done(checkpoint: dict) -> int | None:
    try:
        return int(checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError, ValueError):
        return None


def _check_something_left(loaded: LoadedCheckpoint, trainer: Any) -> None:
    """BadInputError when resuming the checkpoint would train nothing: its run stopped early or finished."""
    if loaded.stops:
        key, epoch = loaded.stops[0]
        raise BadInputError(
            f"nothing is left to train: the run of {loaded.path} ended at its early stop ({key.split('{')[0]}, epoch "
            f"{epoch}); its handed-back model is the *_stop.ckpt beside the logs; start a new run to train again"
        )
    max_epochs, max_steps = trainer.max_epochs, trainer.max_steps
    finished = (
        max_epochs not in (None, -1) and loaded.epochs_done is not None and loaded.epochs_done >= max_epochs
    ) or (max_steps not in (None, -1) and loaded.global_step >= max_steps)
    if finished:
        raise BadInputError(
            f"nothing is left to train: {loaded.path} finished its run ({loaded.epochs_done} epochs of max_epochs "
            f"{max_epochs}); to train longer, raise trainer.max_epochs (a schedule change: add "
            f"--{resume.ALLOW_FLAG} true)"
        )


def _check_lightning_checkpoint(path: Path, checkpoint: dict, subcommand: str) -> None:
    """BadInputError unless the file is a Lightning checkpoint (and, to resume training, one with its optimizer)."""
    missing = [key for key in ("state_dict", "pytorch-lightning_version") if key not in checkpoint]
    if missing or not isinstance(checkpoint.get("state_dict"), dict):
        held = ", ".join(map(repr, list(checkpoint)[:4])) or "nothing"
        raise BadInputError(
            f"{path} is not a Lightning checkpoint: it lacks {', '.join(map(repr, missing)) or 'a state_dict'} "
            f"(it holds {held}{', ...' if len(checkpoint) > 4 else ''}); a bare state dict of a network loads "
            "through the network's weights_path, where it has one"
        )
    if subcommand == "fit" and "optimizer_states" not in checkpoint:
        raise BadInputError(
            f"{path} holds weights only (no optimizer or loop state, e.g. save_weights_only=True): training cannot "
            "resume from it; test it, or start a new run"
        )


def _check_shapes(path: Path, expected: dict[str, torch.Tensor], shapes: dict[str, tuple[int, ...]]) -> None:
    """BadInputError when the checkpoint's tensors do not fit the built module (names the first misfits)."""
    wrong = [
        f"{key} is {tuple(shapes[key])} in the checkpoint but {tuple(value.shape)} in the model"
        for key, value in expected.items()
        if key in shapes and tuple(value.shape) != tuple(shapes[key])
    ]
    missing = [key for key in expected if key not in shapes]
    unexpected = [key for key in shapes if key not in expected]
    problems = wrong[:2]
    if missing:
        problems.append(f"{len(missing)} tensor(s) of the model missing ({', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} tensor(s) the model does not have ({', '.join(unexpected[:3])})")
    if problems:
        raise BadInputError(f"{path} does not fit the model: {'; '.join(problems)}")


def _check_network_takes_the_data(model: Any, datamodule: Any) -> None:
    """BadInputError when the network cannot take the datamodule's images (one forward pass of two blank images)."""
    shape = getattr(datamodule, "image_shape", None)
    net = network_of(model) if model is not None else None
    if shape is None or net is None:
        return
    try:
        with torch.no_grad(), eval_mode(net):
            net(torch.zeros(2, *shape))
    except (RuntimeError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BadInputError(
            f"the network ({type(net).__name__}) does not take the data's images: {type(datamodule).__name__} gives "
            f"{tuple(shape)} images and the network fails on them ({first}); pick the network (or checkpoint) made "
            "for this data"
        ) from None


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


def config_files(args: list[str]) -> list[Path]:
    """The existing files named by `--config X` / `--config=X` in `args`."""
    found = []
    for i, arg in enumerate(args):
        value = arg.removeprefix("--config=") if arg.startswith("--config=") else None
        if arg == "--config" and i + 1 < len(args):
            value = args[i + 1]
        if value is not None and Path(value).is_file():
            found.append(Path(value))
    return found


def check_config_file(path: Path, seen: set[Path] | None = None) -> None:
    """BadInputError naming `path` (or a file it names with `config:`) when it is no readable YAML mapping."""
    seen = set() if seen is None else seen
    if path.resolve() in seen:
        return
    seen.add(path.resolve())
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise BadInputError(f"config file {path} is not a text (YAML) file") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise BadInputError(f"config file {path} is not valid YAML{where}: {problem}") from None
    if document is not None and not isinstance(document, dict):
        raise BadInputError(f"config file {path} must hold a mapping of keys, not a {type(document).__name__}")
    nested = (document or {}).get("config")
    for name in [nested] if isinstance(nested, str) else nested if isinstance(nested, list) else []:
        candidate = (path.parent / str(name)) if not Path(str(name)).is_absolute() else Path(str(name))
        if candidate.is_file():
            check_config_file(candidate, seen)


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
