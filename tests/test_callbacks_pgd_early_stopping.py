"""robustrain.callbacks.pgd_early_stopping: Wong et al.'s PGD early stop in real runs, its hand-back of weights and its
settings."""

import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from _stopping_fixtures import RandomDigits, WeightsPerEpoch, assert_same_weights, tiny_module, tiny_trainer

from robustrain.callbacks import AliasingMonitor, PGDEarlyStopping
from robustrain.stopping import read_history_csv


def test_pgd_early_stop_without_eps_needs_a_module_that_has_one():
    from robustrain.callbacks import PGDEarlyStopping

    class NoEval(L.LightningModule):
        pass

    with pytest.raises(ValueError, match="eps=None.*give eps explicitly"):
        PGDEarlyStopping().setup(None, NoEval(), "fit")


def test_a_step_larger_than_the_radius_is_warned_about_once_at_setup():
    from robustrain.models import SmallCNN
    from robustrain.training import StandardTraining

    module = StandardTraining(net=SmallCNN(), eval_eps=0.3, eval_alpha=0.03)
    callback = PGDEarlyStopping(alpha=0.9)  # eps: the module's eval_eps
    with pytest.warns(UserWarning, match="PGDEarlyStopping: alpha=0.9 is larger than eps=0.3"):
        callback.setup(None, module, "validate")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        callback.setup(None, module, "validate")  # said once
        PGDEarlyStopping(alpha=0.1).setup(None, module, "validate")


class ScriptedPGD(PGDEarlyStopping):
    """PGDEarlyStopping whose robust accuracy is scripted per epoch (training itself is real)."""

    ACCURACIES = [0.1, 0.3, 0.5, 0.55, 0.2, 0.0]

    def measure_epoch(self, trainer, pl_module) -> dict[str, float]:
        return {"acc": self.ACCURACIES[trainer.current_epoch]}


def test_restores_the_previous_epochs_weights_and_writes_the_history(tmp_path) -> None:
    L.seed_everything(0)
    weights, stopper = WeightsPerEpoch(), ScriptedPGD()
    module = tiny_module(lr=0.05)
    trainer = tiny_trainer(tmp_path, [weights, stopper])
    trainer.fit(module, datamodule=RandomDigits())
    assert stopper.stopped_epoch == 4 and stopper.restored_epoch == 3
    assert_same_weights(module.state_dict(), weights.states[3])
    saved = torch.load(Path(trainer.log_dir) / "pgd_es_stop.ckpt", map_location="cpu", weights_only=False)
    assert_same_weights(saved["state_dict"], weights.states[3])
    rows = read_history_csv(Path(trainer.log_dir) / "pgd_es_history.csv")
    assert [r["acc"] for r in rows] == ScriptedPGD.ACCURACIES[:5]
    assert [r["should_stop"] for r in rows] == [False] * 4 + [True]
    assert rows[4]["median"] == pytest.approx(0.55) and rows[4]["limit"] == pytest.approx(0.35)
    assert (Path(trainer.log_dir) / "pgd_es_curves.png").exists()


def test_side_by_side_only_the_non_monitor_only_callback_stops(tmp_path) -> None:
    L.seed_everything(0)
    weights = WeightsPerEpoch()
    aliasing = AliasingMonitor(monitor="conv1", warmup_epochs=0, threshold=100.0, probe_size=32, monitor_only=True)
    stopper = ScriptedPGD()
    module = tiny_module(lr=0.05)
    trainer = tiny_trainer(tmp_path, [weights, aliasing, stopper])
    trainer.fit(module, datamodule=RandomDigits())
    assert stopper.stopped_epoch == 4 and aliasing.stopped_epoch is None
    # the aliasing monitor measured the model actually trained in epoch 4; the hand-back came after it
    assert [r["epoch"] for r in aliasing.history] == [0, 1, 2, 3, 4]
    assert_same_weights(module.state_dict(), weights.states[3])
    assert not (Path(trainer.log_dir) / "aliasing_stop.ckpt").exists()


def test_pgd_accuracy_with_zero_eps_is_the_clean_accuracy(tmp_path) -> None:
    L.seed_everything(0)
    module, data = tiny_module(lr=0.05), RandomDigits()
    stopper = PGDEarlyStopping(eps=0.0, alpha=0.01, steps=2, source="probe", probe_size=40)
    tiny_trainer(tmp_path, [stopper], max_epochs=1).fit(module, datamodule=data)
    images, labels = data.probe_set(40, seed=0)
    with torch.no_grad():
        clean = (module.net.eval()(images).argmax(1) == labels).float().mean().item()
    assert stopper.history[0]["acc"] == pytest.approx(clean)


def test_check_leaves_the_training_random_stream_and_modes_untouched(tmp_path) -> None:
    L.seed_everything(0)
    module, data = tiny_module(lr=0.05), RandomDigits()
    trainer = tiny_trainer(tmp_path, [], max_epochs=1)
    trainer.fit(module, datamodule=data)
    stopper = PGDEarlyStopping(eps=0.1, alpha=0.05, steps=2, source="probe", probe_size=16)
    stopper.setup(trainer, module, "fit")
    module.train()
    module.net.fc2.eval()
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    stopper.measure_epoch(trainer, module)
    assert torch.equal(torch.rand(3), expected)
    assert module.net.training and module.net.conv1.training and not module.net.fc2.training


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"eps": 2.0}, "eps"),
        ({"max_drop": 0.0}, "max_drop"),
        ({"source": "val"}, "source"),
        ({"probe_size": 0}, "probe_size"),
    ],
)
def test_invalid_arguments_raise_naming_the_parameter(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        PGDEarlyStopping(**kwargs)
