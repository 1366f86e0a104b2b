"""Checks of the config and the run folder, made before anything is built or written: the run folder is writable,
the accelerator exists, a `fit` has a length, and every `--config` file is a readable YAML mapping. A refused run
leaves no new version folder behind (remove_refused_run_folders)."""

import shutil
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.fabric.utilities.rank_zero import rank_zero_only

from robustrain.core.errors import BadInputError
from robustrain.runs.atomic import check_writable_folder
from robustrain.runs.checkpoints import run_versions


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
