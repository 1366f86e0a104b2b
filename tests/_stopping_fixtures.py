"""Tiny models, data and callbacks shared by the early-stopping callback tests (and their DDP script)."""

import copy

import lightning as L
import torch
from torch.utils.data import Dataset, TensorDataset

from robustrain.data.image_datamodule import ImageDataModule
from robustrain.models import SmallCNN
from robustrain.training import StandardTraining


class RandomDigits(ImageDataModule):
    """64 random 1x8x8 images in [0, 1] with labels 0..3 (seeded), batches of 16: 4 steps per epoch."""

    num_classes = 4
    image_shape = (1, 8, 8)

    def __init__(self, n: int = 64, batch_size: int = 16) -> None:
        super().__init__(batch_size=batch_size, val_size=0, augment=False)
        self.n = n

    def _build(self) -> tuple[Dataset, Dataset, Dataset]:
        g = torch.Generator().manual_seed(0)
        images = torch.rand(self.n, 1, 8, 8, generator=g)
        labels = torch.randint(0, 4, (self.n,), generator=g)
        train = TensorDataset(images, labels)
        return train, train, train


def tiny_module(lr: float = 1e-6) -> StandardTraining:
    """SmallCNN 8x8 -> 4x4 -> 2x2 with downsampling layers conv1 and conv2; no PGD evaluation."""
    net = SmallCNN(num_classes=4, image_size=8, channels=(4, 8), hidden=16)
    return StandardTraining(net=net, optimizer="sgd", lr=lr, momentum=0.0, lr_schedule="constant", eval_size=0)


def tiny_trainer(tmp_path, callbacks: list, max_epochs: int = 6, **kwargs) -> L.Trainer:
    defaults = dict(
        max_epochs=max_epochs,
        accelerator="cpu",
        devices=1,
        logger=L.pytorch.loggers.TensorBoardLogger(str(tmp_path), name="run"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        inference_mode=False,
        default_root_dir=str(tmp_path),
    )
    return L.Trainer(callbacks=callbacks, **(defaults | kwargs))


class ScaleWeightAt(L.Callback):
    """At the start of `epoch`, multiplies net.<param> by `factor` (a sudden aliasing jump; nan makes it non-finite)."""

    def __init__(self, epoch: int, factor: float, param: str = "conv1.weight") -> None:
        self.epoch, self.factor, self.param = epoch, factor, param

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                pl_module.net.get_parameter(self.param).mul_(self.factor)


class WeightsPerEpoch(L.Callback):
    """Records a CPU copy of the module's state_dict at every epoch end (list it before the stopper)."""

    def __init__(self) -> None:
        self.states: dict[int, dict[str, torch.Tensor]] = {}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.states[trainer.current_epoch] = copy.deepcopy({k: v.cpu() for k, v in pl_module.state_dict().items()})


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key].cpu(), b[key].cpu(), rtol=0, atol=0, equal_nan=True, msg=key)
