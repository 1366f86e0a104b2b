"""robustrain.evaluation.robustness_evaluation: the RobustnessEvaluation callback through the CLI, its reports and its
configs."""

import json
from pathlib import Path

import lightning as L
import pytest
import yaml

from robustrain.evaluation import RobustnessEvaluation
from robustrain.evaluation.robust_accuracy import (
    robust_accuracy,
)

REPO = Path(__file__).resolve().parents[1]


NEW_CONFIGS = ["eval_robust_mnist5k.yaml", "eval_robust_cifar10.yaml"]


def test_the_quick_eval_config_runs_pgd_50_10_and_the_two_apgd_components_only(in_tmp) -> None:
    from robustrain.cli import main

    cli = main(["--config", str(REPO / "configs" / "eval_quick_mnist5k.yaml")], run=False)
    [robust] = [c for c in cli.trainer.callbacks if isinstance(c, RobustnessEvaluation)]
    assert [s.key for s in robust.specs] == ["clean", "fgsm", "pgd_50x10", "autoattack"]
    assert robust.specs[-1].components == ("apgd-ce", "apgd-t") and robust.specs[-1].steps == 100
    assert robust.eps_curve == [] and not robust.spectrum
    assert "AliasingAnalysis" not in [type(c).__name__ for c in cli.trainer.callbacks]
    assert type(cli.datamodule).__name__ == "MNIST5k" and cli.trainer.logger.name == "eval_quick_mnist5k"


