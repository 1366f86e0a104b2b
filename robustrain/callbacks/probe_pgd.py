"""PGD accuracy on a fixed set of training images, as the stops measure it: PGDEarlyStopping's check and the
"best_probe" hand-back's score.

The network is attacked in eval mode (running BatchNorm statistics, as robustrain's PGD evaluation; every mode
restored), and the attack's random start draws from a generator seeded by (seed, epoch, rank) inside
`torch.random.fork_rng`, so a measurement neither depends on nor changes the training's random stream. Under DDP each
rank attacks its share of the images and the (correct, total) counts are all-reduced, so every rank reads the
accuracy of the whole set.
"""

import math
from dataclasses import dataclass

import lightning as L
import torch

from robustrain.attacks import UNIT_BOX, check_linf_params, pgd
from robustrain.core.train_eval_modes import eval_mode
from robustrain.data import probe_set_of
from robustrain.training import network_of

SEED_STRIDE = 1000003  # the seed of epoch e is seed + SEED_STRIDE * e + rank


def probe_share(trainer: "L.Trainer", size: int, seed: int, needed_by: str, instead: str = "") -> tuple:
    """This rank's share (images r, r + world_size, ...) of `size` fixed training images chosen by `seed`."""
    images, labels = probe_set_of(trainer.datamodule, size, seed, needed_by, instead)
    rank, world = trainer.global_rank, trainer.world_size
    return images[rank::world], labels[rank::world]


def module_eval_setting(pl_module: "L.LightningModule", name: str, who: str, way_out: str) -> float:
    """The module's `eval_<name>` (`eval_eps`: its threat model; `eval_alpha`: its PGD step), for a callback argument
    left None; raises naming `who` and `way_out` when the module has none."""
    value = getattr(pl_module, "eval_eps", None) if name == "eps" else pl_module.hparams.get(f"eval_{name}")
    if value is None:
        raise ValueError(f"{who} takes the module's eval_{name}, but {type(pl_module).__name__} has none: {way_out}")
    return value


def pgd_accuracy(
    trainer: "L.Trainer",
    pl_module: "L.LightningModule",
    images: torch.Tensor | None,
    labels: torch.Tensor | None,
    eps: float,
    alpha: float,
    steps: int,
    restarts: int,
    seed: int,
) -> float:
    """PGD accuracy over the images of all ranks (this rank's share given), nan when there is none."""
    net = network_of(pl_module)
    device = pl_module.device
    counts = torch.zeros(2, dtype=torch.float64, device=device)  # (correct, total)
    if images is not None and len(images):
        images, labels = images.to(device), labels.to(device)
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), eval_mode(net):
            torch.manual_seed(seed + SEED_STRIDE * trainer.current_epoch + trainer.global_rank)
            box = getattr(pl_module, "input_range", UNIT_BOX)  # the data's range (wider with injected features)
            adv = pgd(net, images, labels, eps, alpha, steps, restarts=restarts, box=box)
            with torch.no_grad():
                counts[0] = (net(adv).argmax(1) == labels).sum()
        counts[1] = len(labels)
    # (correct, total) in one float64 all-reduce per check, not a torchmetrics SumMetric: a callback holds no
    # nn.Module to carry metric states to the device, and two exact counts need no metric object.
    counts = trainer.strategy.reduce(counts, reduce_op="sum")
    return (counts[0] / counts[1]).item() if counts[1] > 0 else math.nan


@dataclass
class ProbePGD:
    """The "best_probe" hand-back's score: PGD-`steps` at step eps / 4 (1 restart) on `size` fixed training images.

    eps is the module's `eval_eps` (its threat model), read at setup. These are the settings the CO lab's hand-back
    study scored (docs/co_lab.md, "Hand-back").
    """

    size: int = 128
    seed: int = 0
    steps: int = 5
    images: torch.Tensor | None = None  # this rank's share
    labels: torch.Tensor | None = None
    eps: float | None = None

    def setup(self, trainer: "L.Trainer", pl_module: "L.LightningModule", who: str) -> None:
        way_out = "use hand_back='last_check' or 'best_val'"
        eps = module_eval_setting(pl_module, "eps", f"{who}(hand_back='best_probe')", way_out)
        check_linf_params(eps, eps / 4, self.steps)
        self.eps = eps
        self.images, self.labels = probe_share(trainer, self.size, self.seed, f"{who}(hand_back='best_probe')")

    def score(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> float:
        return pgd_accuracy(
            trainer, pl_module, self.images, self.labels, self.eps, self.eps / 4, self.steps, 1, self.seed
        )
