"""PGDEarlyStopping: Wong, Rice & Kolter (2020)'s check against catastrophic overfitting in FGSM training.

Once per epoch, PGD (default 5 steps of 2/255, 1 restart, eps 8/255) on the epoch's first training batch (or a fixed
probe set); stop when the robust accuracy fell by more than `max_drop` (0.2) against the previous check
(robustrain.stopping.pgd_es_rule) and hand back the previous epoch's weights (locuslab/fast_adversarial,
train_fgsm.py `--early-stop`).

Differences from fast_adversarial, on purpose: the network is attacked in eval mode (running BatchNorm statistics, as
robustrain's PGD evaluation; theirs stays in train mode), and the attack's random start draws from a generator seeded
per epoch inside `torch.random.fork_rng`, so the check neither depends on nor changes the training's random stream:
a run with the check trains exactly like one without it until it stops.
"""

import math
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from robustrain.attacks import UNIT_BOX, check_linf_params, pgd, step_warning
from robustrain.callbacks.rollback_early_stopping import RollbackEarlyStopping
from robustrain.core.train_eval_modes import eval_mode
from robustrain.core.validation import check_choice, check_file_name, check_positive_int
from robustrain.data import probe_set_of
from robustrain.stopping import Decision, decide, pgd_es_rule
from robustrain.training import network_of

SOURCES = ("first_batch", "probe")


