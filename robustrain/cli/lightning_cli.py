"""RobustrainCLI: LightningCLI with robustrain's defaults and checks, and AtomicSaveConfig.

Three private LightningCLI methods are overridden (`_parse_ckpt_path`, `_set_seed`, and the trainer's checkpoint
versioning in `before_fit`), each because Lightning has no public hook at that point; tests/test_cli.py fails loudly
if Lightning stops calling them. A `fit --ckpt_path` resume is refused when the command would train under other
settings than the checkpoint's (robustrain.runs.resume), unless `--allow_changed_settings true`.
"""

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.seed import seed_everything
from lightning.pytorch import Callback
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn

from robustrain.callbacks.rollback_early_stopping import RollbackEarlyStopping
from robustrain.cli.checkpoint_checks import (
    LoadedCheckpoint,
    check_lightning_checkpoint,
    check_network_takes_the_data,
    check_same_network,
    check_shapes,
    check_something_left,
    epochs_done,
)
from robustrain.cli.checks import (
    UNTRAINED_FLAG,
    _logger_init_args,
    _watched_versions,
    check_accelerator,
    check_evaluates_weights,
    check_run_folder_writable,
    check_training_length,
    check_writable,
    give_back_integer_limits,
    run_dir,
)
from robustrain.core.errors import BadInputError
from robustrain.runs import resume
from robustrain.runs.atomic import atomic_write_text, remove_stale_partials
from robustrain.runs.checkpoint_io import AtomicCheckpointIO
from robustrain.runs.checkpoints import (
    missing_stop_model,
    read_checkpoint,
    recorded_stops,
    resolve_ckpt_path,
    run_versions,
    version_dir_of,
)
from robustrain.runs.lock import RunFolderLock
from robustrain.stopping.history import set_aside
from robustrain.training.safeguards import first_non_finite


class AtomicSaveConfig(SaveConfigCallback):
    """Lightning's SaveConfigCallback, writing `config.yaml` atomically (robustrain.runs.atomic)."""

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


def _is_global_rank_zero() -> bool:
    """Whether this process is rank 0 of the whole job, before the process group exists: rank 0 by the launcher's
    variables (RANK, LOCAL_RANK, SLURM_PROCID, ...) and on node 0 (Lightning's own multi-node launch sets NODE_RANK
    alone on each node's first process)."""
    node = os.environ.get("NODE_RANK") or os.environ.get("GROUP_RANK") or "0"
    return rank_zero_only.rank == 0 and node == "0"


def _as_list(value: Any) -> list:
    """A trainer argument that takes one object or several (callbacks, plugins), as a list."""
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]


