"""Tests of AliasingMonitor in real (tiny) Lightning runs: stop epoch, restored weights, files, resume, DDP."""

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning as L
import pytest
import torch
from _stopping_fixtures import (
    RandomDigits,
    ScaleWeightAt,
    WeightsPerEpoch,
    assert_same_weights,
    tiny_module,
    tiny_trainer,
)

from robustrain.aliasing import measure_model_aliasing
from robustrain.callbacks import AliasingMonitor
from robustrain.core.errors import NonFiniteError
from robustrain.stopping import Rule, read_history_csv
from robustrain.stopping.replay import replay

RULE = dict(monitor="conv1", threshold=0.33, window=3, warmup_epochs=2, probe_size=32)


@pytest.fixture(scope="module")
def jump_run(tmp_path_factory):
    """6 epochs at lr 1e-6 (aliasing ~constant); conv1's weights are tripled at the start of epoch 4."""
    tmp_path = tmp_path_factory.mktemp("jump")
    L.seed_everything(0)
    weights, monitor = WeightsPerEpoch(), AliasingMonitor(**RULE)
    module = tiny_module()
    trainer = tiny_trainer(tmp_path, [ScaleWeightAt(4, 3.0), weights, monitor])
    trainer.fit(module, datamodule=RandomDigits())
    return trainer, module, monitor, weights


def test_stops_at_the_epoch_aliasing_jumps(jump_run) -> None:
    trainer, _, monitor, _ = jump_run
    assert monitor.stopped_epoch == 4
    assert [r["epoch"] for r in monitor.history] == [0, 1, 2, 3, 4]
    assert [r["should_stop"] for r in monitor.history] == [False] * 4 + [True]
    assert monitor.history[4]["value"] == pytest.approx(3 * monitor.history[3]["value"], rel=0.02)  # bias not scaled
    assert "exceeds the median" in monitor.stopping_reason_message


def test_restored_weights_equal_the_pre_jump_epochs(jump_run) -> None:
    trainer, module, monitor, weights = jump_run
    assert monitor.restored_epoch == 3
    assert_same_weights(module.state_dict(), weights.states[3])
    saved = torch.load(monitor.stop_checkpoint_path, map_location="cpu", weights_only=False)
    assert_same_weights(saved["state_dict"], weights.states[3])
    assert Path(monitor.stop_checkpoint_path) == Path(trainer.log_dir) / "aliasing_stop.ckpt"


def test_history_csv_and_figure_are_written_to_the_log_dir(jump_run) -> None:
    trainer, _, monitor, _ = jump_run
    rows = read_history_csv(Path(trainer.log_dir) / "aliasing_history.csv")
    assert [r["should_stop"] for r in rows] == [r["should_stop"] for r in monitor.history]
    assert {"epoch", "step", "conv1", "conv2", "mean", "value", "median", "limit", "reason"} <= rows[0].keys()
    assert (Path(trainer.log_dir) / "aliasing_curves.png").stat().st_size > 1000
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(trainer.log_dir))


def test_replay_reproduces_the_logged_decisions(jump_run) -> None:
    trainer, _, monitor, _ = jump_run
    rows = read_history_csv(Path(trainer.log_dir) / "aliasing_history.csv")
    decisions = replay(rows, Rule(threshold=0.33, window=3, warmup_epochs=2))
    for row, decision in zip(rows, decisions, strict=True):
        assert decision["should_stop"] == row["should_stop"]
        assert decision["median"] == pytest.approx(row["median"], nan_ok=True)
        assert decision["limit"] == pytest.approx(row["limit"], nan_ok=True)
    # a higher threshold would not have stopped at the tripling (+200%)
    assert not any(d["should_stop"] for d in replay(rows, Rule(threshold=2.5, window=3, warmup_epochs=2)))


def test_probe_value_is_the_measure_over_the_probe_set(tmp_path) -> None:
    L.seed_everything(0)
    module, data = tiny_module(), RandomDigits()
    monitor = AliasingMonitor(probe_size=32, probe_seed=3)
    tiny_trainer(tmp_path, [monitor], max_epochs=1).fit(module, datamodule=data)
    probe, _ = data.probe_set(32, seed=3)
    expected = measure_model_aliasing(module.net, probe)
    assert monitor.history[0]["conv1"] == pytest.approx(expected["conv1"], rel=1e-6)
    assert monitor.history[0]["mean"] == pytest.approx((expected["conv1"] + expected["conv2"]) / 2, rel=1e-6)


def test_monitor_only_records_the_stop_but_trains_on(tmp_path) -> None:
    L.seed_everything(0)
    weights, monitor = WeightsPerEpoch(), AliasingMonitor(**RULE, monitor_only=True)
    module = tiny_module()
    trainer = tiny_trainer(tmp_path, [ScaleWeightAt(4, 3.0), weights, monitor])
    trainer.fit(module, datamodule=RandomDigits())
    assert trainer.current_epoch == 6 and monitor.stopped_epoch is None
    # the jump persists, so epoch 5 would stop too (its window still holds two pre-jump values)
    assert [r["should_stop"] for r in monitor.history] == [False] * 4 + [True, True]
    assert_same_weights(module.state_dict(), weights.states[5])
    assert not (Path(trainer.log_dir) / "aliasing_stop.ckpt").exists()


