"""Explicit, symmetric model modes: record every submodule's `training` flag and restore it exactly."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from robustrain.core.validation import check_choice

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


PROBE_BATCHNORM_MODES = ("eval", "train")  # how a monitor's probe runs BatchNorm (see batch_statistics)


@contextmanager
def batch_statistics(model: nn.Module) -> Iterator[nn.Module]:
    """The whole model in eval mode except BatchNorm, which normalises with each batch's own statistics, as in
    training, without updating its running statistics (track_running_stats off inside); everything restored on exit.

    For monitors that probe the network as training sees it (Grabinski et al. do not say which BatchNorm mode their
    aliasing probe used): the running mean, variance and batch count are left exactly as they were.
    """
    with preserved_modes(model):
        model.eval()
        norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
        tracking = [m.track_running_stats for m in norms]
        try:
            for module in norms:
                module.train(True)
                module.track_running_stats = False  # batch statistics, buffers untouched (F.batch_norm gets None)
            yield model
        finally:
            for module, track in zip(norms, tracking, strict=True):
                module.track_running_stats = track


@contextmanager
def probe_mode(model: nn.Module, batchnorm: str = "eval") -> Iterator[nn.Module]:
    """A monitor's probe mode: `eval_mode` ("eval", running statistics) or `batch_statistics` ("train")."""
    check_choice("batchnorm", batchnorm, PROBE_BATCHNORM_MODES)
    with eval_mode(model) if batchnorm == "eval" else batch_statistics(model):
        yield model
