"""benchmarks.framework: its step timer, the fit command it builds and its table (the timings themselves are the
benchmark's, never asserted)."""

import dataclasses
import json

import yaml
from _stopping_fixtures import RandomDigits, tiny_module, tiny_trainer

from benchmarks import framework


def test_the_step_timer_times_its_window_and_ends_fit(tmp_path) -> None:
    out = tmp_path / "t.json"
    timer = framework.StepTimer(str(out), warmup=2, steps=3)
    trainer = tiny_trainer(tmp_path, [timer], max_epochs=10, logger=False)
    trainer.fit(tiny_module(), datamodule=RandomDigits())
    assert trainer.global_step == 5  # stopped at the window's end (4 steps an epoch)
    timed = json.loads(out.read_text())
    assert timed["seconds_per_step"] > 0 and timed["first_step"] > 0


def test_each_configuration_runs_fit_with_the_benchmarks_settings(tmp_path) -> None:
    for config in framework.CONFIGS:
        command = framework.fit_command("PreActResNet18", config, tmp_path / "o.json", tmp_path, 10, 50)
        overrides = (tmp_path / f"PreActResNet18_{config}_None.yaml").read_text()
        assert "trainer.limit_val_batches: 0" in overrides and "data.init_args.padding: 2" in overrides
        assert ("base_callbacks: []" in overrides) == (config == "none")
        assert any("co_demo_mnist5k.yaml" in part for part in command) == (config == "stops")
        assert "--trainer.callbacks.steps=50" in command


def test_the_table_gives_each_ratio_with_its_spread() -> None:
    rows = {c: {"ratio": 1.2, "min": 1.1, "max": 1.4, "ms_per_step": 12.0} for c in framework.CONFIGS}
    results = {"torch": "x", "threads": 2, "repeats": 3, "SmallCNN": {"rows": {**rows, "bare": {"ms_per_step": 10.0}}}}
    table = framework.markdown(results, "python -m benchmarks.framework")
    assert "| SmallCNN | fit, base callbacks | 12.0 | **1.20x** (1.10..1.40) |" in table
    assert "| SmallCNN | bare loop | 10.0 | 1 |" in table


def test_each_speed_option_is_its_one_config_key_on_the_base_configuration(tmp_path) -> None:
    for option, key in framework.OPTIONS.items():
        framework.fit_command("SmallCNN", "base", tmp_path / "o.json", tmp_path, 10, 50, option)
        overrides = (tmp_path / f"SmallCNN_base_{option}.yaml").read_text()
        assert overrides.rstrip().endswith(key) and "base_callbacks: []" not in overrides
        assert all(other not in overrides for other in framework.OPTIONS.values() if other != key)


def test_the_options_table_gives_each_ratio_and_the_compilation() -> None:
    plain = [{"seconds_per_step": 0.010, "first_step": 1.0}, {"seconds_per_step": 0.012, "first_step": 1.2}]
    compiled = [{"seconds_per_step": 0.008, "first_step": 21.0}, {"seconds_per_step": 0.012, "first_step": 31.2}]
    row = framework._option_row(compiled, plain)
    assert row["ratio"] == 0.9 and (row["min"], row["max"]) == (0.8, 1.0)
    assert row["extra_first_step_s"] == 25.0 and row["ms_per_step"] == 10.0
    rows = {option: row for option in ("plain", *framework.OPTIONS)}
    results = {"torch": "x", "threads": 2, "repeats": 2, "SmallCNN": {"rows": rows}}
    table = framework.markdown_options(results, "python -m benchmarks.framework --options")
    assert "| SmallCNN | `model.init_args.compile: true` | 10.0 | **0.90x** (0.80..1.00) | +25.0 |" in table


def test_wongs_cifar10_recipe_adds_the_aliasing_stop_on_synthetic_images(tmp_path) -> None:
    model = "PreActResNet18-CIFAR10"
    for config in framework.CONFIGS:
        command = framework.fit_command(model, config, tmp_path / "o.json", tmp_path, 20, 400, device="cuda")
        overrides = (tmp_path / f"{model}_{config}_None.yaml").read_text()
        assert any(part.endswith("configs/cifar10_fgsm_synthetic.yaml") for part in command)
        assert "trainer.accelerator: gpu" in overrides and "model.init_args.optimizer: sgd" in overrides
        assert "model.init_args.init: random_clipped" in overrides and "data.init_args.batch_size: 128" in overrides
        assert ("AliasingMonitor" in overrides) == (config == "stops")
    stops = yaml.safe_load((tmp_path / f"{model}_stops_None.yaml").read_text())["trainer.callbacks"]
    assert [c["init_args"]["monitor"] for c in stops] == ["layer2"]  # configs/cifar10_fgsm_aliasing.yaml's


def test_the_bare_loop_runs_wongs_cifar10_recipe(monkeypatch) -> None:
    from robustrain.data import synthetic

    monkeypatch.setitem(synthetic.SHAPES, "cifar10", ((3, 32, 32), 10, 1200, 100))  # not 50000: the loop, not the data
    monkeypatch.setitem(
        framework.SETTINGS,
        "PreActResNet18-CIFAR10",
        dataclasses.replace(framework.SETTINGS["PreActResNet18-CIFAR10"], batch=4, per_epoch=2),
    )
    assert framework.bare("PreActResNet18-CIFAR10", warmup=1, steps=2) > 0
