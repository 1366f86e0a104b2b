"""SpatialEvaluation: a test-time callback measuring spatial robustness (Engstrom et al. 2019; Zhang 2019).

Thin layers: the hooks collect per-batch sums (`on_test_batch_end`), `_finish` reduces them across ranks and
reports once; all the math is in `robustrain.spatial` (grid, worst-of-k, first-order attack, loss surfaces, shift
consistency), and the report's measures and table in `robustrain.evaluation.spatial_report`.

Report (`spatial_report.json` in the run's log dir; every accuracy is a fraction in [0, 1]):
    n_images: test images evaluated (all ranks together).
    clean_acc: accuracy on the untransformed images.
    grid_acc: an image counts only if it is correct under every grid transform (Engstrom's robust accuracy).
    per_transform_acc: accuracy over all n_images x n_transforms transformed copies (the measure of the one-axis
        ImageNet experiment, configs/eval_spatial_imagenet_resnet50.yaml).
    per_transform_acc_grid: that accuracy per transform, nested [rotation][tx][ty] ("both") or [rotation][t].
    random_acc: accuracy under one uniformly random transform per image.
    worst_of_k_acc: accuracy under each image's worst of k random transforms (`selection_rule`); logged as
        `spatial/worst_of_10_acc` when k = 10, `spatial/worst_of_{k}_acc` otherwise.
    first_order_acc: accuracy under the first-order attack (PGD on rotation, tx, ty) on the first
        `first_order_size` images; first_order_grid_acc: grid accuracy on those same images, so
        first_order_acc > first_order_grid_acc means the first-order attack is weaker than the grid.
    shift_consistency: fraction of pairs of random integer shifts of the same image with the same top-1 class
        (Zhang 2019, adapted to small images: both shifts (tx, ty) are drawn uniformly from the integers in
        [-floor(translation_px_range), floor(translation_px_range)] on the translated axes, zero fill, no
        rotation; `shift_pairs` pairs per image).
    smoothness: mean and std over images of the loss surfaces' gradient_mean, gradient_std, total_variation
        (`robustrain.spatial.surface_smoothness`). A surface is the loss over rotation x translation along one
        axis: with translation_axes "both" each ty value gives a rotation x tx surface and an image's value is the
        mean over its ty surfaces; with "x" or "y" each image has one rotation x t surface (as the one-axis ImageNet
        experiment).
    grid: the transforms (rotations_deg, translations_px, translation_axes, n_transforms); settings: the arguments.
    Keys of disabled measures are null.
"""

import json
import math
import sys
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from robustrain.core.ranks import rank_share
from robustrain.core.train_eval_modes import eval_mode
from robustrain.core.validation import check_choice, check_file_name, check_in_range, check_int
from robustrain.evaluation.spatial_report import SMOOTHNESS_FIELDS, format_table, summarize
from robustrain.runs.atomic import atomic_savefig, atomic_write_text
from robustrain.runs.monitoring import tensorboard_loggers
from robustrain.spatial import (
    SELECTION_RULES,
    TRANSLATION_AXES,
    axis_mask,
    evaluate_transforms,
    first_order_attack,
    grid_parameters,
    grid_shape,
    loss_surfaces,
    plot_heatmap,
    plot_surfaces,
    random_correct,
    shift_consistency,
    surface_smoothness,
    worst_of_k,
)


