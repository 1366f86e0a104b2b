"""Counting host syncs in training steps: the ops a GPU would wait on, counted on CPU.

`aten._local_scalar_dense` is what `.item()`, `float(t)`, `int(t)` and `if t:` dispatch to: on a GPU each one waits
for every queued kernel. `SyncCounter` counts them (and device-to-host copies, which only a GPU run has) under a
`TorchDispatchMode` from the first hook of a training batch to the last, leaving out the dataset (it runs between
batches) and the optimizer's host-side step counters (calls from torch/optim).
"""

import traceback

import lightning as L
import torch
from torch.utils._python_dispatch import TorchDispatchMode

SCALAR = torch.ops.aten._local_scalar_dense.default


def _caller(stack: list[traceback.FrameSummary]) -> traceback.FrameSummary | None:
    """The innermost frame that asked for the scalar: past this file and torch's own frames, except its optimizers'
    (torch.nn.utils' gradient norm, say, is charged to whoever called it)."""
    for frame in reversed(stack):
        name = frame.filename
        if "_host_syncs.py" in name or ("/torch/" in name and "/torch/optim/" not in name):
            continue
        return frame
    return None


def _from_optimizer_internals(stack: list[traceback.FrameSummary]) -> bool:
    """A host-side step counter of a torch optimizer (its `step` state lives on the CPU by design)."""
    caller = _caller(stack)
    return caller is not None and "/torch/optim/" in caller.filename


class _Count(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.syncs: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is SCALAR:
            stack = traceback.extract_stack(limit=60)
            if not _from_optimizer_internals(stack):
                caller = _caller(stack)
                self.syncs.append(f"{caller.filename.rsplit('/', 2)[-1]}:{caller.lineno}" if caller else "?")
        elif func is torch.ops.aten._to_copy.default and args and getattr(args[0], "is_cuda", False):
            if str(kwargs.get("device", "")).startswith("cpu"):
                self.syncs.append("device-to-host copy")
        return func(*args, **kwargs)


class SyncCounter:
    """Two callbacks, `first` (put first in the callback list) and `last` (put last), bracketing each training batch:
    `per_step[global_step]` lists where the host syncs of that batch came from."""

    def __init__(self) -> None:
        self.per_step: dict[int, list[str]] = {}
        self._mode: _Count | None = None
        counter = self

        class First(L.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
                counter._mode = _Count()
                counter._mode.__enter__()

        class Last(L.Callback):
            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
                mode, counter._mode = counter._mode, None
                if mode is not None:
                    mode.__exit__(None, None, None)
                    counter.per_step[trainer.global_step] = mode.syncs

        self.first, self.last = First(), Last()