class PGDEarlyStopping(RollbackEarlyStopping):
    """The PGD-accuracy early stop of Wong et al. 2020, with robustrain's history, logging and weight hand-back.

    Logged: `pgd_es/acc`, `pgd_es/value` (the same), `pgd_es/median` (the previous check's accuracy) and
    `pgd_es/limit` (previous - max_drop). Files: `pgd_es_history.csv`, `pgd_es_curves.png`, `pgd_es_stop.ckpt`.

    Args:
        eps: L-inf radius in [0, 1] pixel units (8/255 on CIFAR-10; 0.3 on MNIST). None: the module's `eval_eps`
            (the threat model of its PGD evaluation), read at setup.
        alpha: PGD step size (2/255 on CIFAR-10; e.g. 0.1 on MNIST). None: the module's `eval_alpha`, read at setup.
        steps: PGD steps (5).
        restarts: Random restarts (1); each example keeps its worst restart.
        max_drop: Stop when the accuracy fell by more than this since the previous check (0.2).
        source: "first_batch" (the epoch's first training batch, as fast_adversarial) or "probe" (a fixed set of
            `probe_size` training images from `trainer.datamodule.probe_set`, the same at every check).
        probe_size: Images of the fixed probe set.
        probe_seed: Seed choosing the probe images.
        seed: Seed of the attack's random start (combined with the epoch).
        every_n_epochs: Check at the end of every n-th epoch.
        name: Prefix of the logged values and stem of the files; give a second check another name (e.g.
            "pgd_es_probe") to record both sources side by side.
        monitor_only, restore, save_checkpoint, verbose: See RollbackEarlyStopping.
    """

    name = "pgd_es"

    def __init__(
        self,
        eps: float | None = None,
        alpha: float | None = None,
        steps: int = 5,
        restarts: int = 1,
        max_drop: float = 0.2,
        source: Literal["first_batch", "probe"] = "first_batch",
        probe_size: int = 128,
        probe_seed: int = 0,
        seed: int = 0,
        every_n_epochs: int = 1,
        name: str = "pgd_es",
        monitor_only: bool = False,
        restore: bool = True,
        save_checkpoint: bool = True,
        verbose: bool = False,
    ) -> None:
        super().__init__(monitor_only=monitor_only, restore=restore, save_checkpoint=save_checkpoint, verbose=verbose)
        check_linf_params(0.0 if eps is None else eps, alpha, steps, restarts)  # None: checked at setup
        check_file_name("name", name)
        self.name = name
        self.rule = pgd_es_rule(max_drop)  # raises naming a bad max_drop
        check_choice("source", source, SOURCES)
        check_positive_int("probe_size", probe_size)
        check_positive_int("every_n_epochs", every_n_epochs)
        self.eps, self.alpha, self.steps, self.restarts = eps, alpha, steps, restarts
        self.max_drop = max_drop
        self.source = source
        self.probe_size, self.probe_seed, self.seed = probe_size, probe_seed, seed
        self.every_n_epochs = every_n_epochs
        self._images: torch.Tensor | None = None  # this rank's images to attack at the next check
        self._labels: torch.Tensor | None = None
        self._warned = False

    def setup(self, trainer: "L.Trainer", pl_module: "L.LightningModule", stage: str) -> None:
        self._take_eval_settings(pl_module)
        if stage != "fit" or self.source != "probe":
            return
        images, labels = probe_set_of(
            trainer.datamodule,
            self.probe_size,
            self.probe_seed,
            "PGDEarlyStopping(source='probe')",
            "use source='first_batch'",
        )
        rank, world = trainer.global_rank, trainer.world_size
        self._images, self._labels = images[rank::world], labels[rank::world]  # this rank's share

    def _take_eval_settings(self, pl_module: "L.LightningModule") -> None:
        """eps / alpha left None take the module's evaluation settings (`eval_eps`, `hparams.eval_alpha`)."""
        module_values = {"eps": getattr(pl_module, "eval_eps", None), "alpha": pl_module.hparams.get("eval_alpha")}
        for name, value in module_values.items():
            if getattr(self, name) is not None:
                continue
            if value is None:
                raise ValueError(
                    f"PGDEarlyStopping({name}=None) takes the module's eval_{name}, but {type(pl_module).__name__} "
                    f"has none: give {name} explicitly"
                )
            setattr(self, name, value)
        check_linf_params(self.eps, self.alpha)
        if (warning := step_warning(type(self).__name__, self.eps, self.alpha)) and not self._warned:
            self._warned = True  # setup runs once per stage
            rank_zero_warn(warning)

    def on_train_batch_start(
        self, trainer: "L.Trainer", pl_module: "L.LightningModule", batch: Any, batch_idx: int
    ) -> None:
        if self.source == "first_batch" and batch_idx == 0:
            images, labels = batch[0], batch[1]
            self._images, self._labels = images.detach().clone(), labels.detach().clone()

    def on_train_epoch_end(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> None:
        if self._should_skip(trainer) or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        values = {"acc": self._robust_accuracy(trainer, pl_module)}
        if not self._run_check(trainer, pl_module, self.source, values, decide=True):
            self._keep_weights(trainer, pl_module)

    def _robust_accuracy(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> float:
        """PGD accuracy over the images of all ranks (network in eval mode, modes restored, RNG stream untouched)."""
        net = network_of(pl_module)
        device = pl_module.device
        counts = torch.zeros(2, dtype=torch.float64, device=device)  # (correct, total)
        if self._images is not None and len(self._images):
            images, labels = self._images.to(device), self._labels.to(device)
            devices = [device] if device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices), eval_mode(net):
                torch.manual_seed(self.seed + 1000003 * trainer.current_epoch + trainer.global_rank)
                box = getattr(pl_module, "input_range", UNIT_BOX)  # the data's range (wider with injected features)
                adv = pgd(net, images, labels, self.eps, self.alpha, self.steps, restarts=self.restarts, box=box)
                with torch.no_grad():
                    counts[0] = (net(adv).argmax(1) == labels).sum()
            counts[1] = len(labels)
        # (correct, total) in one float64 all-reduce per check, not a torchmetrics SumMetric: a callback holds
        # no nn.Module to carry metric states to the device, and two exact counts need no metric object.
        counts = trainer.strategy.reduce(counts, reduce_op="sum")
        return (counts[0] / counts[1]).item() if counts[1] > 0 else math.nan

    def _evaluate(self, record: dict[str, Any], previous: list[dict]) -> Decision:
        record["value"] = record["acc"]
        values = [r["value"] for r in previous]
        return decide(values, [False] * len(values), record["value"], False, self.rule, name=f"{self.name}/acc")

    def _plot_series(self) -> list[str]:
        return ["value", "limit"]

    def _settings(self) -> dict[str, Any]:
        return {
            "max_drop": self.max_drop,
            "eps": self.eps,
            "alpha": self.alpha,
            "steps": self.steps,
            "restarts": self.restarts,
            "source": self.source,
            **super()._settings(),
        }
