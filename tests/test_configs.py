"""The composed configs: each training config names a shared base (configs/base/), its own keys and later files win."""

from pathlib import Path

import pytest
from conftest import CONFIGS, REPO, resolved_config

from robustrain.aliasing import find_downsampling_layers
from robustrain.callbacks import AliasingMonitor, PGDEarlyStopping
from robustrain.cli import main
from robustrain.models import PreActResNet18

TRAINING = [p for p in CONFIGS if not p.name.startswith("eval_")]


def _callbacks(config: dict) -> list[dict]:
    """The callbacks the CLI builds from a resolved config: trainer.callbacks, then base_callbacks."""
    return [*(config["trainer"].get("callbacks") or []), *(config.get("base_callbacks") or [])]


def _checkpoints(config: dict) -> list[dict]:
    return [c["init_args"] for c in _callbacks(config) if c["class_path"].endswith("ModelCheckpoint")]


@pytest.mark.parametrize("path", TRAINING, ids=[p.name for p in TRAINING])
def test_training_configs_log_and_checkpoint_under_their_own_name(path):
    config = resolved_config("--config", str(path))
    assert config["trainer"]["logger"]["init_args"] == {**config["trainer"]["logger"]["init_args"], "name": path.stem}
    assert config["trainer"]["logger"]["init_args"]["save_dir"] == "runs"
    best, last = _checkpoints(config)  # exactly the base's two, best first (last.ckpt then holds its state)
    assert last["dirpath"] is None and best["dirpath"] is None  # in the run's version folder: reruns never mix
    assert last["filename"] == "last" and last["monitor"] is None
    assert best["mode"] == "max" and best["monitor"] in ("val/acc_pgd", "val/acc")
    assert best["filename"] == ("best-{epoch:03d}" if path.stem.startswith("cifar10") else "best-{epoch:02d}")
    lr_monitors = [c for c in _callbacks(config) if c["class_path"].endswith("LearningRateMonitor")]
    assert [c["init_args"]["logging_interval"] for c in lr_monitors] == ["step"]
    assert config["seed_everything"] == 0 and config["trainer"]["inference_mode"] is False


def test_experiment_keys_win_over_the_base():
    base = resolved_config("--config", str(REPO / "configs/base/mnist5k.yaml"), "--trainer.logger.init_args.name", "x")
    recipe = resolved_config("--config", str(REPO / "configs/mnist5k_fgsm_aliasing.yaml"))
    assert base["trainer"]["max_epochs"] == 15 and recipe["trainer"]["max_epochs"] == 30
    assert recipe["trainer"]["log_every_n_steps"] == base["trainer"]["log_every_n_steps"] == 10  # kept from the base
    # the experiment lists only its own callbacks; the base's checkpoints and lr monitor come after them
    assert [c["class_path"].rsplit(".", 1)[1] for c in recipe["trainer"]["callbacks"]] == [
        "AliasingMonitor",
        "PGDEarlyStopping",
    ]
    assert recipe["base_callbacks"] == base["base_callbacks"]
    assert [c["class_path"].rsplit(".", 1)[1] for c in base["base_callbacks"]] == [
        "ModelCheckpoint",
        "ModelCheckpoint",
        "LearningRateMonitor",
    ]


