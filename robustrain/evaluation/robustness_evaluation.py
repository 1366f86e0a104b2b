"""RobustnessEvaluation: a test-time callback measuring robust accuracy (FGSM, PGD, AutoAttack, accuracy vs eps).

Thin layers: `on_test_batch_end` attacks each test batch with the attacks of `robustrain.evaluation.robust_accuracy`
and adds per-batch sums, `_finish` reduces them across ranks, logs `test/acc_<key>` on every rank and writes the
report and figures once (rank zero). Use it with
`python train.py test --config configs/eval_robust_mnist5k.yaml --ckpt_path ...`.

Report (`robustness.json` in the run's log dir, i.e. the TensorBoard version dir; accuracies are fractions in [0, 1]):
    schema: "robustrain.robustness/1".
    checkpoint: the tested checkpoint path (trainer.ckpt_path) or null.
    model: the LightningModule class; net: its `net` class when it has one.
    eps: the L-inf radius of the attacks (pixel units in [0, 1]).
    accuracy: key -> accuracy: "clean", "fgsm", "pgd_<steps>x<restarts>", "autoattack" (the attacks that ran).
    num_images: key -> images evaluated (all ranks together).
    attacks: key -> the settings used (AttackSpec.describe(); AutoAttack lists its components and iterations).
    seconds: key -> attack wall time summed over batches on rank zero.
    accuracy_vs_eps: {"eps": [...], "accuracy": [...], "steps", "step_factor", "num_images", "seconds"} or null.
    perturbation_spectrum: key -> {"mean_abs_fft": (C, H, W) nested list, "num_images", "fft": "..."} for PGD and
        AutoAttack: mean over the perturbed images (x_adv != x) of |fftshift(fft2(x_adv - x, norm="forward"))|.
TensorBoard: scalars test/acc_<key>, figures robustness/accuracy_vs_eps and robustness/perturbation_spectrum (also
saved as PNGs next to the report).

Console (rank zero, Lightning's logging): a line as each attack starts on a batch (which attack, which images out of
how many, its accuracy and time so far), and at the end the table of `robustness_table`.
"""

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from robustrain.attacks import AUTOATTACK_IMPLEMENTATIONS, AUTOATTACK_STANDARD, UNIT_BOX
from robustrain.core.ranks import rank_share
from robustrain.core.validation import check_choice, check_file_name, check_positive_int, check_that
from robustrain.evaluation.figures import plot_accuracy_vs_eps, plot_spectra
from robustrain.evaluation.robust_accuracy import (
    AttackSpec,
    attack_batch,
    check_eps_list,
    curve_specs,
    perturbation_spectrum,
)
from robustrain.runs.atomic import atomic_savefig, atomic_write_text
from robustrain.runs.monitoring import tensorboard_loggers
from robustrain.training import network_of

EVAL_ATTACKS = ("fgsm", "pgd", "autoattack")
CURVE = "curve_"  # prefix of the accuracy-vs-eps attacks' keys


def _curve_key(eps: float) -> str:
    return f"{CURVE}{eps!r}"


def _test_images(trainer: L.Trainer) -> int | None:
    """Images this rank will be given by the test loop (its share of each loader, within limit_test_batches)."""
    loaders = trainer.test_dataloaders
    loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
    try:
        total = 0
        for loader, batches in zip(loaders, trainer.num_test_batches):
            size = len(loader.sampler) if hasattr(loader.sampler, "__len__") else len(loader.dataset)
            total += size if math.isinf(batches) else min(size, int(batches) * (loader.batch_size or 1))
        return total
    except (AttributeError, TypeError):
        return None


