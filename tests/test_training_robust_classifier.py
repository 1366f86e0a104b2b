"""robustrain.training.robust_classifier: the schedule's size, masking warnings, FGSM beside PGD accuracy, eval_eps,
network_of."""

import lightning as L
import pytest

from robustrain.data import MNIST5k
from robustrain.models import SmallCNN
from robustrain.training import FGSMTraining, PGDTraining, StandardTraining


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


def test_network_of_is_the_modules_net_or_the_module_itself():
    from torch import nn

    from robustrain.training import network_of

    module = StandardTraining(net=SmallCNN())
    assert network_of(module) is module.net
    plain = nn.Linear(2, 2)
    assert network_of(plain) is plain
