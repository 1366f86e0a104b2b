"""Training modules: each lowers its own training loss on real digits within a few steps."""

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from robustrain.attacks import fgsm, pgd
from robustrain.data import MNIST5k
from robustrain.models import SmallCNN
from robustrain.train_eval_modes import eval_mode
from robustrain.training import FGSMTraining, PGDTraining, StandardTraining

MODULES = {
    "standard": (StandardTraining, {}, lambda net, x, y: x),
    "fgsm": (FGSMTraining, {"eps": 0.1, "alpha": 0.125}, lambda net, x, y: fgsm(net, x, y, 0.1, 0.125, "zero")),
    "pgd": (PGDTraining, {"eps": 0.1, "alpha": 0.04, "steps": 3}, lambda net, x, y: pgd(net, x, y, 0.1, 0.04, 3)),
}


def _fit(module, steps: int, tmp_path):
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=steps,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        inference_mode=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, MNIST5k(batch_size=50, eval_batch_size=100))
    return trainer


@pytest.mark.parametrize("name", MODULES)
def test_training_lowers_the_loss_it_trains_on(name, mnist_batch, tmp_path):
    cls, kwargs, inputs = MODULES[name]
    module = cls(
        net=SmallCNN(),
        optimizer="adam",
        lr=3e-3,
        lr_schedule="constant",
        weight_decay=0.0,
        eval_size=20,
        eval_eps=0.1,
        eval_alpha=0.05,
        eval_steps=2,
        **kwargs,
    )
    x, y = mnist_batch

    def loss():
        with eval_mode(module.net), torch.no_grad():
            return F.cross_entropy(module.net(inputs(module.net, x, y)), y).item()

    before = loss()
    trainer = _fit(module, 40, tmp_path)
    after = loss()
    assert after < 0.8 * before, f"{name}: loss {before:.3f} -> {after:.3f}"
    metrics = trainer.callback_metrics
    for key in ("train/loss", "train/acc", "val/loss", "val/acc", "val/acc_pgd"):
        assert key in metrics and torch.isfinite(metrics[key])
    assert metrics["val/acc_pgd"] <= metrics["val/acc"] + 1e-6


def test_cyclic_schedule_is_sized_from_the_trainer(tmp_path):
    module = StandardTraining(net=SmallCNN(), optimizer="sgd", lr=0.2, lr_schedule="cyclic", eval_size=0)
    lrs = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer = L.Trainer(
        max_epochs=2,
        limit_train_batches=10,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[Record()],
    )
    trainer.fit(module, MNIST5k(batch_size=50))
    assert len(lrs) == 20
    assert lrs[0] == pytest.approx(0.2 / 8) and lrs[7] == pytest.approx(0.2) and lrs[-1] < lrs[10]


def test_hparams_include_the_attack_and_optimiser():
    module = FGSMTraining(net=SmallCNN(), eps=0.3, alpha=0.375, init="random_unclipped", optimizer="adam", lr=5e-3)
    assert {k: module.hparams[k] for k in ("eps", "alpha", "init", "optimizer", "lr")} == {
        "eps": 0.3,
        "alpha": 0.375,
        "init": "random_unclipped",
        "optimizer": "adam",
        "lr": 5e-3,
    }


def test_masking_warning_fires_only_above_the_margin():
    from robustrain.training.robust_classifier import masking_warning

    assert masking_warning(0.87, 0.20, 0.3) is not None and "0.670" in masking_warning(0.87, 0.20, 0.3)
    assert masking_warning(0.85, 0.70, 0.3) is None
    assert masking_warning(0.87, 0.20, None) is None


def test_validation_logs_fgsm_beside_pgd_accuracy_and_the_gap():
    module = FGSMTraining(
        net=SmallCNN(),
        eps=0.3,
        alpha=0.375,
        init="random_unclipped",
        optimizer="adam",
        lr=5e-3,
        eval_eps=0.3,
        eval_alpha=0.1,
        eval_steps=3,
        eval_size=50,
    )
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        inference_mode=False,
    )
    trainer.fit(module, MNIST5k(batch_size=50))
    metrics = trainer.callback_metrics
    assert {"val/acc_fgsm", "val/acc_pgd", "val/masking_gap"} <= set(metrics)
    assert float(metrics["val/masking_gap"]) == pytest.approx(
        float(metrics["val/acc_fgsm"]) - float(metrics["val/acc_pgd"])
    )


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_bad_masking_margin_raises_naming_it(bad):
    with pytest.raises(ValueError, match="masking_margin"):
        FGSMTraining(net=SmallCNN(), masking_margin=bad)


def test_eval_eps_defaults_to_the_training_eps_and_8_255_without_one():
    assert FGSMTraining(net=SmallCNN(), eps=0.2, alpha=0.25).eval_eps == 0.2
    assert PGDTraining(net=SmallCNN(), eps=0.1, eval_eps=0.3).eval_eps == 0.3  # given: kept
    assert StandardTraining(net=SmallCNN()).eval_eps == 8 / 255


def test_pgd_early_stop_without_eps_needs_a_module_that_has_one():
    from robustrain.callbacks import PGDEarlyStopping

    class NoEval(L.LightningModule):
        pass

    with pytest.raises(ValueError, match="eps=None.*give eps explicitly"):
        PGDEarlyStopping().setup(None, NoEval(), "fit")


def test_network_of_is_the_modules_net_or_the_module_itself():
    from torch import nn

    from robustrain.training import network_of

    module = StandardTraining(net=SmallCNN())
    assert network_of(module) is module.net
    plain = nn.Linear(2, 2)
    assert network_of(plain) is plain
