"""PGDEarlyStopping: Wong, Rice & Kolter (2020)'s check against catastrophic overfitting in FGSM training.

Once per epoch, PGD (default 5 steps of 2/255, 1 restart, eps 8/255) on the epoch's first training batch (or a fixed
probe set); stop when the robust accuracy fell by more than `threshold` (0.2) against the previous check
(robustrain.stopping.pgd_es_rule) and hand back the previous epoch's weights (locuslab/fast_adversarial,
train_fgsm.py `--early-stop`).

Differences from fast_adversarial, on purpose: the network is attacked in eval mode (running BatchNorm statistics, as
robustrain's PGD evaluation; theirs stays in train mode), and the attack's random start draws from a generator seeded
per epoch inside `torch.random.fork_rng`, so the check neither depends on nor changes the training's random stream:
a run with the check trains exactly like one without it until it stops (robustrain.callbacks.probe_pgd).
"""

import math
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from robustrain.attacks import check_linf_params, step_warning
from robustrain.callbacks.probe_pgd import ProbePGD, module_eval_setting, pgd_accuracy, probe_share
from robustrain.callbacks.rollback_early_stopping import RollbackEarlyStopping
from robustrain.core.validation import check_choice, check_positive_int
from robustrain.stopping import pgd_es_rule

SOURCES = ("first_batch", "probe")


class PGDEarlyStopping(RollbackEarlyStopping):
    """The PGD-accuracy early stop of Wong et al. 2020, with robustrain's history, logging and weight hand-back.

    Logged: `pgd_es/acc`, `pgd_es/value` (the same), `pgd_es/median` (the previous check's accuracy) and
    `pgd_es/limit` (previous - threshold). Files: `pgd_es_history.csv`, `pgd_es_curves.png`, `pgd_es_stop.ckpt`.

    Args:
        eps: L-inf radius in [0, 1] pixel units (8/255 on CIFAR-10; 0.3 on MNIST). None: the module's `eval_eps`
            (the threat model of its PGD evaluation), read at setup.
        alpha: PGD step size (2/255 on CIFAR-10; e.g. 0.1 on MNIST). None: the module's `eval_alpha`, read at setup.
        steps: PGD steps (5).
        restarts: Random restarts (1); each example keeps its worst restart.
        source: "first_batch" (the epoch's first training batch, as fast_adversarial) or "probe" (a fixed set of
            `probe_size` training images from `trainer.datamodule.probe_set`, the same at every check).
        probe_size: Images of the fixed probe set.
        probe_seed: Seed choosing the probe images.
        seed: Seed of the attack's random start (combined with the epoch).
        max_drop: The rule's threshold under its former name (kept so that older configs run); use `threshold`.
        **kwargs: The stop's arguments (RollbackEarlyStopping). Its default rule is Wong et al.'s: stop when the
            accuracy fell by more than 0.2 (absolute) since the previous check (robustrain.stopping.pgd_es_rule).
            With source="probe" at PGD-5, step eps / 4, 128 images, probe and attack seed 0, hand_back="best_probe"
            scores the snapshots with this check's own accuracy instead of measuring it twice.
    """

    name = "pgd_es"
    default_rule = pgd_es_rule(0.2)
    series = "acc"

    def __init__(
        self,
        eps: float | None = None,
        alpha: float | None = None,
        steps: int = 5,
        restarts: int = 1,
        source: Literal["first_batch", "probe"] = "first_batch",
        probe_size: int = 128,
        probe_seed: int = 0,
        seed: int = 0,
        max_drop: float | None = None,
        **kwargs: Any,
    ) -> None:
        check_linf_params(0.0 if eps is None else eps, alpha, steps, restarts)  # None: checked at setup
        check_choice("source", source, SOURCES)
        check_positive_int("probe_size", probe_size)
        if max_drop is not None:
            pgd_es_rule(max_drop)  # raises naming a bad max_drop
            if kwargs.get("threshold") not in (None, max_drop):
                raise ValueError(f"max_drop={max_drop} and threshold={kwargs['threshold']}: give threshold only")
            kwargs["threshold"] = max_drop
        self.source = source  # the history's kind of the checks (epoch_kind), read by the base's constructor
        super().__init__(**kwargs)
        pgd_es_rule(self.rule.threshold)  # a fall in accuracy: at most 1
        self.eps, self.alpha, self.steps, self.restarts = eps, alpha, steps, restarts
        self.probe_size, self.probe_seed, self.seed = probe_size, probe_seed, seed
        self._images: torch.Tensor | None = None  # this rank's images to attack at the next check
        self._labels: torch.Tensor | None = None
        self._warned = False

    @property
    def epoch_kind(self) -> str:
        return self.source

    def _setting(self, name: str) -> Any:
        if name == "max_drop":  # the threshold, under the name older checkpoints recorded it
            return self.rule.threshold
        return super()._setting(name)

    def setup(self, trainer: "L.Trainer", pl_module: "L.LightningModule", stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._take_eval_settings(pl_module)
        if stage == "fit" and self.source == "probe":
            who, instead = "PGDEarlyStopping(source='probe')", "use source='first_batch'"
            self._images, self._labels = probe_share(trainer, self.probe_size, self.probe_seed, who, instead)

    def _take_eval_settings(self, pl_module: "L.LightningModule") -> None:
        """eps / alpha left None take the module's evaluation settings (`eval_eps`, `hparams.eval_alpha`)."""
        for name in ("eps", "alpha"):
            if getattr(self, name) is None:
                way_out = f"give {name} explicitly"
                setattr(self, name, module_eval_setting(pl_module, name, f"PGDEarlyStopping({name}=None)", way_out))
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

    def measure_epoch(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> dict[str, float]:
        args = (self.eps, self.alpha, self.steps, self.restarts, self.seed)
        return {"acc": pgd_accuracy(trainer, pl_module, self._images, self._labels, *args)}

    def _probe_score(self, record: dict[str, Any]) -> float | None:
        probe = ProbePGD()  # its settings (the module's eps is read at setup)
        same = (self.source, self.probe_size, self.probe_seed, self.seed) == ("probe", probe.size, probe.seed, 0)
        same = same and (self.steps, self.restarts) == (probe.steps, 1) and math.isclose(self.alpha, self.eps / 4)
        same = same and self._probe is not None and math.isclose(self.eps, self._probe.eps)  # the module's eval_eps
        return record["acc"] if same else None

    def plot_series(self) -> list[str]:
        return ["value", "limit"]
