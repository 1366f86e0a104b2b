"""Worst-of-k spatial training (Engstrom et al. 2019): train on each image's worst of k random rotation-translations."""

import torch
from lightning.pytorch.utilities import rank_zero_warn

from robustrain.attacks import check_linf_params, pgd
from robustrain.core.train_eval_modes import batchnorm_mode, eval_mode
from robustrain.core.validation import check_choice, check_in_range, check_positive_int
from robustrain.spatial import SELECTION_RULES, rotate_translate, worst_of_k
from robustrain.training.robust_classifier import RobustClassifier


def check_spatial_ranges(rotation_deg_range: float, translation_px_range: float) -> None:
    """Raises ValueError unless both ranges are finite numbers >= 0."""
    check_in_range("rotation_deg_range", rotation_deg_range, 0.0, note="(a +- range)")
    check_in_range("translation_px_range", translation_px_range, 0.0, note="(a +- range)")


def check_translation_fits(translation_px_range: float, image_shape: tuple[int, ...]) -> None:
    """Raises ValueError if a translation of +-range px would move the image entirely out of its (C, H, W) frame."""
    height, width = image_shape[-2:]
    if translation_px_range >= min(height, width):
        raise ValueError(
            f"translation_px_range={translation_px_range!r} is larger than the {height}x{width} images: "
            f"it must be < min(height, width)={min(height, width)} px (Engstrom et al.: 3 px at 32, 24 px at 224)"
        )


class WorstOfKSpatialTraining(RobustClassifier):
    """Worst-of-k spatial augmentation: per example, k random (rotation, tx, ty), train on the worst one only.

    "Exploring the Landscape of Spatial Robustness", Engstrom et al., ICML 2019 (worst-of-10 training). For each
    training example and each try, a rotation uniform in [-rotation_deg_range, rotation_deg_range] degrees and a
    translation uniform in [-translation_px_range, translation_px_range] px per axis are drawn; the k candidates are
    evaluated batched (B*k images per forward unless `chunk_size` is set) under no_grad with the whole network in
    eval mode (BatchNorm uses its running statistics and is not updated by the search; every submodule's mode is
    restored afterwards); each example's candidate is picked by `selection_rule`, and the network trains on the
    picked images only. Optionally an L-inf PGD attack is stacked on the picked images (their combined spatial +
    L-inf adversary), generated with BatchNorm in `attack_bn_mode`.

    Args:
        k: Random candidates per example (>= 1), default 10.
        rotation_deg_range: Rotations are uniform in [-range, range] degrees, default 30.
        translation_px_range: tx and ty are uniform in [-range, range] pixels, default 3 (CIFAR-10 / MNIST; 24 at
            224 px). Checked against the data's image size before training.
        selection_rule: "misclassified_then_loss" (a misclassified candidate first, the highest-loss one among them,
            else the highest loss: Engstrom et al.'s TensorFlow code; default) or "loss" (highest loss only: their
            PyTorch code).
        include_identity: Also offer the untransformed image as a candidate (k + 1 in all; it wins ties).
        chunk_size: Candidates per forward pass; None = all of them (B*k images in one forward).
        pgd_eps: L-inf radius in [0, 1] pixel units of the PGD attack stacked on the picked images; 0 = off.
        pgd_alpha: PGD step size in [0, 1] pixel units.
        pgd_steps: PGD steps.
        **kwargs: RobustClassifier arguments (net, optimizer, lr, ..., attack_bn_mode).
    """

    def __init__(
        self,
        k: int = 10,
        rotation_deg_range: float = 30.0,
        translation_px_range: float = 3.0,
        selection_rule: str = "misclassified_then_loss",
        include_identity: bool = False,
        chunk_size: int | None = None,
        pgd_eps: float = 0.0,
        pgd_alpha: float = 2 / 255,
        pgd_steps: int = 10,
        **kwargs,
    ) -> None:
        check_positive_int("k", k)  # candidates per example
        check_spatial_ranges(rotation_deg_range, translation_px_range)
        check_choice("selection_rule", selection_rule, SELECTION_RULES)
        if chunk_size is not None:  # None: all candidates at once
            check_positive_int("chunk_size", chunk_size)
        check_linf_params(pgd_eps, pgd_alpha, pgd_steps)
        super().__init__(train_eps=None, **kwargs)  # no L-inf training radius: eval_eps defaults to 8/255

    def setup(self, stage: str) -> None:
        image_shape = getattr(self.trainer.datamodule, "image_shape", None) if self._trainer else None
        if image_shape is not None:
            check_translation_fits(self.hparams.translation_px_range, image_shape)
        elif stage == "fit":
            rank_zero_warn("WorstOfKSpatialTraining: no datamodule image_shape; translation range checked per batch")

    def perturb(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        hp = self.hparams
        n_candidates = hp.k + int(hp.include_identity)
        with eval_mode(self.net):  # the search must not depend on (or update) batch statistics
            params, picked_correct = worst_of_k(
                self.net,
                images,
                labels,
                k=hp.k,
                rotation_deg_range=hp.rotation_deg_range,
                translation_px_range=hp.translation_px_range,
                rule=hp.selection_rule,
                include_identity=hp.include_identity,
                chunk_size=hp.chunk_size or n_candidates,
            )  # (B, 3), (B,)
        if self._trainer is not None:
            accuracy = picked_correct.float().mean()
            self.log("train/acc_worst_of_k", accuracy, on_step=False, on_epoch=True, batch_size=len(labels))
        picked = rotate_translate(images, params[:, 0], params[:, 1:]).detach()  # (B, C, H, W)
        if hp.pgd_eps > 0:
            with batchnorm_mode(self.net, hp.attack_bn_mode):
                picked = pgd(
                    self.net, picked, labels, hp.pgd_eps, hp.pgd_alpha, hp.pgd_steps, True, box=self.input_range
                )
        return picked
