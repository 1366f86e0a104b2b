"""Checks of a `--ckpt_path` checkpoint against the command: is it a Lightning checkpoint, does it fit the built
network and the data, and is anything left to train."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from robustrain.core.errors import BadInputError
from robustrain.core.train_eval_modes import eval_mode
from robustrain.runs import resume
from robustrain.training import network_of


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
    stops: list[tuple[str, int, str | None]] = field(default_factory=list)  # robustrain.runs.checkpoints.recorded_stops
    missing_stop_model: str | None = None  # why a recorded stop has no handed-back model, or None
    requested_seed: Any = None


def epochs_done(checkpoint: dict) -> int | None:
    try:
        return int(checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError, ValueError):
        return None


def check_something_left(loaded: LoadedCheckpoint, trainer: Any) -> None:
    """BadInputError when resuming the checkpoint would train nothing: its run stopped early or finished."""
    if loaded.missing_stop_model is not None:
        raise BadInputError(f"nothing can be resumed: {loaded.missing_stop_model}; start a new run")
    if loaded.stops:
        key, epoch, _ = loaded.stops[0]
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


def check_lightning_checkpoint(path: Path, checkpoint: dict, subcommand: str) -> None:
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


def check_shapes(path: Path, expected: dict[str, torch.Tensor], shapes: dict[str, tuple[int, ...]]) -> None:
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


def check_network_takes_the_data(model: Any, datamodule: Any) -> None:
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


def check_same_network(path: Path, ckpt_net: Any, model_config: Any) -> None:
    """BadInputError when the config names a network class other than the one the checkpoint's weights belong to."""
    init_args = model_config.get("init_args") if hasattr(model_config, "get") else None
    wanted, held = _class_path(init_args.get("net")) if init_args else None, _class_path(ckpt_net)
    if wanted and held and wanted.rsplit(".", 1)[-1] != held.rsplit(".", 1)[-1]:
        raise BadInputError(
            f"{path} holds a {held} network but the config asks for model.init_args.net={wanted}: pick the config "
            "that matches the checkpoint, or drop the config's net (the checkpoint's is used)"
        )