def _tiny_config(tmp: Path) -> Path:
    config = yaml.safe_load((REPO / "configs" / "eval_robust_mnist5k.yaml").read_text())
    aliasing, robust = (c["init_args"] for c in config["trainer"]["callbacks"])
    robust.update(
        pgd=[[3, 2]],
        autoattack_steps=2,
        autoattack_square_queries=5,
        autoattack_n_target_classes=1,
        autoattack_max_images=8,
        eps_curve=[0.0, 0.3],
        eps_curve_steps=2,
        max_images=30,
    )
    aliasing.update(probe_size=8, max_images=30)
    config["trainer"].update(limit_test_batches=2, enable_progress_bar=False, enable_model_summary=False)
    config["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp / "runs")
    config["model"]["init_args"]["net"]["init_args"] = {"channels": [4, 8], "hidden": 16}
    config["data"]["init_args"].update(test_size=40, eval_batch_size=20)
    path = tmp / "eval.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_cli_test_run_writes_reports_with_expected_keys(in_tmp, lightning_log) -> None:
    from robustrain.cli import main

    cli = main(["test", "--config", str(_tiny_config(in_tmp)), "--untrained", "true"])
    log_dir = Path(cli.trainer.log_dir)
    report = json.loads((log_dir / "robustness.json").read_text())
    assert set(report) == {
        "schema",
        "checkpoint",
        "model",
        "net",
        "eps",
        "accuracy",
        "num_images",
        "attacks",
        "seconds",
        "accuracy_vs_eps",
        "perturbation_spectrum",
    }
    assert set(report["accuracy"]) == {"clean", "fgsm", "pgd_3x2", "autoattack"}
    assert report["num_images"] == {"clean": 30, "fgsm": 30, "pgd_3x2": 30, "autoattack": 8}
    assert report["attacks"]["autoattack"]["steps"] == 2
    assert report["accuracy_vs_eps"]["eps"] == [0.0, 0.3] and report["accuracy_vs_eps"]["num_images"] == 40
    assert report["accuracy_vs_eps"]["accuracy"][0] == pytest.approx(cli.trainer.callback_metrics["test/acc"].item())
    assert len(report["perturbation_spectrum"]["pgd_3x2"]["mean_abs_fft"][0]) == 28  # (C, H, W) = (1, 28, 28)
    for key, value in report["accuracy"].items():
        assert cli.trainer.callback_metrics[f"test/acc_{key}"].item() == pytest.approx(value)
    aliasing = json.loads((log_dir / "aliasing.json").read_text())
    assert set(aliasing["aliasing"]) == {"conv1", "conv2"}
    assert aliasing["categories"]["num_images"]["all"] == 30
    for name in ("accuracy_vs_eps", "perturbation_spectrum", "category_pies", "aliased_fraction_boxes"):
        assert (log_dir / f"{name}.png").is_file()
    # the console: a line as each attack starts on a batch (20 images each), then the table with the report's path
    progress = [m for m in lightning_log if m.startswith("RobustnessEvaluation: ")]
    assert "RobustnessEvaluation: pgd_3x2: images 1-20 of 30" in progress
    assert any(m.startswith("RobustnessEvaluation: pgd_3x2: images 21-30 of 30 (so far ") for m in progress)
    assert "RobustnessEvaluation: autoattack: images 1-8 of 8" in progress
    assert "RobustnessEvaluation: eps curve, PGD at eps 0.3: images 21-40 of 40" in "\n".join(progress)
    [table] = [m for m in lightning_log if m.startswith("Robust accuracy at eps=0.3")]
    assert table.splitlines()[0].endswith(f"; report {log_dir / 'robustness.json'}")
    assert "torchattacks 3.5.1" in table.splitlines()[0]
    assert table.splitlines()[1].split() == ["attack", "accuracy", "images", "seconds"]
    autoattack_row = next(line for line in table.splitlines() if line.lstrip().startswith("autoattack"))
    assert autoattack_row.split()[-2] == "8"


def test_the_table_lines_up_accuracy_images_and_seconds_and_names_partial_autoattacks() -> None:
    from robustrain.evaluation.robustness_evaluation import robustness_table

    report = {
        "eps": 0.3,
        "accuracy": {"clean": 0.98, "pgd_50x10": 0.756, "autoattack": 0.702},
        "num_images": {"clean": 500, "pgd_50x10": 500, "autoattack": 500},
        "attacks": {
            "clean": {"name": "clean"},
            "pgd_50x10": {"name": "pgd"},
            "autoattack": {"name": "autoattack", "components": ["apgd-ce", "apgd-t"], "implementation": "ref via x"},
        },
        "seconds": {"clean": 0.04, "pgd_50x10": 61.25, "autoattack": 130.0},
        "accuracy_vs_eps": {"eps": [0.0, 0.1], "num_images": 500, "seconds": 12.0},
    }
    assert robustness_table(report, "r.json").splitlines() == [
        "Robust accuracy at eps=0.3 (AutoAttack: ref); report r.json",
        "  attack                        accuracy  images  seconds",
        "  clean                            98.0%     500      0.0",
        "  pgd_50x10                        75.6%     500     61.2",
        "  autoattack (apgd-ce, apgd-t)     70.2%     500    130.0",
        "  eps curve (2 radii)                        500     12.0",
    ]


def test_callback_equals_direct_robust_accuracy_over_batches(tiny, tmp_path) -> None:
    """Accumulating over test batches gives the same numbers as robust_accuracy on the whole set."""
    from torch.utils.data import DataLoader, TensorDataset

    from robustrain.training import StandardTraining

    model, x, y = tiny
    module = StandardTraining(net=model, eval_size=0)
    callback = RobustnessEvaluation(
        eps=0.1, attacks=["fgsm", "pgd"], pgd=[(4, 1)], pgd_alpha=0.03, pgd_random_start=False, spectrum=False
    )
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        callbacks=[callback],
        inference_mode=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.test(module, DataLoader(TensorDataset(x, y), batch_size=10))
    direct = robust_accuracy(model, [(x, y)], callback.specs)
    assert callback.report["accuracy"] == direct
    assert json.loads((tmp_path / "robustness.json").read_text())["accuracy"] == direct


def test_callback_refuses_inference_mode(tiny, tmp_path) -> None:
    from torch.utils.data import DataLoader, TensorDataset

    from robustrain.training import StandardTraining

    model, x, y = tiny
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        callbacks=[RobustnessEvaluation()],
        inference_mode=True,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    with pytest.raises(ValueError, match="inference_mode"):
        trainer.test(StandardTraining(net=model, eval_size=0), DataLoader(TensorDataset(x, y), batch_size=16))


@pytest.mark.parametrize("name", NEW_CONFIGS)
def test_every_new_config_instantiates(name, in_tmp) -> None:
    from robustrain.cli import main

    args = ["--config", str(REPO / "configs" / name)]
    if "cifar10" in name:
        args += ["--data", "robustrain.data.MNIST5k"]  # CIFAR-10 is not on this machine: keep the rest, swap the data
    cli = main(args, run=False)
    callbacks = [type(c).__name__ for c in cli.trainer.callbacks]
    assert "RobustnessEvaluation" in callbacks and "AliasingAnalysis" in callbacks
    assert cli.trainer.test_loop.inference_mode is False


@pytest.mark.parametrize(
    "name, expected",
    [
        ("compare_mnist5k_fgsm_aliasing_stop.yaml", "AliasingMonitor"),
        ("compare_mnist5k_fgsm_pgd_stop.yaml", "PGDEarlyStopping"),
        ("compare_mnist5k_antialiased.yaml", "BlurPool"),
    ],
)
def test_compare_configs_instantiate(name, expected, in_tmp) -> None:
    from robustrain.cli import main

    cli = main(["--config", str(REPO / "configs" / name)], run=False)
    found = [type(c).__name__ for c in cli.trainer.callbacks] + [type(m).__name__ for m in cli.model.modules()]
    assert expected in found and type(cli.model).__name__ == "FGSMTraining"


def test_quick_eval_config_stacks_on_the_mnist_eval_config(in_tmp) -> None:
    from robustrain.cli import main

    cli = main(
        [
            "--config",
            str(REPO / "configs" / "eval_robust_mnist5k.yaml"),
            "--config",
            str(REPO / "experiments" / "compare_mnist5k" / "quick_eval.yaml"),
        ],
        run=False,
    )
    robust = next(c for c in cli.trainer.callbacks if isinstance(c, RobustnessEvaluation))
    assert [s.key for s in robust.specs] == ["clean", "fgsm", "pgd_20x2", "autoattack"]
    assert robust.specs[-1].steps == 20 and robust.specs[-1].square_queries == 1000


def test_the_autoattack_implementation_is_chosen_on_the_command_line(in_tmp, capsys) -> None:
    """RobustnessEvaluation is the eval configs' last callback, so `--trainer.callbacks.init_args.<arg>` reaches it."""
    from robustrain.attacks.autoattack_reference import reference_available
    from robustrain.cli import main

    args = ["--config", str(REPO / "configs" / "eval_robust_mnist5k.yaml")]
    args += ["--trainer.callbacks.init_args.autoattack_impl", "reference", "--trainer.logger", "false"]
    if not reference_available():
        with pytest.raises(SystemExit):
            main(args, run=False)
        assert "pip install -e '.[reference]'" in capsys.readouterr().err
        return
    cli = main(args, run=False)
    robust = cli.trainer.callbacks[[type(c).__name__ for c in cli.trainer.callbacks].index("RobustnessEvaluation")]
    assert robust.specs[-1].implementation == "reference"
    assert "fra31/auto-attack" in robust.specs[-1].describe()["implementation"]