class SpatialEvaluation(Callback):
    """Grid, random, worst-of-k and first-order spatial attacks, loss-surface smoothness and shift consistency on
    the test set (`trainer.test`, e.g. `python train.py test --config configs/eval_spatial_mnist5k.yaml --ckpt_path
    ...`). Logs `spatial/*` scalars and figures, writes a JSON report (keys: module docstring) and logs a table, once.

    The model is the LightningModule's forward (logits of [0, 1] images), run in eval mode (every submodule's mode
    restored). Sums are reduced across ranks, so DDP gives the same numbers as one process on the same images.
    The first-order attack needs autograd: run the Trainer with inference_mode=False (robustrain's CLI default).

    Args:
        rotation_deg_range: Grid rotations span [-range, range] degrees (linspace), default 30.
        n_rotations: Grid rotations, default 31 (2 degree steps).
        translation_px_range: Grid translations span [-range, range] px per axis, default 3 (CIFAR-10; 24 at 224).
        n_translations: Grid translations per axis, default 5: 31 x 5 x 5 = 775 transforms.
        translation_axes: "both" (Engstrom's grid), or only "x" / "y" (the one-axis ImageNet experiment: 31 x 5).
        chunk_size: Grid transforms per forward pass (batch x chunk_size images each), default 32.
        accuracy_only: Only the grid accuracy from the grid (early exit: fooled images are dropped from later
            chunks); per-transform accuracy, heatmap and loss surfaces are then not computed.
        k: Random candidates of the worst-of-k attack (>= 1), default 10.
        selection_rule: Worst-of-k rule: "misclassified_then_loss" (default) or "loss".
        first_order_steps: Steps of the first-order attack, default 200; 0 = off. Needs translation_axes "both".
        first_order_rotation_step_deg: Its rotation step per iteration, default 0.6 degrees.
        first_order_translation_step_px: Its translation step per iteration and axis, default 0.25 px.
        first_order_size: Test images attacked with it (the first ones), default 500.
        shift_pairs: Random shift pairs per image for shift consistency, default 5; 0 = off.
        max_images: Test images evaluated (the first ones, over all ranks); None = all.
        n_example_surfaces: Loss surfaces plotted (the first images), default 4.
        report_name: JSON report file name, written in the run's log dir.
        seed: Seed of the random, worst-of-k and shift draws (offset by the global rank).
    """

    def __init__(
        self,
        rotation_deg_range: float = 30.0,
        n_rotations: int = 31,
        translation_px_range: float = 3.0,
        n_translations: int = 5,
        translation_axes: Literal["both", "x", "y"] = "both",
        chunk_size: int = 32,
        accuracy_only: bool = False,
        k: int = 10,
        selection_rule: str = "misclassified_then_loss",
        first_order_steps: int = 200,
        first_order_rotation_step_deg: float = 0.6,
        first_order_translation_step_px: float = 0.25,
        first_order_size: int = 500,
        shift_pairs: int = 5,
        max_images: int | None = None,
        n_example_surfaces: int = 4,
        report_name: str = "spatial_report.json",
        seed: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("rotation_deg_range", rotation_deg_range),
            ("translation_px_range", translation_px_range),
            ("first_order_rotation_step_deg", first_order_rotation_step_deg),
            ("first_order_translation_step_px", first_order_translation_step_px),
        ):
            check_in_range(name, value, 0.0)
        for name, value, low in (
            ("n_rotations", n_rotations, 1),
            ("n_translations", n_translations, 1),
            ("chunk_size", chunk_size, 1),
            ("k", k, 1),
            ("first_order_steps", first_order_steps, 0),
            ("first_order_size", first_order_size, 0),
            ("shift_pairs", shift_pairs, 0),
            ("n_example_surfaces", n_example_surfaces, 0),
            ("max_images", 1 if max_images is None else max_images, 1),
        ):
            check_int(name, value, low)
        check_choice("translation_axes", translation_axes, TRANSLATION_AXES)
        check_choice("selection_rule", selection_rule, SELECTION_RULES)
        if first_order_steps > 0 and translation_axes != "both":
            raise ValueError(
                f"first_order_steps={first_order_steps} with translation_axes={translation_axes!r} is not valid: the "
                "first-order attack searches both translation axes; set first_order_steps=0 or translation_axes='both'"
            )
        check_file_name("report_name", report_name)
        self.rotation_deg_range, self.n_rotations = float(rotation_deg_range), n_rotations
        self.translation_px_range, self.n_translations = float(translation_px_range), n_translations
        self.translation_axes, self.chunk_size, self.accuracy_only = translation_axes, chunk_size, accuracy_only
        self.k, self.selection_rule = k, selection_rule
        self.first_order_steps, self.first_order_size = first_order_steps, first_order_size
        self.first_order_rotation_step_deg = float(first_order_rotation_step_deg)
        self.first_order_translation_step_px = float(first_order_translation_step_px)
        self.shift_pairs, self.max_images, self.n_example_surfaces = shift_pairs, max_images, n_example_surfaces
        self.report_name, self.seed = report_name, seed
        self.params = grid_parameters(  # (T, 3) rows (rotation_deg, tx_px, ty_px), in the order of grid_shape
            rotation_deg_range, n_rotations, translation_px_range, n_translations, translation_axes
        )
        self.mask = axis_mask(translation_axes)
        self.report: dict[str, Any] | None = None  # the last test epoch's report
        self._reset()

    # --- hooks ----------------------------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        image_shape = getattr(trainer.datamodule, "image_shape", None)
        if image_shape is not None and self.translation_px_range >= min(image_shape[-2:]):
            raise ValueError(
                f"translation_px_range={self.translation_px_range!r} is larger than the {tuple(image_shape[-2:])} "
                f"images: it must be < {min(image_shape[-2:])} px"
            )

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.first_order_steps > 0 and torch.is_inference_mode_enabled():
            raise RuntimeError(
                "SpatialEvaluation's first-order attack needs autograd but inference mode is on: run the Trainer "
                "with inference_mode=False (robustrain's CLI default) or set first_order_steps=0"
            )
        self._reset()

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if dataloader_idx != 0:
            return
        images, labels = batch[0], batch[1]
        budget = self._rank_budget(self.max_images, trainer.world_size) - int(self._sums["n_images"])
        if budget <= 0:
            return
        images, labels = images[:budget], labels[:budget]
        if self._generator is None:
            self._generator = torch.Generator(device=images.device).manual_seed(self.seed + trainer.global_rank)
        with eval_mode(pl_module):
            self._measure(pl_module, images, labels, trainer.world_size)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finish(trainer, pl_module)

    # --- measurement ----------------------------------------------------------------------------------------------
    def _reset(self) -> None:
        self._sums: dict[str, Tensor] = {}
        for key in (
            "n_images",
            "clean_correct",
            "grid_correct",
            "random_correct",
            "worst_of_k_correct",
            "first_order_images",
            "first_order_correct",
            "first_order_grid_correct",
            "shift_pairs",
            "shift_consistent",
        ):
            self._sums[key] = torch.zeros((), dtype=torch.float64)
        # Every rank must hold the same keys and shapes, even one that saw no batch: they are all-reduced.
        if not self.accuracy_only:
            self._sums["per_transform_correct"] = torch.zeros(self.params.shape[0], dtype=torch.float64)
            if self.n_rotations >= 2 and self.n_translations >= 2:
                self._sums["smooth_images"] = torch.zeros((), dtype=torch.float64)
                for field in SMOOTHNESS_FIELDS:
                    self._sums[f"{field}_sum"] = torch.zeros((), dtype=torch.float64)
                    self._sums[f"{field}_sq_sum"] = torch.zeros((), dtype=torch.float64)
        self._surfaces: list[Tensor] = []  # example loss surfaces of this rank, (R, N) each
        self._generator: torch.Generator | None = None

    @staticmethod
    def _rank_budget(total: int | None, world_size: int) -> int:
        return sys.maxsize if total is None else rank_share(total, world_size)

    def _add(self, key: str, value: Tensor) -> None:
        self._sums[key] = self._sums[key] + value.detach().double().cpu()

    def _measure(self, model: nn.Module, x: Tensor, y: Tensor, world_size: int) -> None:
        """Adds one batch's counts to the sums (model already in eval mode)."""
        batch_size, device = x.shape[0], x.device
        params = self.params.to(device)  # (T, 3)
        self._add("n_images", torch.tensor(float(batch_size)))
        with torch.no_grad():
            self._add("clean_correct", (model(x).argmax(dim=1) == y).sum())
        grid = evaluate_transforms(model, x, y, params, chunk_size=self.chunk_size, early_exit=self.accuracy_only)
        self._add("grid_correct", grid.robust_correct.sum())
        if not self.accuracy_only:
            self._add("per_transform_correct", grid.correct.sum(dim=0))  # (B, T) -> (T,)
            self._add_surfaces(grid.loss)
        self._add("random_correct", self._random_correct(model, x, y).sum())
        self._add("worst_of_k_correct", self._worst_of_k_correct(model, x, y).sum())
        first_order_budget = self._rank_budget(self.first_order_size, world_size)
        n_attack = min(batch_size, first_order_budget - int(self._sums["first_order_images"]))
        if self.first_order_steps > 0 and n_attack > 0:
            attack = first_order_attack(
                model,
                x[:n_attack],
                y[:n_attack],
                steps=self.first_order_steps,
                rotation_step_deg=self.first_order_rotation_step_deg,
                translation_step_px=self.first_order_translation_step_px,
                rotation_deg_range=self.rotation_deg_range,
                translation_px_range=self.translation_px_range,
            )
            self._add("first_order_images", torch.tensor(float(n_attack)))
            self._add("first_order_correct", (~attack.fooled).sum())
            self._add("first_order_grid_correct", grid.robust_correct[:n_attack].sum())
        if self.shift_pairs > 0:
            max_shift_px = int(math.floor(self.translation_px_range))
            consistent = shift_consistency(model, x, max_shift_px, self.shift_pairs, self.mask, self._generator)
            self._add("shift_consistent", consistent.sum())
            self._add("shift_pairs", torch.tensor(float(batch_size * self.shift_pairs)))

    def _random_correct(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return random_correct(
            model, x, y, self.rotation_deg_range, self.translation_px_range, self._generator, self.translation_axes
        )  # (B,)

    def _worst_of_k_correct(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        _, correct = worst_of_k(
            model,
            x,
            y,
            self.k,
            self.rotation_deg_range,
            self.translation_px_range,
            rule=self.selection_rule,
            generator=self._generator,
            chunk_size=self.chunk_size,
            translation_axes=self.translation_axes,
        )
        return correct  # (B,)

    def _surfaces_of(self, loss: Tensor) -> Tensor | None:
        """(B, T) grid losses -> (B, S, R, N) loss surfaces (S = N ty slices for "both", else 1); None if too small."""
        n_translations = self.n_translations
        if self.n_rotations < 2 or n_translations < 2:
            return None
        surfaces = loss_surfaces(loss, self.n_rotations)  # (B, T) -> (B, R, T/R)
        if self.translation_axes != "both":
            return surfaces.unsqueeze(1)  # (B, R, N) -> (B, 1, R, N)
        surfaces = surfaces.view(loss.shape[0], *grid_shape(self.n_rotations, n_translations))  # (B, R, Ntx, Nty)
        return surfaces.permute(0, 3, 1, 2)  # (B, Nty, R, Ntx): one rotation x tx surface per ty

    def _add_surfaces(self, loss: Tensor) -> None:
        surfaces = self._surfaces_of(loss)
        if surfaces is None:
            return
        batch_size, n_slices = surfaces.shape[:2]
        smoothness = surface_smoothness(surfaces.flatten(0, 1))  # (B*S, R, N) -> fields of (B*S,)
        self._add("smooth_images", torch.tensor(float(batch_size)))
        for field in SMOOTHNESS_FIELDS:
            per_image = getattr(smoothness, field).view(batch_size, n_slices).mean(dim=1)  # (B*S,) -> (B,)
            self._add(f"{field}_sum", per_image.sum())
            self._add(f"{field}_sq_sum", (per_image**2).sum())
        missing = self.n_example_surfaces - len(self._surfaces)
        if missing > 0:
            middle = n_slices // 2  # ty = 0 for "both"
            self._surfaces.extend(s.detach().cpu() for s in surfaces[:missing, middle])

    # --- reporting ------------------------------------------------------------------------------------------------
    def _finish(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Reduces the sums across ranks, then logs the scalars on every rank and writes files on rank zero."""
        device = pl_module.device
        # Sums across ranks with trainer.strategy.reduce, not torchmetrics' SumMetric/CatMetric, on purpose:
        # exact float64 counts, some of them vectors (SumMetric flattens to a scalar in float32), held by a
        # callback (no nn.Module carries metric states to the device), reduced in one collective per key at
        # epoch end under any Lightning strategy.
        sums = {
            key: trainer.strategy.reduce(value.to(device), reduce_op="sum").cpu()
            for key, value in sorted(self._sums.items())
        }
        report = summarize(sums, self.k)
        report["grid"] = {
            "rotations_deg": torch.unique(self.params[:, 0]).tolist(),
            "translations_px": torch.unique(self.params[:, 1:][:, self.mask[1:].bool()]).tolist(),
            "translation_axes": self.translation_axes,
            "n_transforms": self.params.shape[0],
        }
        report["settings"] = self._settings()
        heatmap = None
        if report["per_transform_acc_grid"] is not None:
            heatmap = torch.tensor(report["per_transform_acc_grid"], dtype=torch.float64)
            heatmap = heatmap.view(self.n_rotations, -1)  # (T,) -> (R, T/R)
            shape = grid_shape(self.n_rotations, self.n_translations, self.translation_axes)
            report["per_transform_acc_grid"] = heatmap.view(shape).tolist()  # (R, Ntx, Nty) or (R, N)
        self.report = report
        for name, value in self._scalars(report).items():
            pl_module.log(name, value, on_epoch=True, sync_dist=False)
        log_dir = Path(trainer.log_dir or trainer.default_root_dir)  # a collective: every rank must ask
        if not trainer.is_global_zero:
            return
        log_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(log_dir / self.report_name, json.dumps(report, indent=2))
        self._write_figures(trainer, log_dir, heatmap)
        rank_zero_info(format_table(report, log_dir / self.report_name))

    def _settings(self) -> dict[str, Any]:
        names = (
            "rotation_deg_range",
            "n_rotations",
            "translation_px_range",
            "n_translations",
            "translation_axes",
            "chunk_size",
            "accuracy_only",
            "k",
            "selection_rule",
            "first_order_steps",
            "first_order_rotation_step_deg",
            "first_order_translation_step_px",
            "first_order_size",
            "shift_pairs",
            "max_images",
            "seed",
        )
        return {name: getattr(self, name) for name in names}

    def _scalars(self, report: dict[str, Any]) -> dict[str, float]:
        scalars = {
            "spatial/clean_acc": report["clean_acc"],
            "spatial/grid_acc": report["grid_acc"],
            "spatial/per_transform_acc": report["per_transform_acc"],
            "spatial/random_acc": report["random_acc"],
            f"spatial/worst_of_{self.k}_acc": report["worst_of_k_acc"],
            "spatial/first_order_acc": report["first_order_acc"],
            "spatial/first_order_grid_acc": report["first_order_grid_acc"],
            "spatial/shift_consistency": report["shift_consistency"],
        }
        for field, stats in (report["smoothness"] or {}).items():
            scalars[f"spatial/smoothness_{field}"] = stats["mean"]
        return {name: float(value) for name, value in scalars.items() if value is not None}

    def _write_figures(self, trainer: L.Trainer, log_dir: Path, heatmap: Tensor | None) -> None:
        rotations_deg = torch.unique(self.params[:, 0])
        translations_px = torch.unique(self.params[:, 1:][:, self.mask[1:].bool()])
        figures = {}
        if heatmap is not None:
            figures["spatial/per_transform_acc_heatmap"] = plot_heatmap(
                heatmap,
                rotations_deg,
                title=f"accuracy per transform ({self.translation_axes} translations)",
                translations_px=translations_px,
            )
        if self._surfaces:
            titles = [f"test image {i}" for i in range(len(self._surfaces))]
            figures["spatial/loss_surfaces"] = plot_surfaces(
                torch.stack(self._surfaces), titles, rotations_deg, translations_px=translations_px
            )
        for tag, figure in figures.items():
            atomic_savefig(figure, log_dir / f"{tag.split('/')[-1]}.png", dpi=100)
            for logger in tensorboard_loggers(trainer):
                logger.experiment.add_figure(tag, figure, global_step=trainer.global_step)
