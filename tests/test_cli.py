"""The CLI end to end: fit writes logs, checkpoints and the config; every config instantiates; resume; DDP."""

import os
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import CONFIGS, REPO, resolved_config
from lightning.pytorch.cli import SaveConfigCallback

from robustrain.cli import main

FAST = [
    "--trainer.max_epochs",
    "1",
    "--trainer.limit_train_batches",
    "3",
    "--trainer.limit_val_batches",
    "1",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.num_sanity_val_steps",
    "0",
    "--model.init_args.eval_size",
    "20",
    "--model.init_args.eval_steps",
    "2",
]


def last_ckpt(root, name: str, version: int = 0):
    """runs/<name>/version_N/checkpoints/last.ckpt: each run keeps its checkpoints in its own version folder."""
    return root / "runs" / name / f"version_{version}" / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_config_instantiates(path, in_tmp):
    config = resolved_config("--config", str(path))
    args = ["--config", str(path)]
    if not config["data"]["class_path"].endswith("MNIST5k"):
        # CIFAR-10 / ImageNet are not on this machine: keep the config's model, trainer and callbacks, swap the data.
        args += ["--data", "robustrain.data.MNIST5k"]
    if config["model"]["init_args"]["net"]["init_args"].get("weights_path"):
        # Pretrained ImageNet weights are a local file the user provides; loading them is tested in test_models.
        override = in_tmp / "no_weights.yaml"
        override.write_text("model:\n  init_args:\n    net:\n      init_args:\n        weights_path: null\n")
        args += ["--config", str(override)]
    cli = main(args, run=False)
    assert type(cli.model).__name__ == config["model"]["class_path"].rsplit(".", 1)[1]
    assert cli.trainer.max_epochs == config["trainer"]["max_epochs"]
    configured = [c for c in cli.trainer.callbacks if not isinstance(c, SaveConfigCallback)]
    ours = [type(c).__name__ for c in configured if c.__module__.startswith("robustrain")]
    assert ours.count("RunSummary") == 1  # the CLI's, in every run
    listed = [*(config["trainer"].get("callbacks") or []), *(config.get("base_callbacks") or [])]
    assert [name for name in ours if name != "RunSummary"] == [
        c["class_path"].rsplit(".", 1)[1] for c in listed if c["class_path"].startswith("robustrain")
    ]


def test_fit_writes_tensorboard_logs_checkpoints_and_the_config(in_tmp):
    main(["fit", "--config", str(REPO / "configs/mnist5k_fgsm.yaml"), *FAST])
    run = in_tmp / "runs/mnist5k_fgsm"
    version = run / "version_0"
    assert list(version.glob("events.out.tfevents.*"))
    saved = yaml.safe_load((version / "config.yaml").read_text())
    assert saved["model"]["init_args"]["eps"] == 0.3 and saved["model"]["class_path"].endswith("FGSMTraining")
    assert (version / "checkpoints/last.ckpt").is_file() and list(version.glob("checkpoints/best-*.ckpt"))
    hparams = yaml.safe_load((version / "hparams.yaml").read_text())
    assert hparams["eps"] == 0.3 and hparams["optimizer"] == "adam"


def test_model_can_be_chosen_on_the_command_line(in_tmp):
    cli = main(
        [
            "--model",
            "PGDTraining",
            "--model.net",
            "robustrain.models.SmallCNN",
            "--model.steps",
            "3",
            "--trainer.logger",
            "false",
        ],
        run=False,
    )
    assert type(cli.model).__name__ == "PGDTraining" and cli.model.hparams.steps == 3
    assert type(cli.datamodule).__name__ == "MNIST5k"  # the embedded default


