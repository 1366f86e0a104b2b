"""RobustClassifier: the LightningModule every training mode shares (network, loss, optimiser, schedule, metrics).

Subclasses only say how a training batch is perturbed (`perturb`, or `perturb_with_start_loss` for one-step attacks
whose starting loss feeds the abnormal-example signal); evaluation is the same for all: clean loss and accuracy plus
PGD accuracy on a fixed subset of each validation / test epoch. Every attack keeps its images in `input_range`, the
datamodule's (0, 1) or, with injected features, (-beta, 1 + beta).
"""

import functools
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics import MeanMetric, Metric

from robustrain.attacks import UNIT_BOX, check_linf_params, fgsm, pgd, step_warning
from robustrain.core.errors import BadInputError
from robustrain.core.ranks import rank_share
from robustrain.core.train_eval_modes import ATTACK_BATCHNORM_MODES, eval_mode
from robustrain.core.validation import check_choice, check_in_range, check_int
from robustrain.runs.monitoring import log_run_hparams, log_run_outcome, write_layout
from robustrain.signals import abnormal_examples
from robustrain.training.safeguards import Safeguards
from robustrain.training.schedules import LR_SCHEDULES, lr_factor
from robustrain.training.speed import apply_speed_options, compile_options, match_state_layouts

OPTIMIZERS = ("sgd", "adam")


def _built_from_config() -> bool:
    """True while LightningCLI instantiates the module, handing save_hyperparameters the parsed config.

    Private to Lightning, and no public route tells the two cases apart (in both `net` arrives as a module object);
    tests/test_cli.py::test_lightning_still_hands_the_cli_config_to_save_hyperparameters fails if Lightning changes it.
    """
    try:  # without it we simply don't record `net`
        from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
    except ImportError:
        return False
    return _given_hyperparameters.get() is not None


FUSED_DEVICES = ("cpu", "cuda")  # where torch's fused Adam and SGD run (and honour found_inf)


def fused_kernels(requested: bool | None, device_type: str) -> bool:
    """Whether the optimizer uses torch's fused kernels: `fused_optimizer` as given, None meaning on CUDA only.

    Raises:
        BadInputError: for `true` on a device torch has no fused Adam / SGD for.
    """
    if requested is None:
        return device_type == "cuda"
    if requested and device_type not in FUSED_DEVICES:
        raise BadInputError(
            f"model.init_args.fused_optimizer=true is not available on {device_type}: torch has fused Adam and SGD on "
            f"{' and '.join(FUSED_DEVICES)}; leave it unset (null)"
        )
    return bool(requested)


def make_optimizer(
    name: str,
    params: list[nn.Parameter],
    lr: float,
    weight_decay: float,
    momentum: float = 0.0,
    nesterov: bool = False,
    fused: bool = False,
) -> torch.optim.Optimizer:
    """Adam or SGD; `fused`: torch's fused kernels (on `FUSED_DEVICES`): one kernel per step, and an update the
    non-finite guard flags (`found_inf`, as under a GradScaler) is skipped on the device, so the guard needs no host
    sync (robustrain.training.safeguards).

    torch's fused SGD allocates its momentum buffers uninitialised at the first step and fills them there, so a first
    step skipped by found_inf would leave garbage behind; the buffers start as zeros here, which gives the first step's
    own result (buffer = gradient, as dampening is 0) and survives a skip.
    """
    fused = fused or None  # None, not False: torch's own choice of the classic kernels
    if name == "sgd":
        opt = torch.optim.SGD(
            params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov, fused=fused
        )
        if fused and momentum:
            for p in params:
                opt.state[p]["momentum_buffer"] = torch.zeros_like(p)
        return opt
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused)


STAGES = ("train", "val", "test")


def network_of(module: nn.Module) -> nn.Module:
    """The network a LightningModule trains: a RobustClassifier's `net`, any other module itself."""
    return getattr(module, "net", module)


DEFAULT_EVAL_EPS = 8 / 255  # eval_eps of a module without a training eps, when none is given


