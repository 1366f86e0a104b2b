"""robustrain.callbacks.abnormal_examples_monitor: the fraction summed from the training steps, a scripted jump that
stops, the per-n-steps series, and a module that counts nothing refused."""

from pathlib import Path

import lightning as L
import pytest
import torch
from _stopping_fixtures import RandomDigits, WeightsPerEpoch, assert_same_weights, tiny_module, tiny_trainer

from robustrain.callbacks import AbnormalExamplesMonitor
from robustrain.data import MNIST5k
from robustrain.models import SmallCNN
from robustrain.stopping import read_history_csv
from robustrain.training import FGSMTraining, StandardTraining

FRACTIONS = [0.02, 0.03, 0.02, 0.04, 0.5, 0.6]  # per epoch; every step of an epoch reports the same fraction


class ScriptedCounts(StandardTraining):
    """A tiny module whose steps report scripted abnormal counts (it trains normally)."""

    def perturb_with_start_loss(self, images, labels):
        return images, None

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        n = len(batch[1])
        return {"loss": loss, "abnormal": torch.tensor(FRACTIONS[self.current_epoch] * n), "examples": n}


def _scripted_module() -> ScriptedCounts:
    template = tiny_module(lr=0.05)
    return ScriptedCounts(net=template.net, optimizer="sgd", lr=0.05, momentum=0.0, lr_schedule="constant", eval_size=0)


def test_stops_when_the_fraction_jumps_and_hands_back_the_weights_before(tmp_path) -> None:
    L.seed_everything(0)
    weights, monitor = WeightsPerEpoch(), AbnormalExamplesMonitor(threshold=0.2, window=3, warmup_epochs=0)
    module = _scripted_module()
    trainer = tiny_trainer(tmp_path, [weights, monitor])
    trainer.fit(module, datamodule=RandomDigits())
    assert monitor.stopped_epoch == 4 and monitor.restored_epoch == 3
    assert_same_weights(module.state_dict(), weights.states[3])
    rows = read_history_csv(Path(trainer.log_dir) / "abnormal_history.csv")
    assert [r["fraction"] for r in rows] == pytest.approx(FRACTIONS[:5])
    assert [r["examples"] for r in rows] == [64.0] * 5  # summed over the epoch's 4 steps of 16
    assert rows[4]["limit"] == pytest.approx(0.03 + 0.2)


def test_per_n_steps_series_and_a_decision_on_it(tmp_path) -> None:
    L.seed_everything(0)
    monitor = AbnormalExamplesMonitor(
        every_n_train_steps=2, decide_on="batch", threshold=0.2, window=3, warmup_epochs=0
    )
    trainer = tiny_trainer(tmp_path, [monitor])
    trainer.fit(_scripted_module(), datamodule=RandomDigits())
    batches = [r for r in monitor.history if r["kind"] == "batch"]
    assert all(r["examples"] == 32.0 for r in batches)  # 2 steps of 16 per record
    stop = next(r for r in monitor.history if r["should_stop"])
    assert stop["kind"] == "batch" and stop["epoch"] == 4 and stop["step"] == 18  # the first record of epoch 4
    assert monitor.restored_epoch == 3


def test_fgsm_training_feeds_it_and_standard_training_is_refused(tmp_path) -> None:
    L.seed_everything(0)
    module = FGSMTraining(net=SmallCNN(), eps=0.3, alpha=0.3, init="zero", optimizer="adam", lr=1e-3, eval_size=0)
    monitor = AbnormalExamplesMonitor(monitor_only=True)
    trainer = tiny_trainer(tmp_path, [monitor], max_epochs=1, limit_train_batches=3)
    trainer.fit(module, datamodule=MNIST5k(batch_size=20, val_size=0))
    assert monitor.history[0]["examples"] == 60.0
    assert monitor.history[0]["fraction"] == pytest.approx(float(trainer.callback_metrics["train/abnormal_fraction"]))
    with pytest.raises(ValueError, match="AbnormalExamplesMonitor needs .* got StandardTraining"):
        tiny_trainer(tmp_path, [AbnormalExamplesMonitor()], max_epochs=1).fit(tiny_module(), datamodule=RandomDigits())
