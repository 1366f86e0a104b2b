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


class _StepOutputs(L.Callback):
    def __init__(self) -> None:
        self.outputs: list = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.outputs.append({k: float(v) for k, v in outputs.items()})


def _fgsm_fit(module, monkeypatch=None) -> tuple[_StepOutputs, L.Trainer]:
    recorder = _StepOutputs()
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        inference_mode=False,
        callbacks=[recorder],
    )
    trainer.fit(module, MNIST5k(batch_size=20))
    return recorder, trainer


def test_fgsm_training_counts_abnormal_examples_from_the_losses_it_computes(monkeypatch):
    import torch

    module = FGSMTraining(net=SmallCNN(), eps=0.3, alpha=0.0, init="zero", optimizer="adam", lr=1e-3, eval_size=0)
    recorder, trainer = _fgsm_fit(module)  # alpha 0: the adversarial images are the start, so no loss falls
    assert [o["abnormal"] for o in recorder.outputs] == [0.0, 0.0, 0.0]
    assert [o["examples"] for o in recorder.outputs] == [20.0, 20.0, 20.0]
    assert float(trainer.callback_metrics["train/abnormal_fraction"]) == 0.0

    module = FGSMTraining(net=SmallCNN(), eps=0.3, alpha=0.3, init="zero", optimizer="adam", lr=1e-3, eval_size=0)
    original = module.perturb_with_start_loss

    def start_above(images, labels):  # every start loss above the adversarial one: all abnormal
        adv, start = original(images, labels)
        return adv, start + 100.0

    monkeypatch.setattr(module, "perturb_with_start_loss", start_above)
    recorder, trainer = _fgsm_fit(module)
    assert [o["abnormal"] for o in recorder.outputs] == [20.0, 20.0, 20.0]
    assert float(trainer.callback_metrics["train/abnormal_fraction"]) == 1.0
    assert torch.is_tensor(module.perturb(torch.rand(2, 1, 28, 28), torch.tensor([0, 1])))


def test_standard_training_returns_a_plain_loss():
    module = StandardTraining(net=SmallCNN(), optimizer="adam", lr=1e-3, eval_size=0)
    recorder, trainer = _fgsm_fit(module)
    assert all(set(o) == {"loss"} for o in recorder.outputs)
    assert "train/abnormal_fraction" not in trainer.callback_metrics


def test_a_step_larger_than_the_radius_and_an_fgsm_step_of_zero_are_warned_about():
    with pytest.warns(UserWarning, match="StandardTraining: eval_alpha=0.5 is larger than eval_eps=0.3"):
        StandardTraining(net=SmallCNN(), eval_eps=0.3, eval_alpha=0.5)
    with pytest.warns(UserWarning, match="alpha=0 takes no attack step: it trains on the random start alone"):
        FGSMTraining(net=SmallCNN(), eps=0.3, alpha=0.0)
    with pytest.warns(UserWarning, match="it trains on the clean images"):
        FGSMTraining(net=SmallCNN(), eps=0.3, alpha=0.0, init="zero")
    with pytest.raises(ValueError, match="eval_restarts=0 is not valid"):
        StandardTraining(net=SmallCNN(), eval_restarts=0)
