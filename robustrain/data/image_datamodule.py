"""ImageDataModule: seeded train / held-out val / test splits and loaders shared by every robustrain dataset."""

from abc import abstractmethod
from collections.abc import Iterator
from typing import Any, Literal

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from robustrain.core.seeding import epoch_seed, global_seed
from robustrain.core.validation import check_int, check_positive_int, check_that
from robustrain.data.injection import InjectedDataset, check_injection, dct_carriers


def probe_set_of(
    datamodule: Any, n: int, seed: int, needed_by: str, instead: str = ""
) -> tuple[torch.Tensor, torch.Tensor]:
    """`datamodule.probe_set(n, seed)`: n fixed training images and their labels, for the callbacks that probe a model.

    Args:
        datamodule: The trainer's datamodule (an ImageDataModule, or None).
        n: Number of probe images.
        seed: Seed choosing them.
        needed_by: Who asks, for the error (e.g. "AliasingMonitor").
        instead: What to do without one, appended to the error.

    Raises:
        ValueError: when the datamodule has no `probe_set`, naming `needed_by` and the datamodule.
    """
    if datamodule is None or not hasattr(datamodule, "probe_set"):
        hint = f"; {instead}" if instead else ""
        raise ValueError(
            f"{needed_by} needs trainer.datamodule.probe_set(n, seed) (robustrain.data.ImageDataModule) for its fixed "
            f"probe images; got datamodule {type(datamodule).__name__}{hint}"
        )
    return datamodule.probe_set(n, seed)


PIN_MEMORY_VALUES = "true, false or null (pinned when the trainer runs on CUDA)"


class EpochShuffleSampler(DistributedSampler):
    """A random order of the dataset that depends only on (seed, epoch), split over `num_replicas` ranks.

    torch's RandomSampler draws its order from the global RNG when the epoch's iterator starts, so the order of an
    epoch depends on everything drawn before it, and a resumed run (whose RNG restarts from the seed) repeats the
    orders of its first epochs. Lightning's DistributedSampler computes its order when the iterator is created,
    which on resume happens before Lightning sets the epoch. Here the sampler is built at the epoch the run is at
    and epoch e's order is the same in every run with the same seed. Being a DistributedSampler (padding and
    splitting over ranks as it does), Lightning keeps it under DDP and calls `set_epoch` every epoch.
    `generator` seeds the loader's worker processes (their augmentation) the same way.
    """

    def __init__(self, dataset: Dataset, seed: int, epoch: int = 0, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.generator = torch.Generator()
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.generator.manual_seed(epoch_seed(self.seed, epoch, self.rank, stream="workers"))

    def __iter__(self) -> Iterator[int]:
        order = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, stream="data"))
        indices = torch.randperm(len(self.dataset), generator=order).tolist()
        indices += indices[: self.total_size - len(indices)]  # DistributedSampler's padding (none on one rank)
        return iter(indices[self.rank : self.total_size : self.num_replicas])


