"""Explicit, symmetric model modes: record every submodule's `training` flag and restore it exactly."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from robustrain.validation import check_choice

BatchNormMode = Literal["train", "eval", "keep"]
BATCHNORM_MODES = ("train", "eval", "keep")
ATTACK_BATCHNORM_MODES = ("train", "eval")  # a training attack picks one; "keep" is for callers nesting modes


@contextmanager
def preserved_modes(model: nn.Module) -> Iterator[nn.Module]:
    """Restores every submodule's own train/eval flag on exit, whatever happened inside (exceptions included)."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        yield model
    finally:
        for module, training in flags:
            module.training = training


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """The whole model in eval mode inside, every submodule's own flag restored on exit."""
    with preserved_modes(model):
        model.eval()
        yield model


@contextmanager
def batchnorm_mode(model: nn.Module, mode: BatchNormMode) -> Iterator[nn.Module]:
    """BatchNorm layers in train ("train": batch statistics, running stats updated) or eval mode, or kept as they are.

    Only BatchNorm layers change (found by type, not by class name); everything is restored on exit.
    """
    check_choice("batchnorm mode", mode, BATCHNORM_MODES)
    with preserved_modes(model):
        if mode != "keep":
            for module in model.modules():
                if isinstance(module, _BatchNorm):
                    module.train(mode == "train")
        yield model