def test_resume_from_last_continues_from_the_saved_epoch(in_tmp):
    config = str(REPO / "configs/mnist5k_standard.yaml")
    main(["fit", "--config", config, *FAST])
    first = torch.load(last_ckpt(in_tmp, "mnist5k_standard"), weights_only=True)
    assert first["epoch"] == 0 and first["global_step"] == 3
    longer = ["--trainer.max_epochs", "2", "--allow_changed_settings", "true"]  # a schedule change, allowed
    # the speed options change how fast, not what is trained: a resume may switch them (no flag needed for them)
    speed = ["--model.init_args.channels_last", "true", "--model.init_args.compile", "{backend: eager}"]
    speed += ["--data.init_args.pin_memory", "false"]
    resumed = main(["fit", "--config", config, *FAST, *longer, *speed, "--ckpt_path", "last"])
    assert resumed.trainer.current_epoch == 2 and resumed.trainer.global_step == 6
    assert resumed.model.net.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert resumed.model.net._robustrain_compiled
    second = torch.load(last_ckpt(in_tmp, "mnist5k_standard"), weights_only=True)  # the same run, continued
    assert second["epoch"] == 1 and second["global_step"] == 6
    assert not (in_tmp / "runs/mnist5k_standard/version_1").exists()


def test_bad_values_fail_before_training_and_name_the_value(in_tmp, capsys):
    for flag, value in (("--model.init_args.eps", "1.5"), ("--data.init_args.batch_size", "0")):
        with pytest.raises(SystemExit) as exit_info:
            main(["fit", "--config", str(REPO / "configs/mnist5k_fgsm.yaml"), flag, value])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"={float(value) if '.' in value else value}" in err
    assert not (in_tmp / "runs").exists()


