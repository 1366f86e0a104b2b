"""No host sync in a steady-state training step (FGSM, N-FGSM, PGD training with the main job's stops), and the
non-finite guard that made that possible: it flags on the device, skips the update there, and stops the run at its
next scheduled read naming the first bad step."""

import math

import lightning as L
import pytest
import torch
import yaml
from _host_syncs import SyncCounter
from conftest import REPO

from robustrain.cli import main
from robustrain.core.errors import BadInputError, NonFiniteError
from robustrain.data import MNIST5k
from robustrain.models import SmallCNN
from robustrain.training import FGSMTraining
from robustrain.training.robust_classifier import fused_kernels, make_optimizer

STEPS = 12
LOG_EVERY = 5
SHORT = [
    "--trainer.max_epochs", "1",
    "--trainer.limit_train_batches", str(STEPS),
    "--trainer.limit_val_batches", "1",
    "--trainer.log_every_n_steps", str(LOG_EVERY),
    "--trainer.enable_progress_bar", "false",
    "--model.init_args.eval_size", "10",
    "--model.init_args.eval_steps", "1",
    "--model.init_args.fused_optimizer", "true",  # the default on CUDA; on the CPU the classic kernels are
]  # fmt: skip


def _main_job_stops(tmp_path) -> str:
    """A config overlay holding the main job's five stop callbacks (configs/co_demo_mnist5k.yaml)."""
    demo = yaml.safe_load((REPO / "configs/co_demo_mnist5k.yaml").read_text())
    overlay = tmp_path / "stops.yaml"
    overlay.write_text(yaml.safe_dump({"trainer": {"callbacks": demo["trainer.callbacks"]}}))
    return str(overlay)


@pytest.mark.parametrize(
    "configs",
    [
        ["configs/co_demo_mnist5k.yaml"],  # FGSM, the main job
        ["configs/co_lab/smallcnn_injected.yaml", "configs/co_lab/methods/nfgsm.yaml", "STOPS"],  # N-FGSM
        ["configs/mnist5k_pgd.yaml", "STOPS"],  # PGD-10 training
        ["configs/mnist5k_fgsm.yaml", "STOPS", "SGD"],  # the fused SGD path
    ],
    ids=["fgsm-main-job", "nfgsm", "pgd", "fgsm-sgd-momentum"],
)
def test_a_steady_state_training_step_makes_no_host_sync(in_tmp, configs):
    args = []
    for name in configs:
        if name == "STOPS":
            args += ["--config", _main_job_stops(in_tmp)]
        elif name == "SGD":
            args += ["--model.init_args.optimizer", "sgd", "--model.init_args.momentum", "0.9"]
        else:
            args += ["--config", str(REPO / name)]
    cli = main([*args, *SHORT], run=False)
    counter = SyncCounter()
    cli.trainer.callbacks.insert(0, counter.first)
    cli.trainer.callbacks.append(counter.last)
    cli.trainer.fit(cli.model, cli.datamodule)
    assert sorted(counter.per_step) == list(range(1, STEPS + 1))  # every step was counted
    # first-batch probes (PGDEarlyStopping keeps the epoch's first batch) and Lightning's log steps are scheduled
    steady = {step: syncs for step, syncs in counter.per_step.items() if step > 1 and step % LOG_EVERY}
    assert steady and all(not syncs for syncs in steady.values()), {s: v for s, v in steady.items() if v}


def _module(optimizer: str, fused: bool | None = True) -> FGSMTraining:
    kwargs = {"momentum": 0.9} if optimizer == "sgd" else {}
    return FGSMTraining(
        net=SmallCNN(), eps=0.3, alpha=0.375, optimizer=optimizer, lr=1e-3, lr_schedule="constant", eval_size=0,
        fused_optimizer=fused, **kwargs,
    )  # fmt: skip


def _fit_poisoned(module: FGSMTraining, poison: L.Callback, tmp_path) -> L.Trainer:
    """Fit 20 steps of digits with `poison` (its hook runs before the module's guard: callbacks' hooks come first),
    Lightning logging every 10 steps; returns the trainer once the guard has stopped the run."""
    trainer = L.Trainer(
        max_epochs=1, limit_train_batches=20, limit_val_batches=0, log_every_n_steps=10, callbacks=[poison],
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        inference_mode=False, default_root_dir=tmp_path,
    )  # fmt: skip
    with pytest.raises(NonFiniteError, match=r"non-finite gradients at epoch 0, step 6 \(training loss \d"):
        trainer.fit(module, MNIST5k(batch_size=50))
    return trainer


class PoisonGradientAt(L.Callback):
    """Sets one gradient to nan before the optimizer step of global step `step`, and records the weights before it."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.before: dict[str, torch.Tensor] | None = None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step == self.step:
            self.before = {k: v.detach().clone() for k, v in pl_module.net.state_dict().items()}
            next(pl_module.net.parameters()).grad[0] = math.nan


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_non_finite_gradient_skips_the_update_on_the_device_and_stops_at_the_next_read(tmp_path, optimizer):
    module = _module(optimizer)
    poison = PoisonGradientAt(step=6)
    trainer = _fit_poisoned(module, poison, tmp_path)
    # read where Lightning logs, after step 10: steps 6-9 ran with their updates skipped
    assert trainer.global_step == 10
    optimizer_ = trainer.optimizers[0]
    assert all(group["fused"] for group in optimizer_.param_groups)
    for key, value in module.net.state_dict().items():  # the weights of before the bad step, all finite
        assert torch.equal(value, poison.before[key]), key


def test_a_skipped_first_step_leaves_fused_sgd_as_a_fresh_optimizer():
    """torch's fused SGD allocates its momentum buffers uninitialised at the first step; robustrain gives it zeros, so a
    first step skipped by found_inf leaves nothing behind and the next step equals a fresh optimizer's first step."""
    torch.manual_seed(0)
    params = list(SmallCNN().parameters())
    opt = make_optimizer("sgd", params, lr=1e-3, weight_decay=5e-4, momentum=0.9, fused=True)
    start = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.full_like(p, math.nan)
    opt.found_inf = torch.ones(())
    opt.step()
    assert all(torch.equal(p, s) for p, s in zip(params, start, strict=True))
    grads = [torch.randn_like(p) for p in params]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    opt.found_inf = torch.zeros(())
    opt.step()
    fresh = [torch.nn.Parameter(s.clone()) for s in start]
    reference = torch.optim.SGD(fresh, lr=1e-3, momentum=0.9, weight_decay=opt.defaults["weight_decay"])
    for p, g in zip(fresh, grads, strict=True):
        p.grad = g.clone()
    reference.step()
    for p, q in zip(params, fresh, strict=True):
        torch.testing.assert_close(p.detach(), q.detach())


def test_the_cpu_keeps_the_classic_kernels_unless_asked_and_their_guard_stops_at_the_bad_step(tmp_path):
    """Unfused (the CPU's default), the guard reads its flag at every step: the run stops at the bad step itself."""
    trainer = _fit_poisoned(_module("adam", fused=None), PoisonGradientAt(step=6), tmp_path)
    assert trainer.global_step == 6 and not any(g["fused"] for g in trainer.optimizers[0].param_groups)


def test_fused_kernels_default_to_cuda_only_and_refuse_a_device_without_them():
    assert fused_kernels(None, "cuda") and not fused_kernels(None, "cpu") and not fused_kernels(None, "mps")
    assert fused_kernels(True, "cpu") and not fused_kernels(False, "cuda")
    with pytest.raises(
        BadInputError, match="fused_optimizer=true is not available on xpu: torch has fused Adam and SGD"
    ):
        fused_kernels(True, "xpu")
