"""robustrain.callbacks.masking_gap_monitor: the FGSM-PGD gap read from validation, a scripted jump that stops."""

from pathlib import Path

import lightning as L
import pytest
from _stopping_fixtures import WeightsPerEpoch, assert_same_weights, tiny_trainer

from robustrain.callbacks import MaskingGapMonitor
from robustrain.data import MNIST5k
from robustrain.models import SmallCNN
from robustrain.stopping import read_history_csv
from robustrain.training import StandardTraining

ACCURACIES = [(0.3, 0.2), (0.5, 0.3), (0.6, 0.4), (0.7, 0.45), (0.95, 0.05), (0.99, 0.0)]  # (FGSM, PGD) per epoch


class ScriptedValidation(StandardTraining):
    """Trains normally; its validation reports scripted FGSM and PGD accuracies."""

    def validation_step(self, batch, batch_idx):
        acc_fgsm, acc_pgd = ACCURACIES[self.current_epoch]
        self.log("val/acc_fgsm", acc_fgsm)
        self.log("val/acc_pgd", acc_pgd)


def _fit(tmp_path, monitor):
    module = ScriptedValidation(net=SmallCNN(), optimizer="sgd", lr=0.01, lr_schedule="constant", eval_size=10)
    weights = WeightsPerEpoch()
    trainer = tiny_trainer(tmp_path, [weights, monitor], limit_train_batches=2, limit_val_batches=1)
    trainer.fit(module, datamodule=MNIST5k(batch_size=20, eval_batch_size=20))
    return module, weights, trainer


def test_stops_when_the_gap_jumps_and_hands_back_the_weights_before(tmp_path) -> None:
    L.seed_everything(0)
    monitor = MaskingGapMonitor(threshold=0.3, window=3, warmup_epochs=0)
    module, weights, trainer = _fit(tmp_path, monitor)
    # gaps 0.1, 0.2, 0.2, 0.25, 0.9: 0.9 > median(0.2, 0.2, 0.25) + 0.3
    assert monitor.stopped_epoch == 4 and monitor.restored_epoch == 3
    assert_same_weights(module.state_dict(), weights.states[3])
    rows = read_history_csv(Path(trainer.log_dir) / "masking_gap_history.csv")
    assert [r["gap"] for r in rows] == pytest.approx([0.1, 0.2, 0.2, 0.25, 0.9])
    assert rows[4]["limit"] == pytest.approx(0.5)


def test_a_module_without_fgsm_evaluation_is_refused(tmp_path) -> None:
    module = StandardTraining(net=SmallCNN(), eval_size=10, eval_fgsm=False)
    trainer = tiny_trainer(tmp_path, [MaskingGapMonitor()], max_epochs=1, limit_train_batches=1)
    with pytest.raises(ValueError, match="MaskingGapMonitor reads .*eval_fgsm is false"):
        trainer.fit(module, datamodule=MNIST5k(batch_size=20))
