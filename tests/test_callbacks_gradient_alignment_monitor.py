"""robustrain.callbacks.gradient_alignment_monitor: the measured cosine, a scripted fall that stops, per-step checks."""

from pathlib import Path

import lightning as L
import pytest
import torch
from _stopping_fixtures import RandomDigits, WeightsPerEpoch, assert_same_weights, tiny_module, tiny_trainer

from robustrain.callbacks import GradientAlignmentMonitor
from robustrain.core.train_eval_modes import eval_mode
from robustrain.signals import gradient_alignment
from robustrain.stopping import Rule, read_history_csv
from robustrain.stopping.replay import first_stop, replay


class ScriptedAlignment(GradientAlignmentMonitor):
    """The cosine is scripted per epoch (training itself is real)."""

    COSINES = [0.95, 0.93, 0.96, 0.94, 0.5, 0.1]

    def _measure(self, trainer, pl_module, images, labels, when) -> dict[str, float]:
        return {"cosine": self.COSINES[trainer.current_epoch]}


def test_stops_when_the_alignment_falls_and_hands_back_the_weights_before(tmp_path) -> None:
    L.seed_everything(0)
    weights = WeightsPerEpoch()
    monitor = ScriptedAlignment(eps=0.1, threshold=0.2, window=3, warmup_epochs=0, probe_size=16)
    module = tiny_module(lr=0.05)
    trainer = tiny_trainer(tmp_path, [weights, monitor])
    trainer.fit(module, datamodule=RandomDigits())
    # epoch 4: 0.5 < median(0.93, 0.96, 0.94) - 0.2 = 0.74
    assert monitor.stopped_epoch == 4 and monitor.restored_epoch == 3
    assert_same_weights(module.state_dict(), weights.states[3])
    rows = read_history_csv(Path(trainer.log_dir) / "grad_align_history.csv")
    assert [r["should_stop"] for r in rows] == [False] * 4 + [True]
    assert rows[4]["median"] == pytest.approx(0.94) and rows[4]["limit"] == pytest.approx(0.74)
    # replayed with its own rule, the history gives the callback's decision; a looser rule never stops
    assert first_stop(replay(rows, monitor.rule, kind="probe"))["epoch"] == 4
    looser = Rule(threshold=0.5, window=3, warmup_epochs=0, wait_for_lr_peak=False, direction="fall", scale="absolute")
    assert first_stop(replay(rows, looser, kind="probe")) is None


def test_a_relative_rule_and_a_warm_up_move_the_stop(tmp_path) -> None:
    L.seed_everything(0)
    monitor = ScriptedAlignment(eps=0.1, threshold=0.5, scale="relative", warmup_epochs=5, probe_size=16)
    trainer = tiny_trainer(tmp_path, [monitor])
    trainer.fit(tiny_module(lr=0.05), datamodule=RandomDigits())
    # the 0.5 of epoch 4 is in the warm-up; epoch 5's 0.1 < 0.5 * median(0.96, 0.94, 0.5)
    assert monitor.stopped_epoch == 5


def test_records_the_mean_cosine_of_the_probe_with_a_seeded_noise(tmp_path) -> None:
    L.seed_everything(0)
    module, data = tiny_module(lr=0.05), RandomDigits()
    monitor = GradientAlignmentMonitor(eps=0.2, probe_size=32, probe_seed=3, seed=11, monitor_only=True)
    tiny_trainer(tmp_path, [monitor], max_epochs=1).fit(module, datamodule=data)
    images, labels = data.probe_set(32, seed=3)
    with torch.random.fork_rng(), eval_mode(module.net):
        torch.manual_seed(11)  # seed + 1000003 * epoch 0 + 7919 * rank 0
        expected = gradient_alignment(module.net, images, labels, 0.2).double().mean().item()
    assert monitor.history[0]["cosine"] == pytest.approx(expected, rel=1e-6)
    assert -1 <= monitor.history[0]["cosine"] <= 1


def test_on_the_fly_checks_every_n_steps_without_touching_the_training_stream(tmp_path) -> None:
    L.seed_everything(0)
    plain = tiny_module(lr=0.05)
    tiny_trainer(tmp_path / "a", [], max_epochs=2).fit(plain, datamodule=RandomDigits())
    L.seed_everything(0)
    module = tiny_module(lr=0.05)
    monitor = GradientAlignmentMonitor(
        eps=0.1, every_n_train_steps=2, batch_probe_size=4, probe_size=16, monitor_only=True
    )
    tiny_trainer(tmp_path / "b", [monitor], max_epochs=2).fit(module, datamodule=RandomDigits())
    kinds = [r["kind"] for r in monitor.history]
    assert kinds.count("batch") == 4 and kinds.count("probe") == 2  # 8 steps, every 2nd; 2 epoch ends
    assert_same_weights(module.state_dict(), plain.state_dict())  # the checks changed nothing in training


def test_eps_none_takes_the_modules_eval_eps_and_bad_settings_are_refused() -> None:
    monitor = GradientAlignmentMonitor(every_n_epochs=0, every_n_train_steps=1, decide_on="batch")

    class Module(L.LightningModule):
        eval_eps = 0.3

    monitor.setup(None, Module(), "validate")
    assert monitor.eps == 0.3
    with pytest.raises(ValueError, match="eps=None.*give eps explicitly"):
        GradientAlignmentMonitor().setup(None, L.LightningModule(), "fit")
    for kwargs, match in (
        ({"eps": 0.0}, "eps=0.0"),
        ({"threshold": -1}, "threshold=-1"),
        ({"decide_on": "batch"}, "every_n_train_steps=0"),
        ({"probe_batchnorm": "both"}, "probe_batchnorm='both'"),
        ({"name": "a/b"}, "name='a/b'"),
    ):
        with pytest.raises(ValueError, match=match):
            GradientAlignmentMonitor(**kwargs)
