"""Faults for tests/test_faults.py, injected into a real `train.py fit` process as callbacks.

--trainer.callbacks+=_faults.KillAt --trainer.callbacks.epoch 2 --trainer.callbacks.batch 3 ...
"""

import json
import os
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