def masking_warning(acc_fgsm: float, acc_pgd: float, margin: float | None) -> str | None:
    """The warning when FGSM accuracy exceeds PGD accuracy by more than `margin` (None: never), else None."""
    gap = acc_fgsm - acc_pgd
    if margin is None or not gap > margin:
        return None
    return (
        f"val/acc_fgsm {acc_fgsm:.3f} exceeds val/acc_pgd {acc_pgd:.3f} by {gap:.3f} > masking_margin {margin}: the "
        "model resists the one-step attack but not PGD, the sign of gradient masking / catastrophic overfitting "
        "(check it with AutoAttack: configs/eval_robust_mnist5k.yaml)"
    )


class RobustClassifier(Safeguards):
    """Image classifier trained with cross-entropy on (possibly perturbed) [0, 1] images.

    Args:
        net: The network (its first layer normalises [0, 1] inputs), e.g. robustrain.models.SmallCNN.
        optimizer: "sgd" or "adam".
        lr: Peak learning rate (the schedule multiplies it).
        momentum: SGD momentum (ignored by Adam).
        weight_decay: L2 weight decay.
        nesterov: Nesterov momentum for SGD.
        lr_schedule: "cyclic" (Wong et al.), "piecewise" (Rice et al.), "cosine" or "constant", stepped every batch.
        cyclic_peak: Fraction of training at which the cyclic schedule peaks.
        eval_eps: L-inf radius of the PGD evaluation (val/acc_pgd, test/acc_pgd) in [0, 1] pixel units. None: the
            training radius `train_eps` (FGSMTraining's and PGDTraining's `eps`), so one override moves both; modules
            without one (StandardTraining, WorstOfKSpatialTraining) then use 8/255. Give it explicitly to train and
            evaluate at different radii. The value in force is `self.eval_eps`.
        eval_alpha: PGD evaluation step size.
        eval_steps: PGD evaluation steps.
        eval_restarts: PGD evaluation random restarts (an example counts as broken if any restart fools it).
        eval_size: Images per validation / test epoch attacked with PGD (the first ones of the loader, which is not
            shuffled, so the subset is fixed); 0 disables PGD evaluation.
        eval_fgsm: Also log `<stage>/acc_fgsm`: plain FGSM (zero start, one step of eval_eps) on the same images.
        masking_margin: Warn at a validation epoch whose FGSM accuracy exceeds its PGD accuracy by more than this
            (fraction, 0.3 = 30 points): the classic sign of gradient masking / catastrophic overfitting. The gap is
            logged as `val/masking_gap`. None disables the warning.
        attack_bn_mode: BatchNorm mode while training attacks are generated: "train" (batch statistics, Wong et al.)
            or "eval" (running statistics). Every submodule's mode is restored afterwards.
        fused_optimizer: Use torch's fused Adam / SGD kernels: one kernel per step, and the non-finite guard then
            skips a flagged update on the device, without a host sync (robustrain.training.safeguards). None: fused on
            CUDA, where a sync stalls the GPU; elsewhere the classic kernels, with which every recorded CPU figure was
            made (the two differ in the last bits, enough to move a chaotic run such as a collapse by an epoch). True
            on the CPU gives the sync-free path there too.
        channels_last: Keep the network's weights in channels-last memory format (NHWC strides): its convolutions
            then run, and hand on their outputs, in that format (faster on tensor-core GPUs, above all under
            bf16-mixed). The batches stay as the data gives them, so the attacks draw their random starts in the same
            order as without it: the same training up to float rounding.
        compile: torch.compile the network in place (`nn.Module.compile`): false, true (torch's defaults) or a
            mapping of torch.compile arguments, e.g. {mode: max-autotune} or {backend: aot_eager}. The training
            attacks, the evaluation attacks and the callbacks' probes all call the compiled network; parameter names
            and checkpoints are unchanged. The first steps pay the compilation (reported by benchmarks.framework).
        train_eps: The training radius of a subclass that has one (FGSMTraining and PGDTraining pass their `eps`);
            None for modules that train without an L-inf radius. Only the default of `eval_eps`; subclasses give it,
            so it is no configuration key of theirs (and no hyperparameter).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Literal["sgd", "adam"] = "sgd",
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        nesterov: bool = False,
        lr_schedule: Literal["cyclic", "piecewise", "cosine", "constant"] = "cyclic",
        cyclic_peak: float = 0.4,
        eval_eps: float | None = None,
        eval_alpha: float = 2 / 255,
        eval_steps: int = 10,
        eval_restarts: int = 1,
        eval_size: int = 1000,
        eval_fgsm: bool = True,
        masking_margin: float | None = 0.3,
        attack_bn_mode: Literal["train", "eval"] = "train",
        fused_optimizer: bool | None = None,
        channels_last: bool = False,
        compile: bool | dict[str, Any] = False,
        *,
        train_eps: float | None = None,
    ) -> None:
        super().__init__()
        check_choice("optimizer", optimizer, OPTIMIZERS)
        check_in_range("lr", lr, 0.0, low_open=True)
        check_choice("lr_schedule", lr_schedule, LR_SCHEDULES)
        lr_factor(lr_schedule, 0, 1, cyclic_peak)  # validates cyclic_peak
        check_int("eval_size", eval_size, 0)  # 0 disables PGD evaluation
        if masking_margin is not None:
            check_in_range("masking_margin", masking_margin, 0.0, 1.0, note="(a gap in accuracy) or None")
        check_choice("attack_bn_mode", attack_bn_mode, ATTACK_BATCHNORM_MODES)
        self._compile_kwargs = compile_options(compile)
        # Built by the CLI, `net` (and a regularizer) arrives with its config ({class_path, init_args}): keep it, so
        # checkpoints rebuild their own network (`load_from_checkpoint`, `train.py test --ckpt_path`). Built in
        # Python, it is a module object, which is no hyperparameter.
        self.save_hyperparameters(ignore=["train_eps"] if _built_from_config() else ["net", "regularizer", "train_eps"])
        default_eps = DEFAULT_EVAL_EPS if train_eps is None else train_eps
        self.eval_eps = default_eps if eval_eps is None else eval_eps
        check_linf_params(self.eval_eps, eval_alpha, eval_steps, eval_restarts, prefix="eval_")
        if eval_size and (warning := step_warning(type(self).__name__, self.eval_eps, eval_alpha, prefix="eval_")):
            rank_zero_warn(warning)
        self.net = net
        # torchmetrics checks every update for nan by default, a host sync per update; a non-finite training loss is
        # the non-finite guard's to report (robustrain.training.safeguards), so the metrics skip the check
        self.metrics = nn.ModuleDict(
            {
                f"{stage}_{name}": MeanMetric(nan_strategy="disable")
                for stage in STAGES
                for name in ("loss", "acc", "acc_pgd", "acc_fgsm")
            }
        )
        self.metrics["train_abnormal_fraction"] = MeanMetric(nan_strategy="disable")
        self._eval_attacked = 0  # images attacked so far in this evaluation epoch, on this rank
        self._logged_this_epoch: set[str] = set()  # the metric objects logged in this epoch (_log_metric)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def configure_model(self) -> None:
        # Lightning calls this before it moves the module to its device (which keeps the memory format)
        apply_speed_options(self.net, self.hparams.get("channels_last", False), self._compile_kwargs)

    def on_train_start(self) -> None:
        # a run resumed with another `channels_last` than it was saved with: the optimizer's state (momentum, Adam's
        # moments) comes back in the saved layout, and fused kernels need the parameters' own
        super().on_train_start()
        for optimizer in self.trainer.optimizers:
            match_state_layouts(optimizer)

    @property
    def input_range(self) -> tuple[float, float]:
        """(lowest, highest) pixel value of the data, which every attack keeps its images in: the datamodule's
        `input_range` ((0, 1), or (-beta, 1 + beta) with injected features), (0, 1) without one."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        return tuple(getattr(datamodule, "input_range", UNIT_BOX))

    # --- training -------------------------------------------------------------------------------------------------
    def perturb(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The images the network is trained on; the standard module trains on the clean ones."""
        return images

    def perturb_with_start_loss(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(`perturb`'s images, the per-example loss where a one-step attack started, or None): FGSMTraining gives the
        loss its attack computed anyway, from which the training step counts Lin et al.'s abnormal examples."""
        return self.perturb(images, labels), None

    def regularization(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        """A term added to the training loss (the single-step methods' GradAlign / ELLE); None: none."""
        return None

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor | dict:
        images, labels = batch
        inputs, start_loss = self.perturb_with_start_loss(images, labels)
        logits = self.net(inputs)
        if start_loss is None:
            loss = F.cross_entropy(logits, labels)
            self._update("train", loss, logits, labels)  # train/loss: the cross-entropy alone, without a penalty
            return self._with_regularization(loss, images, labels)
        losses = F.cross_entropy(logits, labels, reduction="none")
        loss = losses.mean()
        self._update("train", loss, logits, labels)
        loss = self._with_regularization(loss, images, labels)
        abnormal = abnormal_examples(start_loss, losses.detach())  # (B,) bool, free: both losses are computed
        metric = self.metrics["train_abnormal_fraction"]
        metric.update(abnormal.float())
        self._log_metric("train/abnormal_fraction", metric)
        # the step's counts, for robustrain.callbacks.AbnormalExamplesMonitor (it sums them over its checks and ranks)
        return {"loss": loss, "abnormal": abnormal.sum().detach(), "examples": len(labels)}

    def _with_regularization(self, loss: torch.Tensor, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        extra = self.regularization(images, labels)
        return loss if extra is None else loss + extra

    # --- evaluation -----------------------------------------------------------------------------------------------
    def _eval_budget(self) -> int:
        """PGD evaluation images for this rank, so all ranks together attack eval_size images."""
        return rank_share(self.hparams.eval_size, self.trainer.world_size) if self._trainer else self.hparams.eval_size

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        images, labels = batch
        logits = self.net(images)
        self._update(stage, F.cross_entropy(logits, labels), logits, labels)
        n = min(self._eval_budget() - self._eval_attacked, len(labels))
        if n > 0:
            adv = self.attack_pgd(images[:n], labels[:n])
            with torch.no_grad():
                correct = (self.net(adv).argmax(1) == labels[:n]).float()
            self.metrics[f"{stage}_acc_pgd"].update(correct)
            self._log_metric(f"{stage}/acc_pgd", self.metrics[f"{stage}_acc_pgd"], prog_bar=True)
            if self.hparams.get("eval_fgsm", False):
                adv = self.attack_fgsm(images[:n], labels[:n])
                with torch.no_grad():
                    correct = (self.net(adv).argmax(1) == labels[:n]).float()
                self.metrics[f"{stage}_acc_fgsm"].update(correct)
                self._log_metric(f"{stage}/acc_fgsm", self.metrics[f"{stage}_acc_fgsm"], prog_bar=True)
            self._eval_attacked += n

    def attack_pgd(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """PGD with the evaluation settings, the network in eval mode (modes restored afterwards)."""
        hp = self.hparams
        with eval_mode(self.net):
            return pgd(
                self.net,
                images,
                labels,
                self.eval_eps,
                hp.eval_alpha,
                hp.eval_steps,
                restarts=hp.eval_restarts,
                box=self.input_range,
            )

    def attack_fgsm(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Plain FGSM (zero start, step eval_eps), the network in eval mode: the cheap attack a masked model resists."""
        with eval_mode(self.net):
            return fgsm(self.net, images, labels, self.eval_eps, self.eval_eps, init="zero", box=self.input_range)

    def on_validation_epoch_start(self) -> None:
        self._eval_attacked = 0
        self._logged_this_epoch -= {name for name in self._logged_this_epoch if not name.startswith("train/")}

    on_test_epoch_start = on_validation_epoch_start

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._logged_this_epoch -= {name for name in self._logged_this_epoch if name.startswith("train/")}

    def _log_metric(self, name: str, metric: Metric, prog_bar: bool = False) -> None:
        """Log a torchmetrics object for its epoch value, once per epoch: Lightning computes it (reduced across ranks
        by torchmetrics) and resets it at the epoch's end from the state every step updates. Logging it at every step
        would make Lightning move the metric to its device each time (`_ResultMetric.to`, about 0.8 ms on a CPU: a
        third of the framework's cost on SmallCNN's 10 ms step, benchmarks.framework) for nothing."""
        if name not in self._logged_this_epoch:
            self._logged_this_epoch.add(name)
            self.log(name, metric, on_step=False, on_epoch=True, prog_bar=prog_bar)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.net(batch[0]).argmax(1)

    # --- monitoring -----------------------------------------------------------------------------------------------
    def tensorboard_charts(self) -> dict[str, dict[str, list]]:
        """This module's custom-scalar charts (see robustrain.runs.monitoring): one quantity per chart, or a line with a
        band (a Margin chart), since TensorBoard colours the lines of a chart by run, not by tag."""
        return {
            "robustness": {
                "val/acc_pgd, the band up to val/acc_fgsm: the masking gap": [
                    "Margin",
                    ["val/acc_pgd", "val/acc_pgd", "val/acc_fgsm"],
                ],
                "val/acc: clean accuracy": ["Multiline", ["^val/acc$"]],
                "train/loss: on the training attack": ["Multiline", ["^train/loss$"]],
                "val/loss: clean": ["Multiline", ["^val/loss$"]],
            }
        }

    def setup(self, stage: str) -> None:
        # before Lightning's own hparams record: TensorBoard's HPARAMS tab shows a run's first record
        if stage == "fit" and self._trainer is not None:
            write_layout(self.trainer, self.tensorboard_charts())
            log_run_hparams(self.trainer, self)

    def on_fit_end(self) -> None:
        log_run_outcome(self.trainer)

    def unlogged_reason(self, key: str) -> str | None:
        if key.startswith("val/") and getattr(self.trainer.datamodule, "val_size", None) == 0:
            return "data.init_args.val_size=0 turns validation off; hold out validation images or monitor another key"
        attacked = ("val/acc_pgd", "val/acc_fgsm", "val/masking_gap")
        if key in attacked and self.hparams.eval_size == 0:
            return "model.init_args.eval_size=0 turns the attacked evaluation off; set eval_size > 0 or monitor val/acc"
        if key in attacked[1:] and not self.hparams.get("eval_fgsm", False):
            return "model.init_args.eval_fgsm is false; set it true or monitor val/acc_pgd"
        return None

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        # TensorBoard's hparams view shows `hp_metric`: make it the number runs are selected by.
        key = "val/acc_pgd" if self.hparams.eval_size else "val/acc"
        value = self.trainer.callback_metrics.get(key)
        if value is not None:
            self.log("hp_metric", value)
        self._check_masking()

    def _check_masking(self) -> None:
        """Log val/masking_gap = acc_fgsm - acc_pgd and warn when it exceeds masking_margin."""
        metrics = self.trainer.callback_metrics
        acc_fgsm, acc_pgd = metrics.get("val/acc_fgsm"), metrics.get("val/acc_pgd")
        if acc_fgsm is None or acc_pgd is None:
            return
        self.log("val/masking_gap", float(acc_fgsm) - float(acc_pgd))
        warning = masking_warning(float(acc_fgsm), float(acc_pgd), self.hparams.get("masking_margin"))
        if warning:
            rank_zero_warn(f"epoch {self.current_epoch}: {warning}")

    def _update(self, stage: str, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        loss_metric, acc_metric = self.metrics[f"{stage}_loss"], self.metrics[f"{stage}_acc"]
        loss_metric.update(loss.detach(), weight=len(labels))
        acc_metric.update((logits.detach().argmax(1) == labels).float())
        on_step = stage == "train"
        # the bar shows train/loss and val/acc (beside val/acc_pgd, val/acc_fgsm and the stops' values and limits)
        self._log_metric(f"{stage}/loss", loss_metric, prog_bar=stage == "train")
        self._log_metric(f"{stage}/acc", acc_metric, prog_bar=stage != "train")
        if on_step:
            self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False)
            self._last_train_loss = loss.detach()  # named by the non-finite guard, read only if it fires

    # --- optimisation ---------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        fused = fused_kernels(hp.get("fused_optimizer"), self.device.type)
        opt = make_optimizer(
            hp.optimizer, list(self.parameters()), hp.lr, hp.weight_decay, hp.momentum, hp.nesterov, fused
        )
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        factor = functools.partial(lr_factor, hp.lr_schedule, total_steps=total, cyclic_peak=hp.cyclic_peak)
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