def robustness_table(report: dict[str, Any], path: str | Path | None = None) -> str:
    """The report as an aligned table: accuracy, images and seconds per attack (and the eps curve's time)."""
    implementation = report["attacks"].get("autoattack", {}).get("implementation", "")
    title = f"Robust accuracy at eps={report['eps']:g}"
    title += f" (AutoAttack: {implementation.split(' via ')[0]})" if implementation else ""
    title += f"; report {path}" if path is not None else ""
    rows = [("attack", "accuracy", "images", "seconds")]
    for key, acc in report["accuracy"].items():
        seconds = report["seconds"].get(key)
        label = key
        components = report["attacks"][key].get("components")
        if components and tuple(components) != AUTOATTACK_STANDARD:  # not the whole AutoAttack: say which parts
            label = f"{key} ({', '.join(components)})"
        time_taken = "" if seconds is None else f"{seconds:.1f}"
        rows.append((label, f"{100 * acc:.1f}%", str(report["num_images"][key]), time_taken))
    curve = report.get("accuracy_vs_eps")
    if curve:
        label = f"eps curve ({len(curve['eps'])} radii)"
        rows.append((label, "", str(curve["num_images"]), f"{curve.get('seconds', math.nan):.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [f"  {r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}" for r in rows]
    return "\n".join([title, *lines])


def _check_budget(name: str, value: int | None) -> None:
    if value is not None:  # None: all test images
        check_positive_int(name, value)


class RobustnessEvaluation(Callback):
    """Robust accuracy of the tested model under FGSM, PGD (steps x restarts) and AutoAttack, plus accuracy vs eps.

    Every attack runs with the whole model in eval mode (every submodule's flag restored) and gradients enabled;
    the Trainer needs inference_mode=False. Budgets are totals over all ranks (each rank takes its share of the
    first images of its test batches, so the evaluated subset is fixed for an unshuffled loader).

    Args:
        eps: L-inf radius in [0, 1] pixel units (CIFAR-10: 8/255; MNIST: 0.3).
        attacks: Which of "fgsm", "pgd", "autoattack" to run; clean accuracy is always measured.
        fgsm_alpha: FGSM step; None = eps (Goodfellow's FGSM from the clean image).
        pgd: (steps, restarts) pairs, one PGD evaluation each; default Wong et al.'s PGD-50-10.
        pgd_alpha: PGD step size; None = 2.5 * eps / steps. Default 2/255 (Wong et al., CIFAR-10).
        pgd_random_start: PGD starts from a uniform point of the eps-ball.
        pgd_early_stop: Stop attacking an example once it is misclassified (Wong et al.'s attack_pgd).
        autoattack_steps: APGD / APGD-T / FAB iterations (original AutoAttack: 100; torchattacks' 'standard': 10).
        autoattack_components: Components in order (robustrain.attacks.AUTOATTACK_COMPONENTS).
        autoattack_n_target_classes: Targets of apgd-t / fab-t; None = all other classes.
        autoattack_square_queries: Square attack queries (original: 5000).
        autoattack_seed: Seed of AutoAttack's random starts (the global RNG is left as it was).
        autoattack_impl: "torchattacks" (torchattacks 3.5.1's components, composed by robustrain.attacks.autoattack)
            or "reference" (Croce & Hein's own code, fra31/auto-attack as the `pyautoattack` package: install the
            extra with `pip install -e '.[reference]'`). The comparison of the two: docs/evaluation.md.
        max_images: Images attacked by FGSM and PGD; None = the whole test set.
        autoattack_max_images: Images attacked by AutoAttack; None = the whole test set.
        eps_curve: Radii of the accuracy-vs-eps curve (PGD, Ribeiro & Schön); empty = no curve.
        eps_curve_steps: PGD steps per curve point (Ribeiro & Schön: 100).
        eps_curve_step_factor: Curve step size = factor * eps / steps (Ribeiro & Schön: 2.5).
        eps_curve_max_images: Images of the curve; None = the whole test set.
        spectrum: Record the mean |FFT| of PGD and AutoAttack perturbations.
        report_name: File name of the JSON report in the log dir.
    """

    def __init__(
        self,
        eps: float = 8 / 255,
        attacks: Sequence[str] = EVAL_ATTACKS,
        fgsm_alpha: float | None = None,
        pgd: Sequence[tuple[int, int]] = ((50, 10),),
        pgd_alpha: float | None = 2 / 255,
        pgd_random_start: bool = True,
        pgd_early_stop: bool = False,
        autoattack_steps: int = 100,
        autoattack_components: Sequence[str] = AUTOATTACK_STANDARD,
        autoattack_n_target_classes: int | None = None,
        autoattack_square_queries: int = 5000,
        autoattack_seed: int = 0,
        autoattack_impl: Literal["torchattacks", "reference"] = "torchattacks",
        max_images: int | None = None,
        autoattack_max_images: int | None = None,
        eps_curve: Sequence[float] = (),
        eps_curve_steps: int = 100,
        eps_curve_step_factor: float = 2.5,
        eps_curve_max_images: int | None = None,
        spectrum: bool = True,
        report_name: str = "robustness.json",
    ) -> None:
        super().__init__()
        unknown = [a for a in attacks if a not in EVAL_ATTACKS]
        check_that(not unknown, "attacks", list(attacks), f"a list of {list(EVAL_ATTACKS)} (unknown: {unknown})")
        for name, value in (
            ("max_images", max_images),
            ("autoattack_max_images", autoattack_max_images),
            ("eps_curve_max_images", eps_curve_max_images),
        ):
            _check_budget(name, value)
        check_file_name("report_name", report_name, ".json")
        check_choice("autoattack_impl", autoattack_impl, AUTOATTACK_IMPLEMENTATIONS)
        specs = [AttackSpec("clean")]
        if "fgsm" in attacks:
            specs.append(AttackSpec("fgsm", eps, alpha=fgsm_alpha))
        if "pgd" in attacks:
            for pair in pgd:
                check_that(len(pair) == 2, "pgd", list(pgd), f"a list of (steps, restarts) pairs (got {pair!r})")
                specs.append(
                    AttackSpec(
                        "pgd",
                        eps,
                        alpha=pgd_alpha,
                        steps=int(pair[0]),
                        restarts=int(pair[1]),
                        random_start=pgd_random_start,
                        early_stop=pgd_early_stop,
                    )
                )
        if "autoattack" in attacks:
            specs.append(
                AttackSpec(
                    "autoattack",
                    eps,
                    steps=autoattack_steps,
                    components=tuple(autoattack_components),
                    n_target_classes=autoattack_n_target_classes,
                    square_queries=autoattack_square_queries,
                    seed=autoattack_seed,
                    implementation=autoattack_impl,
                )
            )
        keys = [spec.key for spec in specs]
        check_that(
            len(set(keys)) == len(keys), "pgd", list(pgd), f"distinct (steps, restarts) pairs (attack keys {keys})"
        )
        self.eps = eps
        self.specs = specs
        self.budgets = {spec.key: autoattack_max_images if spec.name == "autoattack" else max_images for spec in specs}
        self.eps_curve = check_eps_list(eps_curve) if len(eps_curve) else []
        self.curve_specs = curve_specs(self.eps_curve, eps_curve_steps, eps_curve_step_factor) if self.eps_curve else []
        self.eps_curve_steps, self.eps_curve_step_factor = eps_curve_steps, eps_curve_step_factor
        self.eps_curve_max_images = eps_curve_max_images
        self.spectrum = spectrum
        self.report_name = report_name
        self.report: dict[str, Any] | None = None
        self._reset()

    def _reset(self) -> None:
        self._sums: dict[str, Tensor] = {}
        self._seconds: dict[str, float] = {}
        self._seen: dict[str, int] = {}
        self._images: int | None = None  # test images of this rank, for the progress lines (None: unknown)

    # --- hooks ----------------------------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "test" and trainer.test_loop.inference_mode:
            raise ValueError(
                "RobustnessEvaluation attacks the model and needs gradients: set trainer.inference_mode: false"
            )

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reset()
        self._images = _test_images(trainer)

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
        world = trainer.world_size
        for spec in self.specs:
            self._attack(pl_module, images, labels, spec, spec.key, self.budgets[spec.key], world, self.spectrum)
        for eps, spec in zip(self.eps_curve, self.curve_specs):
            self._attack(pl_module, images, labels, spec, _curve_key(eps), self.eps_curve_max_images, world, False)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finish(trainer, pl_module)

    # --- driver ---------------------------------------------------------------------------------------------------
    def _attack(
        self,
        model: L.LightningModule,
        images: Tensor,
        labels: Tensor,
        spec: AttackSpec,
        key: str,
        budget: int | None,
        world_size: int,
        spectrum: bool,
    ) -> None:
        seen = self._seen.get(key, 0)
        n = len(labels) if budget is None else min(len(labels), rank_share(budget, world_size) - seen)
        if n <= 0:
            return
        self._progress(key, seen, n, budget, world_size)
        start = time.perf_counter()
        box = getattr(model, "input_range", UNIT_BOX)  # the data's range: (0, 1), or wider with injected features
        adv, correct = attack_batch(model, images[:n], labels[:n], spec, box)
        self._seconds[key] = self._seconds.get(key, 0.0) + time.perf_counter() - start
        self._seen[key] = seen + n
        self._add(f"{key}/correct", correct.sum().double())
        self._add(f"{key}/count", torch.tensor(float(n), dtype=torch.float64, device=correct.device))
        if spectrum and spec.name in ("pgd", "autoattack"):
            delta = adv - images[:n]  # (n, C, H, W)
            perturbed = delta.flatten(1).abs().amax(1) > 0
            if perturbed.any():
                self._add(f"{key}/spectrum", perturbation_spectrum(delta[perturbed]).sum(0).double())
            self._add(f"{key}/perturbed", perturbed.sum().double())

    def _progress(self, key: str, seen: int, n: int, budget: int | None, world_size: int) -> None:
        """One line on rank zero as an attack starts on a batch: which images of how many, its accuracy and time so
        far (this rank's share under DDP)."""
        total = self._images if budget is None else min(rank_share(budget, world_size), self._images or math.inf)
        of = f" of {total}" if total is not None and math.isfinite(total) else ""
        so_far = ""
        if seen:
            correct = float(self._sums[f"{key}/correct"])
            so_far = f" (so far {100 * correct / seen:.1f}% of {seen} correct, {self._seconds[key]:.1f} s)"
        label = f"eps curve, PGD at eps {key[len(CURVE) :]}" if key.startswith(CURVE) else key
        rank_zero_info(f"RobustnessEvaluation: {label}: images {seen + 1}-{seen + n}{of}{so_far}")

    def _add(self, name: str, value: Tensor) -> None:
        self._sums[name] = self._sums[name] + value if name in self._sums else value

    def _finish(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Reduces the sums across ranks, logs on every rank and writes the report and figures on rank zero."""
        device = pl_module.device
        # Sums across ranks with trainer.strategy.reduce, not torchmetrics' SumMetric/CatMetric, on purpose:
        # exact float64 counts, some of them vectors (SumMetric flattens to a scalar in float32), held by a
        # callback (no nn.Module carries metric states to the device), reduced in one collective per key at
        # epoch end under any Lightning strategy.
        sums = {k: trainer.strategy.reduce(v.to(device), reduce_op="sum").cpu() for k, v in sorted(self._sums.items())}
        report = self._report(trainer, pl_module, sums)
        self.report = report
        for key, value in report["accuracy"].items():
            pl_module.log(f"test/acc_{key}", value, on_epoch=True, sync_dist=False)
        if not trainer.is_global_zero:
            return
        log_dir = Path(trainer.log_dir or trainer.default_root_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(log_dir / self.report_name, json.dumps(report, indent=2))
        self._write_figures(trainer, log_dir, report)
        rank_zero_info(robustness_table(report, log_dir / self.report_name))

    def _report(self, trainer: L.Trainer, pl_module: L.LightningModule, sums: dict[str, Tensor]) -> dict[str, Any]:
        accuracy, counts, attacks, spectra = {}, {}, {}, {}
        for spec in self.specs:
            count = sums.get(f"{spec.key}/count")
            if count is None or count.item() == 0:
                continue
            accuracy[spec.key] = sums[f"{spec.key}/correct"].item() / count.item()
            counts[spec.key] = int(count.item())
            attacks[spec.key] = spec.describe()
            if f"{spec.key}/spectrum" in sums:
                n = int(sums[f"{spec.key}/perturbed"].item())
                spectra[spec.key] = {
                    "mean_abs_fft": (sums[f"{spec.key}/spectrum"] / n).float().tolist(),
                    "num_images": n,
                    "fft": "mean over perturbed images of |fftshift(fft2(x_adv - x, norm='forward'))|, (C, H, W)",
                }
        curve = None
        keys = [_curve_key(e) for e in self.eps_curve]
        if self.eps_curve and all(f"{k}/count" in sums for k in keys):
            curve = {
                "eps": self.eps_curve,
                "accuracy": [sums[f"{k}/correct"].item() / sums[f"{k}/count"].item() for k in keys],
                "steps": self.eps_curve_steps,
                "step_factor": self.eps_curve_step_factor,
                "num_images": int(sums[f"{keys[0]}/count"].item()),
                "seconds": round(sum(self._seconds.get(k, 0.0) for k in keys), 3),
            }
        net = network_of(pl_module)
        return {
            "schema": "robustrain.robustness/1",
            "checkpoint": str(trainer.ckpt_path) if trainer.ckpt_path else None,
            "model": type(pl_module).__name__,
            "net": type(net).__name__ if net is not pl_module else None,
            "eps": self.eps,
            "accuracy": accuracy,
            "num_images": counts,
            "attacks": attacks,
            "seconds": {k: round(v, 3) for k, v in self._seconds.items() if not k.startswith(CURVE)},
            "accuracy_vs_eps": curve,
            "perturbation_spectrum": spectra,
        }

    def _write_figures(self, trainer: L.Trainer, log_dir: Path, report: dict[str, Any]) -> None:
        figures = {}
        if report["accuracy_vs_eps"] is not None:
            curve = report["accuracy_vs_eps"]
            figures["robustness/accuracy_vs_eps"] = plot_accuracy_vs_eps(
                {report["model"]: (curve["eps"], curve["accuracy"])},
                title=f"PGD-{curve['steps']}, step {curve['step_factor']} * eps / {curve['steps']}",
            )
        if report["perturbation_spectrum"]:
            figures["robustness/perturbation_spectrum"] = plot_spectra(
                {k: v["mean_abs_fft"] for k, v in report["perturbation_spectrum"].items()}
            )
        for tag, figure in figures.items():
            atomic_savefig(figure, log_dir / f"{tag.split('/')[-1]}.png", dpi=100)
            for logger in tensorboard_loggers(trainer):
                logger.experiment.add_figure(tag, figure, global_step=trainer.global_step)