class ImageDataModule(L.LightningDataModule):
    """Base datamodule: images as float tensors in [0, 1] (in [-beta, 1 + beta] with injected features), labels int64.

    Subclasses build three datasets in `_build()`: the training set with augmentation, the same images without
    augmentation, and the test set. The validation split is a seeded held-out subset of the training images (never
    the test set), as Rice et al. select models on 1000 held-out training images.

    With `inject_beta` > 0 every image of class y, in every split and in the probe sets, gets beta * v(y) added after
    its own transform (Ortiz-Jimenez et al. 2023, robustrain.data.injection): a discriminative, non-robust feature
    that makes FGSM training overfit catastrophically on demand. The injected images are not clipped (as in the
    paper's code), so they lie in `input_range` = (-beta, 1 + beta), and the attacks keep their adversarial images
    in that box rather than in [0, 1]: the box stands for "an image this data could hold", and clipping to [0, 1]
    would move every pixel the injection pushed out of [0, 1] back by up to beta whatever the attack does, erasing
    part of the injected feature for free (and, for beta > eps, leaving the eps-ball).

    Args:
        batch_size: Images per training batch (and per evaluation batch unless eval_batch_size is set).
        eval_batch_size: Images per validation / test batch; None = batch_size.
        val_size: Training images held out for validation (model selection); 0 = no validation loop.
        augment: Apply the dataset's standard training augmentation.
        num_workers: DataLoader worker processes. Evaluation loaders keep theirs between epochs (persistent workers);
            the training loader starts them afresh each epoch, seeded from the epoch's sampler, so that a resumed run
            draws the same augmentation.
        pin_memory: Page-locked host memory for the batches, so that their copy to a GPU overlaps compute. None: on
            when the trainer runs on CUDA, off elsewhere (it only costs on a CPU).
        seed: Seed of the held-out split and of the probe sets.
        inject_beta: Amplitude of the injected class feature in [0, 1] pixel units; 0 = none (the data as it is).
        inject_carrier: The feature's pattern: "dct" (the sign of a low-frequency 2-D DCT basis image per class,
            Ortiz-Jimenez et al.'s carriers, sized to the image).
    """

    num_classes: int
    image_shape: tuple[int, int, int]

    def __init__(
        self,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        val_size: int = 1000,
        augment: bool = True,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        seed: int = 0,
        inject_beta: float = 0.0,
        inject_carrier: Literal["dct"] = "dct",
    ) -> None:
        super().__init__()
        check_injection(inject_beta, inject_carrier)
        check_positive_int("batch_size", batch_size)
        if eval_batch_size is not None:
            check_positive_int("eval_batch_size", eval_batch_size)
        check_int("val_size", val_size, minimum=0)
        check_int("num_workers", num_workers, minimum=0)
        check_that(pin_memory is None or isinstance(pin_memory, bool), "pin_memory", pin_memory, PIN_MEMORY_VALUES)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.val_size = val_size
        self.augment = augment
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.seed = seed
        self.inject_beta = inject_beta
        self.inject_carrier = inject_carrier
        self.train_set: Dataset | None = None
        self.train_eval_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.shuffle_seed: int | None = None  # saved in checkpoints (state_dict), so a resumed run keeps its orders

    @abstractmethod
    def _build(self) -> tuple[Dataset, Dataset, Dataset]:
        """Returns (train with augmentation, train without augmentation, test)."""

    def _check_val_size(self, n_train: int) -> None:
        if self.val_size >= n_train:
            raise ValueError(
                f"val_size={self.val_size} leaves no training images: the training set has {n_train}; "
                f"use 0 <= val_size < {n_train}"
            )

    @property
    def input_range(self) -> tuple[float, float]:
        """(lowest, highest) pixel value the images can take: (0, 1), or (-beta, 1 + beta) with injected features.
        The attacks clamp their adversarial images to it (RobustClassifier.input_range)."""
        return (0.0 - self.inject_beta, 1.0 + self.inject_beta)  # (0.0, 1.0) exactly without injection

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train_aug, train_plain, test = self._build()
        if self.inject_beta:  # the same carriers in every split, added after each split's own transform
            carriers = dct_carriers(self.num_classes, *self.image_shape[-2:])
            train_aug, train_plain, test = (
                InjectedDataset(dataset, carriers, self.inject_beta) for dataset in (train_aug, train_plain, test)
            )
        n = len(train_plain)
        self._check_val_size(n)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).tolist()
        val_idx, train_idx = order[: self.val_size], order[self.val_size :]
        self.train_set = Subset(train_aug, train_idx)
        self.train_eval_set = Subset(train_plain, train_idx)
        self.val_set = Subset(train_plain, val_idx)
        self.test_set = test

    def probe_set(self, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """A fixed, seeded set of n un-augmented training images and labels (the aliasing paper's 100 probes)."""
        self.setup()
        total = len(self.train_eval_set)
        check_int("n", n, 1, total, note="(probe images: the training images available)")
        idx = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n].tolist()
        images, labels = zip(*(self.train_eval_set[i] for i in idx))
        return torch.stack(images), torch.as_tensor(labels, dtype=torch.int64)

    def _pinned(self) -> bool:
        """`pin_memory` as given, None meaning: when the trainer's device is a CUDA GPU."""
        if self.pin_memory is not None:
            return self.pin_memory
        trainer = getattr(self, "trainer", None)
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    def _loader(self, dataset: Dataset, batch_size: int, **kwargs) -> DataLoader:
        kwargs.setdefault("persistent_workers", self.num_workers > 0)
        kwargs.setdefault("pin_memory", self._pinned())
        return DataLoader(dataset, batch_size=batch_size, num_workers=self.num_workers, drop_last=False, **kwargs)

    def train_dataloader(self) -> DataLoader:
        if self.shuffle_seed is None:
            self.shuffle_seed = global_seed()
        trainer = getattr(self, "trainer", None)
        where = (trainer.current_epoch, trainer.world_size, trainer.global_rank) if trainer is not None else (0, 1, 0)
        sampler = EpochShuffleSampler(self.train_set, self.shuffle_seed, *where)  # the epoch is restored on resume
        # workers restart every epoch, seeded from the sampler's generator: persistent ones would carry their RNG over
        return self._loader(
            self.train_set, self.batch_size, sampler=sampler, generator=sampler.generator, persistent_workers=False
        )

    def state_dict(self) -> dict[str, Any]:
        return {"shuffle_seed": self.shuffle_seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.shuffle_seed = state_dict.get("shuffle_seed")

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_set, self.eval_batch_size) if self.val_size else []

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
