"""benchmarks.framework: its step timer, the fit command it builds and its table (the timings themselves are the
benchmark's, never asserted)."""

import json

from _stopping_fixtures import RandomDigits, tiny_module, tiny_trainer

from benchmarks import framework


def test_the_step_timer_times_its_window_and_ends_fit(tmp_path) -> None:
    out = tmp_path / "t.json"
    timer = framework.StepTimer(str(out), warmup=2, steps=3)
    trainer = tiny_trainer(tmp_path, [timer], max_epochs=10, logger=False)
    trainer.fit(tiny_module(), datamodule=RandomDigits())
    assert trainer.global_step == 5  # stopped at the window's end (4 steps an epoch)
    assert json.loads(out.read_text())["seconds_per_step"] > 0


def test_each_configuration_runs_fit_with_the_benchmarks_settings(tmp_path) -> None:
    for config in framework.CONFIGS:
        command = framework.fit_command("PreActResNet18", config, tmp_path / "o.json", tmp_path, 10, 50)
        overrides = (tmp_path / f"PreActResNet18_{config}.yaml").read_text()
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
