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


def _tiny_config(tmp: Path) -> Path:
    config = yaml.safe_load((REPO / "configs" / "eval_robust_mnist5k.yaml").read_text())
    robust, aliasing = (c["init_args"] for c in config["trainer"]["callbacks"])
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


def test_cli_test_run_writes_reports_with_expected_keys(in_tmp) -> None:
    from robustrain.cli import main

    cli = main(["test", "--config", str(_tiny_config(in_tmp))])
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