class RobustrainCLI(LightningCLI):
    """LightningCLI with robustrain's defaults and checks.

    Models and data are chosen by `class_path` (`--model FGSMTraining`, `--data MNIST5k`, or a YAML `--config`);
    every resolved config is saved next to the run's TensorBoard logs.
    """

    watched: tuple[Path, set[str]] | None = None  # the run folder's versions before this run (see main)
    loaded: LoadedCheckpoint | None = None  # what --ckpt_path holds (set by _parse_ckpt_path)
    integer_limits: set[str] = set()  # trainer.limit_*_batches spelled as integers (checks.integer_batch_limits)
    lock: RunFolderLock | None = None  # this run's version folder, locked for the whole command (see main)

    def add_arguments_to_parser(self, parser) -> None:
        parser.set_defaults({"data": {"class_path": "robustrain.data.MNIST5k"}})
        parser.add_argument(
            f"--{resume.ALLOW_FLAG}",
            type=bool,
            default=False,
            help=(
                "fit --ckpt_path: continue the run even though settings that shape it changed (see "
                "robustrain.runs.resume)"
            ),
        )
        parser.add_argument(
            "--base_callbacks",
            type=list[Callback] | None,
            default=None,
            help="callbacks a family of configs shares (checkpointing, lr monitor), appended after trainer.callbacks: "
            "a base config sets them once and an experiment's trainer.callbacks lists only its own",
        )
        parser.add_argument(
            f"--{UNTRAINED_FLAG}",
            type=bool,
            default=False,
            help="validate / test / predict without --ckpt_path: evaluate the freshly initialised network on purpose "
            "(refused otherwise)",
        )

    def before_instantiate_classes(self) -> None:
        subcommand = self.config.get("subcommand")
        if subcommand:
            trainer_config = self.config[subcommand].trainer
            folder = run_dir(trainer_config)
            if folder is not None:
                check_writable(folder)
            check_accelerator(trainer_config)
            give_back_integer_limits(trainer_config, RobustrainCLI.integer_limits)
            if subcommand == "fit":
                check_training_length(trainer_config)
            check_evaluates_weights(subcommand, self.config[subcommand])
            RobustrainCLI.watched = _watched_versions(folder)

    def instantiate_trainer(self, **kwargs: Any):
        """The configured trainer, writing checkpoints through AtomicCheckpointIO unless its plugins name a
        CheckpointIO of their own, with the config's `base_callbacks` after its `trainer.callbacks`, and with the
        trainer.limit_*_batches spelled as integers counting batches."""
        trainer_config = self._get(self.config_init, "trainer", default={})
        # instantiation re-parsed the limits to floats: give the integers back (see checks.integer_batch_limits)
        give_back_integer_limits(trainer_config, RobustrainCLI.integer_limits)
        base = self._get(self.config_init, "base_callbacks")
        if base:
            own = _as_list(trainer_config.get("callbacks"))
            # a config written before base_callbacks existed re-lists the base's callbacks itself: its own win
            listed = {c.state_key for c in own if hasattr(c, "state_key")}
            trainer_config["callbacks"] = [*own, *(c for c in base if c.state_key not in listed)]
        plugins = _as_list(trainer_config.get("plugins"))
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
          run signature (robustrain.runs.resume) and refuses a change that would mix two runs.
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
        check_lightning_checkpoint(path, checkpoint, subcommand)
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
            epochs_done=epochs_done(checkpoint),
            stops=recorded_stops(checkpoint),
            missing_stop_model=missing_stop_model(checkpoint, version_dir_of(path)) if version_dir_of(path) else None,
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
        check_same_network(path, hparams.get("net"), config.get("model"))
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
            check_shapes(self.loaded.path, self.model.state_dict(), self.loaded.shapes)
        check_network_takes_the_data(self.model, self.datamodule)

    def _lock_run_folder(self) -> None:
        """Lock this run's version folder (robustrain.runs.lock) before anything is written to it, after checking it
        can be written; remove the temp files that killed writers left in the run's version folders. Rank 0 only: the
        other ranks of a DDP run write nothing there."""
        logger = self.trainer.logger
        if not _is_global_rank_zero() or not isinstance(logger, (TensorBoardLogger, CSVLogger)):
            return
        version_dir = Path(logger.log_dir)
        check_run_folder_writable(version_dir)
        RobustrainCLI.lock = RunFolderLock(version_dir).acquire()
        # this run's folder and its siblings: a run killed before its first checkpoint left its temp files there
        for _, version in run_versions(version_dir.parent):
            for folder in (version, version / "checkpoints"):
                if folder.is_dir():
                    remove_stale_partials(folder)

    @classmethod
    def release_lock(cls) -> None:
        if cls.lock is not None:
            cls.lock.release()
            cls.lock = None

    def before_fit(self) -> None:
        """Check the command against the checkpoint and the data (nothing written yet), then lock the run folder."""
        self._check_fit()
        self._lock_run_folder()
        if self.loaded is not None:
            remove_stale_partials(self.loaded.path.parent)  # a writer killed mid-write left its temp file
            self._set_aside_unrecorded_stop_models()

    def _set_aside_unrecorded_stop_models(self) -> None:
        """A `<stop>_stop.ckpt` in the resumed run's folder that its checkpoint does not record was written by a run
        killed before it recorded the stop: the resumed run decides afresh, so the file is kept aside as
        `<name>_stop.before-resume-<k>.ckpt` rather than taken for this run's model."""
        folder = version_dir_of(self.loaded.path)
        if folder is None or RobustrainCLI.lock is None or RobustrainCLI.lock.folder.resolve() != folder.resolve():
            return
        recorded = {name for _, _, name in self.loaded.stops if name}
        for stray in sorted(folder.glob("*_stop.ckpt")):
            if stray.name not in recorded:
                kept = set_aside(stray)
                rank_zero_warn(
                    f"{stray} was not recorded by {self.loaded.path} (a run killed before it recorded its "
                    f"stop): kept as {kept.name}; the resumed run decides its stop afresh"
                )

    def _check_fit(self) -> None:
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
        check_something_left(loaded, self.trainer)

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
        self._lock_run_folder()

    before_test = before_validate
    before_predict = before_validate
