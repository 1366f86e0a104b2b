"""Faults for tests/test_faults.py, injected into a real `train.py fit` process as callbacks.

--trainer.callbacks+=_faults.KillAt --trainer.callbacks.epoch 2 --trainer.callbacks.batch 3 ...
"""

import builtins
import errno
import io
import json
import os
import shutil
import signal
from pathlib import Path

import lightning as L


class KillAt(L.Callback):
    """Sends `signal_name` to its own process at the start of training batch `batch` of epoch `epoch`.

    Batch 0 is the epoch boundary: the previous epoch's checkpoints are written, nothing of this epoch has run.
    """

    def __init__(self, epoch: int, batch: int, signal_name: str = "SIGKILL", group: bool = False) -> None:
        self.epoch, self.batch, self.signal, self.group = epoch, batch, getattr(signal, signal_name), group

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch) and trainer.global_rank == 0:
            if self.group:  # every DDP rank at once, as a scheduler killing the job would
                os.killpg(os.getpgid(0), self.signal)
            os.kill(os.getpid(), self.signal)


class RecordStop(L.Callback):
    """Writes each rank's view of the stop (`rank<r>.json` in `folder`) when fit ends."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_fit_end(self, trainer, pl_module) -> None:
        monitor = next(c for c in trainer.callbacks if type(c).__name__ == "AliasingMonitor")
        record = {
            "should_stop": bool(trainer.should_stop),
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "decisions": [r["should_stop"] for r in monitor.history],
            "values": [r["value"] for r in monitor.history],
        }
        Path(self.folder).mkdir(parents=True, exist_ok=True)
        (Path(self.folder) / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


class _WrappedFile:
    """An open file whose `write` a subclass replaces; everything else, the context manager included, is the file's."""

    def __init__(self, file) -> None:
        self._file = file

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()

    def __getattr__(self, name):
        return getattr(self._file, name)


class _BreakingFile(_WrappedFile):
    """A file open for writing whose first write stops halfway: the process is SIGKILLed, or the write fails with
    ENOSPC, after half of the bytes reached the file."""

    def __init__(self, file, fault: str) -> None:
        super().__init__(file)
        self._fault = fault

    def write(self, data) -> int:
        half = max(len(data) // 2, 1)
        self._file.write(data[:half])
        self._file.flush()
        os.fsync(self._file.fileno())
        if self._fault == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class BreakCheckpointWrite(L.Callback):
    """From the start of epoch `epoch` on, the first write of a checkpoint file whose name contains `name` stops
    halfway: `fault="kill"` SIGKILLs the process mid-write, `fault="full"` fails the write with ENOSPC (a full disk).

    Whoever writes the checkpoint is caught: Lightning's writer (which copies its temp file from $TMPDIR into the
    checkpoint folder when the two are on different filesystems) as well as robustrain's (its temp file beside the
    target). Files are caught by `open` (by name, or by descriptor), and copies are made to go through `write`.
    """

    def __init__(self, epoch: int, fault: str = "kill", name: str = "last") -> None:
        self.epoch, self.fault, self.name = epoch, fault, name

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch and trainer.global_rank == 0:
            self._arm()

    def _arm(self) -> None:
        real_open, fault, name = builtins.open, self.fault, self.name
        shutil._USE_CP_SENDFILE = False  # shutil's copies then write through the file object

        def breaking_open(file, mode="r", *args, **kwargs):
            opened = real_open(file, mode, *args, **kwargs)
            path = Path(os.readlink(f"/proc/self/fd/{file}") if isinstance(file, int) else os.fspath(file))
            writing = any(flag in mode for flag in "wax+")
            if writing and path.parent.name == "checkpoints" and name in path.name:
                builtins.open = real_open  # once
                return _BreakingFile(opened, fault)
            return opened

        builtins.open = breaking_open


class BreakRename(L.Callback):
    """The first rename (os.replace) onto a file whose name contains `name`, after `skip` such renames went through,
    never happens: `fault="kill"` SIGKILLs the process there (the new file is complete, under its temp name),
    `fault="full"` fails it with ENOSPC."""

    def __init__(self, name: str, fault: str = "kill", skip: int = 0) -> None:
        self.name, self.fault, self.skip = name, fault, skip

    def setup(self, trainer, pl_module, stage) -> None:
        if trainer.global_rank != 0:
            return
        real_replace, name, fault, seen = os.replace, self.name, self.fault, [0]

        def breaking_replace(src, dst, *args, **kwargs):
            if name in Path(os.fsdecode(dst)).name and seen[0] < self.skip:
                seen[0] += 1
            elif name in Path(os.fsdecode(dst)).name:
                os.replace = real_replace  # once
                if fault == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(dst))
            return real_replace(src, dst, *args, **kwargs)

        os.replace = breaking_replace


class _FailingFile(_WrappedFile):
    """A file open for writing whose every write fails with `code` (the file stays as opened: empty)."""

    def __init__(self, file, code: int) -> None:
        super().__init__(file)
        self._code = code

    def write(self, data) -> int:
        raise OSError(self._code, os.strerror(self._code), self._file.name)


class FailOpen(L.Callback):
    """Writing a file whose name contains `name` fails with `errno_name` (ENOSPC: a full disk; EROFS: a read-only
    filesystem), for every writer: robustrain's, Lightning's (hparams.yaml) and TensorBoard's (its event file, opened
    and written in a thread of its own). `at="open"` fails the open, `at="write"` the first write after an open that
    worked (the file is left empty, as a disk that fills up leaves it). Armed at setup, before the run writes."""

    def __init__(self, name: str, errno_name: str = "ENOSPC", at: str = "open") -> None:
        self.name, self.errno, self.at = name, getattr(errno, errno_name), at

    def setup(self, trainer, pl_module, stage) -> None:
        if trainer.global_rank != 0:
            return
        real_open, real_os_open, name, code = builtins.open, os.open, self.name, self.errno

        def refuse(path) -> None:
            raise OSError(code, os.strerror(code), os.fsdecode(path))

        def failing_open(file, mode="r", *args, **kwargs):
            if not isinstance(file, int) and name in Path(os.fsdecode(file)).name and any(f in mode for f in "wax+"):
                if self.at == "open":
                    refuse(file)
                return _FailingFile(real_open(file, mode, *args, **kwargs), code)
            return real_open(file, mode, *args, **kwargs)

        def failing_os_open(path, flags, *args, **kwargs):
            if self.at == "open" and name in Path(os.fsdecode(path)).name and flags & (os.O_WRONLY | os.O_RDWR):
                refuse(path)
            return real_os_open(path, flags, *args, **kwargs)

        builtins.open = io.open = failing_open
        os.open = failing_os_open