def test_non_finite_weights_stop_at_the_guard_before_the_monitor(tmp_path) -> None:
    """NaN weights give NaN gradients at the first step: the module's guard stops training there, before the
    monitor's epoch-end check (which stops on a non-finite value as well: tests/test_stopping_rules.py)."""
    L.seed_everything(0)
    monitor = AliasingMonitor(**RULE)
    trainer = tiny_trainer(tmp_path, [ScaleWeightAt(1, math.nan), monitor])
    with pytest.raises(NonFiniteError, match="non-finite gradients at epoch 1, step 4"):
        trainer.fit(tiny_module(), datamodule=RandomDigits())
    assert [r["epoch"] for r in monitor.history] == [0]


def test_on_the_fly_measures_every_n_steps_and_keeps_module_modes(tmp_path) -> None:
    L.seed_everything(0)
    module = tiny_module()
    module.net.fc2.eval()  # a submodule deliberately in eval mode must stay so
    seen = []

    class ModeProbe(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args) -> None:
            seen.append((pl_module.net.training, pl_module.net.conv1.training, pl_module.net.fc2.training))

    monitor = AliasingMonitor(**RULE, every_n_train_steps=2)
    tiny_trainer(tmp_path, [monitor, ModeProbe()], max_epochs=2).fit(module, datamodule=RandomDigits())
    batch = [r for r in monitor.history if r["kind"] == "batch"]
    assert [r["step"] for r in batch] == [2, 4, 6, 8]  # 4 steps per epoch
    assert all(r["conv1"] > 0 for r in batch)
    assert [r["kind"] for r in monitor.history].count("probe") == 2
    assert set(seen) == {(True, True, False)}


def test_on_the_fly_check_measures_the_first_batch_probe_size_images(tmp_path) -> None:
    L.seed_everything(0)
    module = tiny_module()
    expected = []

    class FirstThree(L.Callback):  # runs just before the monitor, on the same weights and batch
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            expected.append(measure_model_aliasing(pl_module.net, batch[0][:3]))

    monitor = AliasingMonitor(**RULE, every_n_train_steps=1, batch_probe_size=3)
    tiny_trainer(tmp_path, [FirstThree(), monitor], max_epochs=1).fit(module, datamodule=RandomDigits())
    batch = [r for r in monitor.history if r["kind"] == "batch"]
    assert len(batch) == len(expected) == 4
    for record, values in zip(batch, expected):
        assert record["conv1"] == pytest.approx(values["conv1"], rel=1e-6)


def test_decides_on_the_fly_when_asked(tmp_path) -> None:
    L.seed_everything(0)
    weights = WeightsPerEpoch()
    monitor = AliasingMonitor(**(RULE | {"warmup_epochs": 1}), every_n_train_steps=1, decide_on="batch")
    module = tiny_module()
    trainer = tiny_trainer(tmp_path, [ScaleWeightAt(3, 3.0), weights, monitor])
    trainer.fit(module, datamodule=RandomDigits())
    assert monitor.stopped_epoch == 3
    assert monitor.history[-1]["kind"] == "batch" and monitor.history[-1]["step"] == 13  # first step of epoch 3
    assert_same_weights(module.state_dict(), weights.states[2])


class ScriptedAliasing(AliasingMonitor):
    """AliasingMonitor whose probe measurement returns scripted values per epoch (training itself is real)."""

    VALUES = [1.0, 1.2, 1.3, 1.35, 1.3, 1.4, 2.0, 2.1]

    def _measure(self, trainer, pl_module, images):
        v = self.VALUES[trainer.current_epoch]
        return {"conv1": v, "conv2": v, "mean": v}


def test_state_dict_round_trip_gives_the_identical_decision(tmp_path) -> None:
    rule = RULE | {"warmup_epochs": 1}
    full = ScriptedAliasing(**rule, monitor_only=True)
    tiny_trainer(tmp_path / "full", [full], max_epochs=8).fit(tiny_module(), datamodule=RandomDigits())

    first = ScriptedAliasing(**rule, monitor_only=True)
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="last")
    trainer = tiny_trainer(tmp_path / "a", [first, ckpt], max_epochs=4, enable_checkpointing=True)
    trainer.fit(tiny_module(), datamodule=RandomDigits())
    resumed = ScriptedAliasing(**rule, monitor_only=True)
    trainer = tiny_trainer(tmp_path / "b", [resumed], max_epochs=8)
    trainer.fit(tiny_module(), datamodule=RandomDigits(), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))

    keys = ("epoch", "value", "median", "limit", "warmup", "should_stop", "reason")
    assert [[repr(r[k]) for k in keys] for r in resumed.history] == [[repr(r[k]) for k in keys] for r in full.history]
    assert [r["should_stop"] for r in full.history] == [False] * 6 + [True, True]


