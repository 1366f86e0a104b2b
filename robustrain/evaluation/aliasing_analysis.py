"""AliasingAnalysis: a test-time callback reporting a trained model's aliasing and Ribeiro & Schön's spectral
categories.

Thin layers: the probe-set measure comes from `robustrain.aliasing.measure_model_aliasing` (on_test_start), the
categories from `robustrain.aliasing.layer_categories` per test batch; `_finish` reduces the sums across ranks,
logs on every rank and writes the report and figures once (rank zero).

Report (`aliasing.json` in the run's log dir):
    schema: "robustrain.aliasing/1"; checkpoint: trainer.ckpt_path or null.
    aliasing: layer -> mean aliasing measure (robustrain.aliasing.aliasing_measure: mean |Y - reference| per
        output bin, forward-normalised DFT) over the probe images, in eval mode.
    aliasing_groups: prefix -> mean of its layers (the paper's per-block value), when group_prefixes is set.
    probe: {"source": "train" | "test", "num_images", "seed"}.
    categories: {"threshold_db", "num_images": {all, correct, incorrect},
        "layers": {layer: {split: {non_aliased, aliased, tangled, no_pass}}}, "overall": {split: {...}}}: mean
        fraction of each layer's output bins per category, over all / correctly / incorrectly classified test images;
        "overall" is the equally weighted mean over layers. Means are over all ranks.
TensorBoard: test/aliasing/<layer>, test/aliased_fraction/<layer>; figures aliasing/category_pies and
aliasing/aliased_fraction_boxes (box plots use rank zero's images), also saved as PNGs next to the report.
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from robustrain.aliasing import CATEGORIES, group_layers, measure_model_aliasing
from robustrain.aliasing.layer_categories import categories_from_sums, category_sums, layer_categories
from robustrain.core.ranks import rank_share
from robustrain.core.validation import check_choice, check_file_name, check_in_range, check_positive_int
from robustrain.data import probe_set_of
from robustrain.evaluation.figures import plot_category_boxes, plot_category_pies
from robustrain.runs.atomic import atomic_savefig, atomic_write_text
from robustrain.runs.monitoring import tensorboard_loggers
from robustrain.training import network_of

PROBE_SOURCES = ("train", "test")


class AliasingAnalysis(Callback):
    """Per-layer aliasing on a probe set and spectral categories of the test images, split by correctness.

    Args:
        probe_source: "train": `probe_size` fixed training images from the datamodule's `probe_set` (the paper's
            100 random training images); "test": the test images this callback sees (up to max_images).
        probe_size: Probe images when probe_source is "train".
        probe_seed: Seed of the probe images.
        layer_names: Downsampling layers to analyse, module paths inside `pl_module.net` (as AliasingMonitor names
            them, e.g. "conv2", "layer2.0.conv1"); None = all of them.
        group_prefixes: Module-path prefixes to average layers over (e.g. ["layer2"] for a ResNet); None = none.
        threshold_db: Category threshold below each feature map's peak, in dB (Ribeiro & Schön: 20).
        max_images: Test images whose categories are computed (total over ranks); None = all.
        report_name: File name of the JSON report in the log dir.
    """

    def __init__(
        self,
        probe_source: str = "train",
        probe_size: int = 100,
        probe_seed: int = 0,
        layer_names: Sequence[str] | None = None,
        group_prefixes: Sequence[str] | None = None,
        threshold_db: float = 20.0,
        max_images: int | None = None,
        report_name: str = "aliasing.json",
    ) -> None:
        super().__init__()
        check_choice("probe_source", probe_source, PROBE_SOURCES)
        check_positive_int("probe_size", probe_size)
        check_in_range("threshold_db", threshold_db, 0.0, low_open=True, note="(dB)")
        if max_images is not None:  # None: all test images
            check_positive_int("max_images", max_images)
        check_file_name("report_name", report_name, ".json")
        self.probe_source, self.probe_size, self.probe_seed = probe_source, probe_size, probe_seed
        self.layer_names = list(layer_names) if layer_names is not None else None
        self.group_prefixes = list(group_prefixes) if group_prefixes is not None else None
        self.threshold_db = threshold_db
        self.max_images = max_images
        self.report_name = report_name
        self.report: dict[str, Any] | None = None
        self._reset()

    def _reset(self) -> None:
        self._aliasing: dict[str, float] = {}
        self._probe_sums: dict[str, float] = {}
        self._probe_count = 0
        self._layers: list[str] = []
        self._sums: Tensor | None = None  # (L, 3, 4)
        self._counts: Tensor | None = None  # (3,)
        self._per_image: dict[str, dict[str, list[Tensor]]] = {}
        self._correct: list[Tensor] = []
        self._seen = 0

    # --- hooks ----------------------------------------------------------------------------------------------------
    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reset()
        if self.probe_source == "train":
            images, _ = probe_set_of(
                trainer.datamodule,
                self.probe_size,
                self.probe_seed,
                "AliasingAnalysis(probe_source='train')",
                "use probe_source='test'",
            )
            net = network_of(pl_module)
            self._aliasing = measure_model_aliasing(net, images.to(pl_module.device), self.layer_names)
            self._probe_count = len(images)

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        images, labels = batch[0], batch[1]
        n = (
            len(labels)
            if self.max_images is None
            else min(len(labels), rank_share(self.max_images, trainer.world_size) - self._seen)
        )
        if n <= 0:
            return
        self._seen += n
        logits, per_image = layer_categories(network_of(pl_module), images[:n], self.layer_names, self.threshold_db)
        correct = (logits.argmax(1) == labels[:n]).cpu()
        sums, counts = category_sums(per_image, correct)
        self._layers = list(per_image)
        self._sums = sums if self._sums is None else self._sums + sums
        self._counts = counts if self._counts is None else self._counts + counts
        self._correct.append(correct)
        for layer, fractions in per_image.items():
            for category, values in fractions.items():
                self._per_image.setdefault(layer, {}).setdefault(category, []).append(values)
        if self.probe_source == "test":
            for layer, mean in measure_model_aliasing(network_of(pl_module), images[:n], self.layer_names).items():
                self._probe_sums[layer] = self._probe_sums.get(layer, 0.0) + mean * n
            self._probe_count += n

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finish(trainer, pl_module)

    # --- driver ---------------------------------------------------------------------------------------------------
    def _finish(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Reduces across ranks, logs on every rank, writes the report and figures on rank zero."""
        device = pl_module.device

        # Sums across ranks with trainer.strategy.reduce, not torchmetrics' SumMetric/CatMetric, on purpose:
        # exact float64 counts, some of them vectors (SumMetric flattens to a scalar in float32), held by a
        # callback (no nn.Module carries metric states to the device), reduced in one collective per key at
        # epoch end under any Lightning strategy.
        def reduce(value: Tensor) -> Tensor:
            return trainer.strategy.reduce(value.to(device), reduce_op="sum").cpu()

        if self.probe_source == "test" and self._probe_sums:
            names = sorted(self._probe_sums)
            totals = reduce(torch.tensor([self._probe_sums[k] for k in names], dtype=torch.float64))
            count = reduce(torch.tensor(float(self._probe_count), dtype=torch.float64)).item()
            self._aliasing = {k: totals[i].item() / count for i, k in enumerate(names)}
            self._probe_count = int(count)
        categories = None
        if self._sums is not None:
            categories = categories_from_sums(self._layers, reduce(self._sums), reduce(self._counts))
            categories = {"threshold_db": self.threshold_db, **categories}
        report = {
            "schema": "robustrain.aliasing/1",
            "checkpoint": str(trainer.ckpt_path) if trainer.ckpt_path else None,
            "aliasing": self._aliasing,
            "aliasing_groups": group_layers(self._aliasing, self.group_prefixes) if self.group_prefixes else None,
            "probe": {
                "source": self.probe_source,
                "num_images": self._probe_count,
                "seed": self.probe_seed if self.probe_source == "train" else None,
            },
            "categories": categories,
        }
        self.report = report
        for layer, value in self._aliasing.items():
            pl_module.log(f"test/aliasing/{layer}", value, on_epoch=True, sync_dist=False)
        if categories is not None:
            for layer, splits in categories["layers"].items():
                pl_module.log(
                    f"test/aliased_fraction/{layer}", splits["all"]["aliased"], on_epoch=True, sync_dist=False
                )
        if not trainer.is_global_zero:
            return
        log_dir = Path(trainer.log_dir or trainer.default_root_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(log_dir / self.report_name, json.dumps(report, indent=2))
        if categories is not None:
            self._write_figures(trainer, log_dir, categories)

    def _write_figures(self, trainer: L.Trainer, log_dir: Path, categories: dict[str, Any]) -> None:
        per_image = {layer: {c: torch.cat(v[c]).tolist() for c in CATEGORIES} for layer, v in self._per_image.items()}
        figures = {
            "aliasing/category_pies": plot_category_pies(
                {layer: splits["all"] for layer, splits in categories["layers"].items()}, categories["overall"]["all"]
            ),
            "aliasing/aliased_fraction_boxes": plot_category_boxes(per_image, torch.cat(self._correct).tolist()),
        }
        for tag, figure in figures.items():
            atomic_savefig(figure, log_dir / f"{tag.split('/')[-1]}.png", dpi=100)
            for logger in tensorboard_loggers(trainer):
                logger.experiment.add_figure(tag, figure, global_step=trainer.global_step)
