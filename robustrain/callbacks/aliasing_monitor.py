"""AliasingMonitor: measure aliasing during training, and stop on its jump (Grabinski et al. 2022, Algorithm 1).

The paper proposes the jump as a sign of catastrophic overfitting; in robustrain's CO lab (docs/co_lab.md) the
paper's rule fired before none of the collapses it saw, on SmallCNN or on PreActResNet18's `layer2`.

Every `every_n_epochs` epochs the aliasing measure of the downsampling layers is computed on a fixed, seeded probe
set of training images (the paper: 100), the network in eval mode under no_grad (every submodule's mode restored),
the forward pass stopped after the last monitored layer. Optionally it is also computed "on the fly" on the clean
training batch every `every_n_train_steps` steps. Algorithm 1 (robustrain.stopping.rules, `Rule()`) decides on the
probe series (or the batch series): stop when the monitored value exceeds the median of the preceding `window` values
by more than `threshold`, after a warm-up. On a stop the weights of the last check that said "go on" are handed back
(see RollbackEarlyStopping).

Under DDP the probe is split across ranks (rank r takes images r, r + world_size, ...) and the per-layer sums and
counts are all-reduced, so every rank sees the value of the whole probe set and takes the same decision.
"""

from typing import Any, Literal

import lightning as L
import torch

from robustrain.aliasing.layers import find_downsampling_layers, group_layers, probe_aliasing
from robustrain.callbacks.probe_pgd import probe_share
from robustrain.callbacks.rollback_early_stopping import RollbackEarlyStopping
from robustrain.core.train_eval_modes import PROBE_BATCHNORM_MODES
from robustrain.core.validation import check_choice, check_positive_int, check_that
from robustrain.stopping.rules import ALIASING_RULE
from robustrain.training import network_of

MEASURES = ("absolute", "relative")
MEAN = "mean"
RELATIVE = "relative/"  # prefix of the relative measure's series in the history and the logged tags