def test_fast_dev_run_is_skipped(tmp_path) -> None:
    monitor = AliasingMonitor(probe_size=32)
    tiny_trainer(tmp_path, [monitor], fast_dev_run=True, logger=False).fit(tiny_module(), datamodule=RandomDigits())
    assert monitor.history == []


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"decide_on": "weekly"}, "decide_on"),
        ({"probe_size": 0}, "probe_size"),
        ({"every_n_epochs": 0}, "every_n_epochs"),
        ({"decide_on": "batch"}, "every_n_train_steps"),
        ({"threshold": -0.1}, "threshold"),
        ({"measure": "squared"}, "measure='squared'"),
        ({"reference": "last"}, "reference='last'"),
        ({"layers": []}, "layers"),
        ({"batch_probe_size": 0}, "batch_probe_size"),
    ],
)
def test_invalid_arguments_raise_naming_the_parameter(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        AliasingMonitor(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "name"), [({"monitor": "layer2"}, "monitor"), ({"layers": ["fc1"]}, "layers"), ({"groups": ["x"]}, "x")]
)
def test_unknown_layers_raise_at_setup(tmp_path, kwargs: dict, name: str) -> None:
    trainer = tiny_trainer(tmp_path, [AliasingMonitor(probe_size=32, **kwargs)], logger=False)
    with pytest.raises(ValueError, match=name):
        trainer.fit(tiny_module(), datamodule=RandomDigits())


DDP_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
import lightning as L
from _stopping_fixtures import RandomDigits, ScaleWeightAt, tiny_module
from robustrain.aliasing import measure_model_aliasing
from robustrain.callbacks import AliasingMonitor

class Full(L.Callback):
    def on_train_epoch_end(self, trainer, pl_module):  # runs before the monitor: same weights
        if trainer.current_epoch == 0:
            probe, _ = trainer.datamodule.probe_set(32, 0)
            self.value = measure_model_aliasing(pl_module.net, probe)["conv1"]

L.seed_everything(0)
full, monitor = Full(), AliasingMonitor(monitor="conv1", window=3, warmup_epochs=2, probe_size=32)
trainer = L.Trainer(max_epochs=6, accelerator="cpu", devices=2, strategy="ddp", logger=False,
                    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                    inference_mode=False, default_root_dir={root!r}, callbacks=[ScaleWeightAt(4, 3.0), full, monitor])
trainer.fit(tiny_module(), datamodule=RandomDigits())
out = dict(rank=trainer.global_rank, stopped=monitor.stopped_epoch, epochs=trainer.current_epoch, full=full.value,
           values=[r["value"] for r in monitor.history], stops=[r["should_stop"] for r in monitor.history])
with open({root!r} + f"/rank{{trainer.global_rank}}.json", "w") as f:
    json.dump(out, f)
"""


def test_ddp_two_processes_reduce_the_probe_and_take_the_same_decision(tmp_path) -> None:
    script = tmp_path / "ddp_run.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT.format(tests=str(Path(__file__).parent), root=str(tmp_path))))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["values"] == ranks[1]["values"]
    assert ranks[0]["stops"] == ranks[1]["stops"] == [False] * 4 + [True]
    assert ranks[0]["stopped"] == ranks[1]["stopped"] == 4
    # the probe was split across the two ranks, and the reduced value is the value of the whole probe set
    assert ranks[0]["values"][0] == pytest.approx(ranks[0]["full"], rel=1e-5)


def test_two_monitors_record_both_batchnorm_modes_side_by_side(tmp_path) -> None:
    from robustrain.models import PreActResNet18
    from robustrain.training import StandardTraining

    L.seed_everything(0)
    net = PreActResNet18(num_classes=4, in_channels=1, width=2, normalization="none")
    module = StandardTraining(net=net, optimizer="sgd", lr=0.05, lr_schedule="constant", eval_size=0)
    data = RandomDigits()
    eval_probe = AliasingMonitor(probe_size=32, probe_seed=3, groups=["layer2"], monitor_only=True)
    train_probe = AliasingMonitor(
        probe_size=32,
        probe_seed=3,
        groups=["layer2"],
        probe_batchnorm="train",
        name="aliasing_bn_train",
        monitor_only=True,
    )
    trainer = tiny_trainer(tmp_path, [eval_probe, train_probe], max_epochs=2)
    trainer.fit(module, datamodule=data)
    probe, _ = data.probe_set(32, seed=3)
    for monitor, mode in ((eval_probe, "eval"), (train_probe, "train")):
        expected = measure_model_aliasing(module.net, probe, batchnorm=mode)
        assert monitor.history[-1]["layer2.0.conv1"] == pytest.approx(expected["layer2.0.conv1"], rel=1e-5)
        assert (Path(trainer.log_dir) / f"{monitor.name}_history.csv").is_file()
    assert eval_probe.history[-1]["layer2"] != pytest.approx(train_probe.history[-1]["layer2"], rel=1e-3)
    assert eval_probe.state_key != train_probe.state_key
    assert "aliasing_bn_train/layer2" in trainer.callback_metrics
