"""AtomicCheckpointIO: Lightning's checkpoint writer, with robustrain's atomic, durable write (robustrain.runs.atomic).

Lightning's own writer stages a checkpoint in a temp file under /tmp and moves it into place: when the run folder is
on another filesystem the move is a copy over the final name, so a kill or a full disk during it tears the previous
checkpoint. This one writes beside the final name and renames, so `last.ckpt` is always a whole checkpoint: the
previous one or the new one. The CLI installs it unless the trainer's plugins already name a CheckpointIO.

    trainer = L.Trainer(plugins=[AtomicCheckpointIO()])
"""

import io
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from robustrain.runs.atomic import atomic_write_bytes
from robustrain.runs.checkpoints import is_remote


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose local writes are atomic and durable; remote paths are left to Lightning."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or is_remote(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)  # serialised in memory first: the file only ever sees complete bytes
        atomic_write_bytes(Path(path), buffer.getvalue())