class AliasingMonitor(RollbackEarlyStopping):
    """Aliasing measurement per layer / group on a fixed probe set, with the paper's median-filter early stop.

    Logged (TensorBoard): `aliasing/<layer>`, `aliasing/<group>`, `aliasing/mean`, and for the monitored series
    `aliasing/value`, `aliasing/median` (median of the preceding window), `aliasing/limit` (the value above which it
    stops); on-the-fly values under `aliasing/batch/...`. Files in the log dir: `aliasing_history.csv` (every check,
    replayable with `python -m robustrain.stopping.replay`), `aliasing_curves.png`, and on a stop
    `aliasing_stop.ckpt`.

    Args:
        layers: Module paths (inside `pl_module.net`, or the module itself if it has no `net`) of the downsampling
            layers to measure; None = all of them (robustrain.aliasing.find_downsampling_layers).
        groups: Module-path prefixes whose layers are averaged, e.g. ["layer2"] = mean of layer2.0.conv1 and
            layer2.0.shortcut in PreActResNet18 (the paper's per-block value).
        monitor: The series Algorithm 1 watches: a layer, a group, or "mean" (mean over the measured layers).
        measure: "absolute" (the paper's L1 distance, robustrain.aliasing.aliasing_measure) or "relative" (that
            distance as a fraction of the output's spectral L1, relative_aliasing_measure; scale-free). Both are
            always recorded (`<series>` and `relative/<series>`); this one is `value`, which decides.
        probe_size: Number of probe images (the paper: 100), from
            `trainer.datamodule.probe_set(probe_size, probe_seed)`.
        probe_seed: Seed choosing the probe images.
        probe_batch_size: Probe images per forward pass.
        probe_batchnorm: How the probe runs BatchNorm layers, which the paper does not say: "eval" (running
            statistics, the network as it is evaluated) or "train" (each probe batch of `probe_batch_size` images
            normalised with its own statistics, as training sees it; running statistics untouched). Under DDP each
            rank's share of a batch gets its own statistics.
        **kwargs: The stop's arguments (RollbackEarlyStopping): the rule, the schedule, the hand-back, `name`
            (e.g. "aliasing_bn_train" for a second monitor beside this one), `monitor_only`. Its default rule is the
            paper's Algorithm 1 (robustrain.stopping.ALIASING_RULE): a relative rise of 0.33 over the median of the
            last 3 checks, after a 5-epoch warm-up and while the lr no longer rises (see docs/aliasing.md). On the
            batch checks (`every_n_train_steps`, `batch_probe_size` images of the clean training batch): the check
            costs about one stride-1 forward of the monitored layers per image, which on a small network is a large
            part of a training step (every step of SmallCNN at batch 100: about half an FGSM step); a few images per
            batch keep it to a few percent.
    """

    name = "aliasing"
    default_rule = ALIASING_RULE
    epoch_kind = "probe"
    batch_signal = True
    batch_images = True

    def __init__(
        self,
        layers: list[str] | None = None,
        groups: list[str] | None = None,
        monitor: str = MEAN,
        measure: Literal["absolute", "relative"] = "absolute",
        probe_size: int = 100,
        probe_seed: int = 0,
        probe_batch_size: int = 100,
        probe_batchnorm: Literal["eval", "train"] = "eval",
        **kwargs: Any,
    ) -> None:
        check_choice("measure", measure, MEASURES)
        check_positive_int("probe_size", probe_size)
        check_positive_int("probe_batch_size", probe_batch_size)
        check_choice("probe_batchnorm", probe_batchnorm, PROBE_BATCHNORM_MODES)
        if layers is not None:
            check_that(
                bool(layers), "layers", layers, "None (all downsampling layers) or a non-empty list of module paths"
            )
        super().__init__(**kwargs)
        self.layers = list(layers) if layers is not None else None
        self.groups = list(groups or [])
        self.monitor = monitor
        self.measure = measure
        self.probe_size = probe_size
        self.probe_seed = probe_seed
        self.probe_batch_size = probe_batch_size
        self.probe_batchnorm = probe_batchnorm
        self._layer_names: list[str] = []
        self._images: torch.Tensor | None = None  # this rank's share of the probe images

    # --- setup ----------------------------------------------------------------------------------------------------
    def setup(self, trainer: "L.Trainer", pl_module: "L.LightningModule", stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit":
            return
        found = list(find_downsampling_layers(network_of(pl_module)))
        names = found if self.layers is None else self.layers
        unknown = [name for name in names if name not in found]
        check_that(
            not unknown and bool(names), "layers", self.layers, f"a non-empty subset of the downsampling layers {found}"
        )
        self._layer_names = names
        group_layers(dict.fromkeys(names, 0.0), self.groups)  # raises naming a group that matches no layer
        check_choice("monitor", self.monitor, [*names, *self.groups, MEAN])
        if self.every_n_epochs:
            self._images, _ = probe_share(trainer, self.probe_size, self.probe_seed, "AliasingMonitor")

    # --- measurement ----------------------------------------------------------------------------------------------
    def measure_epoch(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> dict[str, float]:
        return self._measure(trainer, pl_module, self._images)

    def measure_batch(self, trainer: "L.Trainer", pl_module: "L.LightningModule", batch: Any) -> dict[str, float]:
        return self._measure(trainer, pl_module, batch[0])

    def _measure(self, trainer: "L.Trainer", pl_module: "L.LightningModule", images: torch.Tensor) -> dict[str, float]:
        """Per-layer, per-group and mean aliasing (absolute, and relative under `relative/`) over the images of all
        ranks (eval mode, no grad, modes restored)."""
        net = network_of(pl_module)
        device = pl_module.device
        n = len(self._layer_names)
        sums = torch.zeros(2 * n + 1, dtype=torch.float64, device=device)
        if len(images):
            recorder = probe_aliasing(
                net, images.to(device), self._layer_names, self.probe_batch_size, self.probe_batchnorm
            )
            sums[:n] = torch.stack([recorder.sums[name] for name in self._layer_names])
            sums[n:-1] = torch.stack([recorder.relative_sums[name] for name in self._layer_names])
            sums[-1] = len(images)
        # (2L + 1,) per-layer sums over this rank's images and the image count -> sums over all ranks
        sums = trainer.strategy.reduce(sums, reduce_op="sum")
        means = (sums[:-1] / sums[-1]).tolist()
        values: dict[str, float] = {}
        for prefix, layer_means in (("", means[:n]), (RELATIVE, means[n:])):
            layer_values = dict(zip(self._layer_names, layer_means))
            series = dict(layer_values)
            series.update(group_layers(layer_values, self.groups))
            series[MEAN] = sum(layer_values.values()) / len(layer_values)
            values.update({prefix + k: v for k, v in series.items()})
        return values

    def _setting(self, name: str) -> Any:
        if name == "layers":  # the measured layers as one string, as checkpoints have always recorded them
            return ",".join(self._layer_names or self.layers or [])
        return super()._setting(name)

    @property
    def series(self) -> str:
        """The history column that decides: the monitored layer/group/mean of the chosen measure."""
        return (RELATIVE if self.measure == "relative" else "") + self.monitor

    def plot_series(self) -> list[str]:
        prefix = RELATIVE if self.measure == "relative" else ""
        layers = [*self._layer_names, *[g for g in self.groups if g not in self._layer_names]]
        return [*(prefix + name for name in layers), "value", "median", "limit"]
