"""Checks of the config and the run folder, made before anything is built or written: the run folder is writable,
the accelerator exists, a `fit` has a length, and every `--config` file is a readable YAML mapping. A refused run
leaves no new version folder behind (remove_refused_run_folders)."""

import re
import shutil
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.fabric.utilities.rank_zero import rank_zero_only

from robustrain.core.errors import BadInputError
from robustrain.runs.atomic import check_writable_folder
from robustrain.runs.checkpoints import run_versions
from robustrain.runs.lock import held_by_another


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
        # another process's new run (locked) is no refused run's folder, even before its first checkpoint
        if version.name not in before and not any(version.rglob("*.ckpt")) and not held_by_another(version):
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


def nested_configs(path: Path, document: dict) -> list[Path]:
    """The files a config names with its `config:` key (one or a list), relative to the config's own folder."""
    names = document.get("config")
    names = [names] if isinstance(names, str) else names if isinstance(names, list) else []
    return [path.parent / str(name) for name in names]  # an absolute name stays absolute


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
    if document is None:
        what = "empty" if not text.strip() else "empty: it holds only comments"
        raise BadInputError(f"config file {path} is {what}; give a YAML mapping of settings (see configs/)")
    if not isinstance(document, dict):
        raise BadInputError(f"config file {path} must hold a mapping of keys, not a {type(document).__name__}")
    for nested in nested_configs(path, document):
        if nested.is_file():
            check_config_file(nested, seen)


LIMIT_KEYS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches")
_INTEGER = re.compile(r"^\+?\d+$")


def _yaml_limits(path: Path, seen: set[Path]) -> dict[str, str]:
    """How a config file (and the files it names with `config:`, first) spells each trainer.limit_*_batches."""
    if path.resolve() in seen or not path.is_file():
        return {}
    seen.add(path.resolve())
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}  # check_config_file names what is wrong with it
    if not isinstance(document, dict):
        return {}
    spelled: dict[str, str] = {}
    for nested in nested_configs(path, document):
        spelled.update(_yaml_limits(nested, seen))
    trainer = document.get("trainer") if isinstance(document.get("trainer"), dict) else {}
    for key in LIMIT_KEYS:
        for value in (trainer.get(key), document.get(f"trainer.{key}")):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                spelled[key] = repr(value)
    return spelled


def integer_batch_limits(args: list[str]) -> set[str]:
    """The trainer.limit_*_batches keys whose value, as the user last spelled it (config files, then the command line,
    in order), is an integer.

    Lightning counts batches for an integer and takes a fraction of them for a float, so `limit_train_batches: 1` is
    one batch and `1.0` all of them; but the command line's parser reads `1` as the float 1.0, so `--trainer.
    limit_train_batches 1` would train every batch, and say so only in an info line. The CLI gives the keys found here
    back their integer (RobustrainCLI.before_instantiate_classes).
    """
    spelled: dict[str, str] = {}
    seen: set[Path] = set()
    for i, arg in enumerate(args):
        key, value = (arg.split("=", 1) + [None])[:2] if arg.startswith("--") else (arg, None)
        if value is None and i + 1 < len(args):
            value = args[i + 1]
        if key in ("--config", "-c") and value is not None:
            spelled.update(_yaml_limits(Path(value), seen))
        elif key.startswith("--trainer.") and key.removeprefix("--trainer.") in LIMIT_KEYS and value is not None:
            spelled[key.removeprefix("--trainer.")] = value.strip()
    return {key for key, value in spelled.items() if _INTEGER.match(value)}


def give_back_integer_limits(trainer_config: Any, keys: set[str]) -> None:
    """Set each of `keys` (integer_batch_limits) that the parser turned into a float back to its integer."""
    for key in keys:
        value = trainer_config.get(key)
        if isinstance(value, float) and value.is_integer():
            trainer_config[key] = int(value)


UNTRAINED_FLAG = "untrained"


def _names_weights_file(config: Any) -> bool:
    """Whether a (nested) model config names a weights file (`weights_path`) the network loads by itself."""
    if hasattr(config, "as_dict"):
        config = config.as_dict()
    if isinstance(config, dict):
        return bool(config.get("weights_path")) or any(_names_weights_file(v) for v in config.values())
    if isinstance(config, list):
        return any(_names_weights_file(v) for v in config)
    return False


def check_evaluates_weights(subcommand: str, config: Any) -> None:
    """BadInputError for validate / test / predict without weights to evaluate: no --ckpt_path and no weights file in
    the network's config would evaluate a freshly initialised network, unless `--untrained true` asks for it."""
    if subcommand == "fit" or config.get("ckpt_path") is not None or config.get(UNTRAINED_FLAG):
        return
    if _names_weights_file(config.get("model")):
        return
    raise BadInputError(
        f"{subcommand} without --ckpt_path would evaluate a freshly initialised network (random weights): give "
        "--ckpt_path (a .ckpt file, a run folder such as runs/<name>, or 'last'), or add --untrained true to evaluate "
        "the untrained network on purpose"
    )


def check_run_folder_writable(version_dir: Path) -> None:
    """BadInputError unless the run's version folder and its checkpoints/ folder (where they exist) can be written:
    found before training, not at the first checkpoint an epoch later (a read-only filesystem included)."""
    for folder in (version_dir, version_dir / "checkpoints"):
        if folder.exists() or folder == version_dir:
            check_writable_folder(folder, "run folder", "; choose another with --trainer.logger.init_args.save_dir")