@pytest.mark.slow  # ~40 s; AliasingMonitor's DDP test stays in the fast suite
def test_ddp_with_two_cpu_processes_runs_an_epoch(in_tmp):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        str(REPO / "train.py"),
        "fit",
        "--config",
        str(REPO / "configs/mnist5k_fgsm.yaml"),
        *FAST,
        "--trainer.devices",
        "2",
        "--trainer.strategy",
        "ddp",
    ]
    result = subprocess.run(cmd, cwd=in_tmp, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = torch.load(last_ckpt(in_tmp, "mnist5k_fgsm"), weights_only=True)
    assert ckpt["global_step"] == 3


def test_checkpoint_rebuilds_its_own_network_for_test_and_load(in_tmp):
    from robustrain.training import FGSMTraining

    main(
        [
            "fit",
            "--config",
            str(REPO / "configs/mnist5k_fgsm.yaml"),
            *FAST,
            "--model.init_args.net.init_args.antialias",
            "3",
        ]
    )
    ckpt = last_ckpt(in_tmp, "mnist5k_fgsm")
    loaded = FGSMTraining.load_from_checkpoint(ckpt)
    assert type(loaded.net.conv1).__name__ == "Sequential"  # stride-1 conv + BlurPool
    # A config without anti-aliasing still evaluates the anti-aliased checkpoint: the network comes from the checkpoint.
    cli = main(
        [
            "test",
            "--config",
            str(REPO / "configs/mnist5k_standard.yaml"),
            "--ckpt_path",
            str(ckpt),
            "--trainer.enable_progress_bar",
            "false",
            "--model.init_args.eval_size",
            "10",
            "--model.init_args.eval_steps",
            "2",
        ]
    )
    assert type(cli.model).__name__ == "FGSMTraining" and type(cli.model.net.conv1).__name__ == "Sequential"
    assert 0.0 <= cli.trainer.callback_metrics["test/acc"] <= 1.0


def test_evaluation_settings_come_from_the_command_line_not_the_checkpoint(in_tmp):
    main(["fit", "--config", str(REPO / "configs/mnist5k_fgsm.yaml"), *FAST])
    ckpt = last_ckpt(in_tmp, "mnist5k_fgsm")
    cli = main(
        [
            "test",
            "--config",
            str(REPO / "configs/mnist5k_standard.yaml"),
            "--ckpt_path",
            str(ckpt),
            "--model.init_args.eval_size",
            "0",
            "--trainer.limit_test_batches",
            "0.2",
            "--data.init_args.eval_batch_size",
            "100",
            "--trainer.enable_progress_bar",
            "false",
        ]
    )
    assert type(cli.model).__name__ == "FGSMTraining" and cli.model.hparams.eps == 0.3  # trained as it was
    assert cli.model.hparams.eval_size == 0  # evaluated as asked
    assert "test/acc" in cli.trainer.callback_metrics and "test/acc_pgd" not in cli.trainer.callback_metrics


def test_lightning_still_hands_the_cli_config_to_save_hyperparameters(in_tmp):
    """robustrain.training.robust_classifier reads Lightning's private `_given_hyperparameters` (no public route tells a
    module built by LightningCLI, whose `net` hyperparameter is then its config, from one built in Python, whose `net`
    is a module object). This fails loudly when Lightning renames or drops it: checkpoints would silently stop
    recording `net`."""
    from lightning.pytorch.core.mixins import hparams_mixin

    from robustrain.models import SmallCNN
    from robustrain.training import StandardTraining

    assert hasattr(hparams_mixin, "_given_hyperparameters")
    cli = main(["--config", str(REPO / "configs/mnist5k_standard.yaml"), "--trainer.logger", "false"], run=False)
    assert cli.model.hparams["net"]["class_path"] == "robustrain.models.SmallCNN"
    assert "net" not in StandardTraining(net=SmallCNN()).hparams


def test_checkpoints_are_written_atomically_unless_the_user_names_a_checkpoint_io(in_tmp):
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from robustrain.runs.checkpoint_io import AtomicCheckpointIO

    args = ["--config", str(REPO / "configs/mnist5k_fgsm.yaml")]
    cli = main(args, run=False)
    assert type(cli.trainer.strategy.checkpoint_io) is AtomicCheckpointIO
    own = main([*args, "--trainer.plugins", "lightning.pytorch.plugins.io.TorchCheckpointIO"], run=False)
    assert type(own.trainer.strategy.checkpoint_io) is TorchCheckpointIO


def test_lightning_still_seeds_and_parses_the_checkpoint_through_the_overridden_private_methods(in_tmp, monkeypatch):
    """RobustrainCLI overrides LightningCLI's private `_parse_ckpt_path` and `_set_seed` (no public hook sits between
    parsing and seeding): this fails loudly if Lightning stops calling them."""
    from robustrain.cli import RobustrainCLI

    called = []
    for name in ("_parse_ckpt_path", "_set_seed"):
        original = getattr(RobustrainCLI, name)
        monkeypatch.setattr(RobustrainCLI, name, lambda self, o=original, n=name: (called.append(n), o(self))[1])
    main(["--config", str(REPO / "configs/mnist5k_fgsm.yaml")], run=False)
    assert called == ["_parse_ckpt_path", "_set_seed"]


def test_a_resume_records_the_run_signature_and_takes_a_drawn_seed_from_the_checkpoint(in_tmp):
    config = str(REPO / "configs/mnist5k_standard.yaml")
    clip = ["--trainer.gradient_clip_val", "1.0", "--trainer.gradient_clip_algorithm", "norm"]  # an enum: kept as text
    main(["fit", "--config", config, *FAST, *clip])
    ckpt = torch.load(last_ckpt(in_tmp, "mnist5k_standard"), weights_only=True)
    signature = ckpt["robustrain"]["signature"]
    assert signature["trainer.gradient_clip_algorithm"] == "norm"
    assert signature["model.class_path"] == "StandardTraining" and signature["trainer.max_epochs"] == 1
    assert signature["seed_everything"] == ckpt["robustrain"]["run_seed"]
    longer = ["--trainer.max_epochs", "2", "--allow_changed_settings", "true", "--seed_everything", "true"]
    resumed = main(["fit", "--config", config, *FAST, *clip, *longer, "--ckpt_path", "last"])
    assert resumed.config["fit"]["seed_everything"] == ckpt["robustrain"]["run_seed"]  # not a newly drawn one
    assert resumed.model._run_seed == ckpt["robustrain"]["run_seed"]