def test_a_later_config_file_wins_and_adds_callbacks_beside_the_base(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text(
        "trainer:\n  max_epochs: 3\n  callbacks+:\n"
        "    - class_path: lightning.pytorch.callbacks.EarlyStopping\n      init_args:\n        monitor: val/acc\n"
    )
    config = resolved_config("--config", str(REPO / "configs/mnist5k_fgsm.yaml"), "--config", str(extra))
    assert config["trainer"]["max_epochs"] == 3
    names = [c["class_path"].rsplit(".", 1)[1] for c in _callbacks(config)]
    assert names == ["EarlyStopping", "ModelCheckpoint", "ModelCheckpoint", "LearningRateMonitor"]
    assert config["model"]["init_args"]["eps"] == 0.3  # the rest of the experiment is untouched


def test_the_logger_name_moves_the_checkpoints_too(in_tmp):
    from robustrain.cli import main

    config = str(REPO / "configs/mnist5k_fgsm.yaml")
    cli = main(["fit", "--config", config, "--trainer.logger.init_args.name", "seed1", "--trainer.max_steps", "1",
                "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false"])  # fmt: skip
    folders = {Path(c.dirpath).resolve() for c in cli.trainer.checkpoint_callbacks}
    assert folders == {(in_tmp / "runs/seed1/version_0/checkpoints").resolve()}


def _pgd_stopper(cli):
    from robustrain.callbacks import PGDEarlyStopping

    (stopper,) = [cb for cb in cli.trainer.callbacks if isinstance(cb, PGDEarlyStopping)]
    stopper.setup(cli.trainer, cli.model, "fit")  # where it reads the module's evaluation settings
    return stopper


def test_one_eps_override_moves_the_evaluation_and_the_pgd_early_stop(in_tmp):
    from robustrain.cli import main

    config = str(REPO / "configs/compare_mnist5k_fgsm_pgd_stop.yaml")
    cli = main(["--config", config, "--model.init_args.eps", "0.2", "--trainer.logger", "false"], run=False)
    stopper = _pgd_stopper(cli)
    assert cli.model.hparams.eps == cli.model.eval_eps == stopper.eps == 0.2
    assert stopper.alpha == 0.075  # given in the config: stays


def test_the_fgsm_rs_recipe_keeps_its_threat_model_when_the_training_eps_moves(in_tmp):
    from robustrain.cli import main

    config = str(REPO / "configs/mnist5k_fgsm_aliasing.yaml")
    cli = main(["--config", config, "--model.init_args.eps", "0.5", "--trainer.logger", "false"], run=False)
    stopper = _pgd_stopper(cli)
    assert cli.model.hparams.eps == 0.5 and cli.model.eval_eps == stopper.eps == 0.3
    cli = main(["--config", config, "--model.init_args.eval_eps", "0.2", "--trainer.logger", "false"], run=False)
    assert _pgd_stopper(cli).eps == cli.model.eval_eps == 0.2


@pytest.mark.parametrize(
    ("name", "stopper"),
    [
        ("mnist5k_fgsm_aliasing", AliasingMonitor),
        ("cifar10_fgsm_aliasing", AliasingMonitor),
        ("cifar10_fgsm_pgd_es", PGDEarlyStopping),
    ],
)
def test_early_stopping_configs_instantiate_with_exactly_one_stopper(tmp_path, monkeypatch, name, stopper) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["--config", str(REPO / "configs" / f"{name}.yaml"), "--trainer.logger", "false"]
    if name.startswith("cifar10"):
        args += ["--data", "robustrain.data.MNIST5k"]  # CIFAR-10 is not on this machine; the rest is the config's
    cli = main(args, run=False)
    ours = [cb for cb in cli.trainer.callbacks if isinstance(cb, (AliasingMonitor, PGDEarlyStopping))]
    assert {type(cb) for cb in ours} == {AliasingMonitor, PGDEarlyStopping}
    assert [type(cb) for cb in ours if not cb.monitor_only] == [stopper]
    aliasing = next(cb for cb in ours if isinstance(cb, AliasingMonitor))
    if name.startswith("cifar10"):
        assert set(aliasing.layers) <= set(find_downsampling_layers(PreActResNet18()))
        assert aliasing.groups == ["layer2"] and aliasing.monitor == "layer2"


CO_LAB = sorted(p for p in (REPO / "configs/co_lab").glob("*.yaml") if not p.name.startswith("detectors_"))


@pytest.mark.parametrize("path", CO_LAB, ids=[p.name for p in CO_LAB])
def test_every_co_lab_setting_instantiates_with_every_detector_monitor_only(tmp_path, monkeypatch, path) -> None:
    # the detectors_*.yaml stacks are instantiated through the settings that name them
    from robustrain.callbacks import RollbackEarlyStopping

    monkeypatch.chdir(tmp_path)
    args = ["--config", str(path), "--trainer.logger", "false"]
    if path.name.startswith("cifar10"):
        args += ["--data", "robustrain.data.MNIST5k"]  # CIFAR-10 is not on this machine; the rest is the config's
    cli = main(args, run=False)
    stops = [cb for cb in cli.trainer.callbacks if isinstance(cb, RollbackEarlyStopping)]
    assert len(stops) >= 5 and all(cb.monitor_only for cb in stops)
    assert type(cli.model).__name__ == "FGSMTraining"


METHODS = sorted((REPO / "configs/co_lab/methods").glob("*.yaml"))
EXPECTED_METHOD = {
    "nfgsm": ("NFGSMTraining", None, None),
    "fgsm_rs": ("FGSMTraining", None, None),
    "gradalign": ("FGSMTraining", "GradAlign", None),
    "elle": ("FGSMTraining", "ELLE", None),
    "elle_a": ("FGSMTraining", "ELLE", None),
    "flc": ("FGSMTraining", None, "FLCPool"),
    "blurpool": ("FGSMTraining", None, "BlurPool"),
    "pgd10": ("PGDTraining", None, None),
}


@pytest.mark.parametrize("setting", ["smallcnn_injected", "preact18_injected"])
@pytest.mark.parametrize("path", METHODS, ids=[p.stem for p in METHODS])
def test_every_prevention_method_stacks_on_a_co_lab_setting(tmp_path, monkeypatch, path, setting) -> None:
    monkeypatch.chdir(tmp_path)
    setting_path = REPO / "configs/co_lab" / f"{setting}.yaml"
    cli = main(["--config", str(setting_path), "--config", str(path), "--trainer.logger", "false"], run=False)
    model_class, regularizer, pool = EXPECTED_METHOD[path.stem]
    assert type(cli.model).__name__ == model_class
    assert type(getattr(cli.model, "regularizer", None)).__name__ == (regularizer or "NoneType")
    if pool is not None:
        assert pool in {type(m).__name__ for m in cli.model.net.modules()}
    assert cli.model.eps == 0.2 and cli.model.eval_eps == 0.2  # the setting's radius, trained and evaluated
    if path.stem == "elle_a":
        assert cli.model.regularizer.adaptive


def test_the_cli_builds_the_experiments_callbacks_then_the_bases(in_tmp):
    cli = main(["--config", str(REPO / "configs/mnist5k_fgsm_aliasing.yaml")], run=False)
    names = [type(c).__name__ for c in cli.trainer.callbacks if type(c).__name__ != "ModelCheckpoint"]
    assert names[:3] == ["AliasingMonitor", "PGDEarlyStopping", "LearningRateMonitor"]
    assert [c.monitor for c in cli.trainer.checkpoint_callbacks] == ["val/acc_pgd", None]
    worst = main(["--config", str(REPO / "configs/mnist5k_worst_of_10.yaml")], run=False)  # its own base_callbacks
    assert [c.monitor for c in worst.trainer.checkpoint_callbacks] == ["val/acc", None]
