"""Robust accuracy (robustrain.evaluation.robust_accuracy) and the RobustnessEvaluation callback, on known answers."""

import json
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
import yaml

from robustrain.attacks import autoattack
from robustrain.evaluation import RobustnessEvaluation
from robustrain.evaluation.robust_accuracy import (
    AttackSpec,
    accuracy_vs_eps,
    attack_batch,
    curve_specs,
    perturbation_spectrum,
    robust_accuracy,
)
from robustrain.models import SmallCNN

REPO = Path(__file__).resolve().parents[1]
NEW_CONFIGS = ["eval_robust_mnist5k.yaml", "eval_robust_cifar10.yaml"]
FAST_AA = {"steps": 3, "square_queries": 10, "n_target_classes": 2}


@pytest.fixture(scope="module")
def tiny(mnist_batch) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A tiny SmallCNN fitted to 32 digits (accurate on most of them), left in train mode, and those digits."""
    torch.manual_seed(0)
    images, labels = mnist_batch[0][:32], mnist_batch[1][:32]
    model = SmallCNN(channels=(4, 8), hidden=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = F.cross_entropy(model(images), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, images, labels


def _clean(model, images, labels) -> float:
    return robust_accuracy(model, [(images, labels)], [AttackSpec("clean")])["clean"]


@pytest.mark.parametrize("early_stop", [False, True])
def test_pgd_at_eps_zero_equals_clean_accuracy(tiny, early_stop) -> None:
    model, x, y = tiny
    spec = AttackSpec("pgd", 0.0, alpha=0.05, steps=5, restarts=2, early_stop=early_stop)
    adv, _ = attack_batch(model, x, y, spec)
    assert torch.equal(adv, x)
    assert robust_accuracy(model, [(x, y)], [spec])[spec.key] == _clean(model, x, y) > 0.8


def test_accuracy_never_increases_with_eps(tiny) -> None:
    model, x, y = tiny
    torch.manual_seed(0)
    accs = accuracy_vs_eps(model, [(x[:16], y[:16]), (x[16:], y[16:])], [0.0, 0.05, 0.1, 0.2, 0.3], steps=5)
    assert accs[0] == _clean(model, x, y)
    assert all(b <= a for a, b in zip(accs, accs[1:])), accs
    assert accs[-1] < accs[0]


def test_curve_steps_follow_ribeiro_schoen() -> None:
    specs = curve_specs([0.0, 0.1], steps=100, step_factor=2.5)
    assert specs[0].name == "clean"
    assert (specs[1].steps, specs[1].step_size) == (100, pytest.approx(2.5 * 0.1 / 100))


def test_early_stop_gives_same_or_lower_accuracy(tiny) -> None:
    model, x, y = tiny
    plain = AttackSpec("pgd", 0.1, alpha=0.02, steps=10, random_start=False)
    early = AttackSpec("pgd", 0.1, alpha=0.02, steps=10, random_start=False, early_stop=True)
    _, correct_plain = attack_batch(model, x, y, plain)
    _, correct_early = attack_batch(model, x, y, early)
    assert not (correct_early & ~correct_plain).any()  # every example early stop misses, plain PGD misses too
    assert correct_early.sum() <= correct_plain.sum() < len(y)


def test_restarts_only_lower_accuracy(tiny) -> None:
    model, x, y = tiny
    torch.manual_seed(1)
    one = robust_accuracy(model, [(x, y)], [AttackSpec("pgd", 0.1, alpha=0.02, steps=3, restarts=1)])
    torch.manual_seed(1)  # the first restart draws the same start
    three = robust_accuracy(model, [(x, y)], [AttackSpec("pgd", 0.1, alpha=0.02, steps=3, restarts=3)])
    assert three["pgd_3x3"] <= one["pgd_3x1"]


def test_autoattack_not_above_clean_and_components_only_lower(tiny) -> None:
    model, x, y = tiny
    first = robust_accuracy(model, [(x, y)], [AttackSpec("autoattack", 0.1, components=("apgd-ce",), **FAST_AA)])
    full = robust_accuracy(model, [(x, y)], [AttackSpec("autoattack", 0.1, **FAST_AA)])
    assert full["autoattack"] <= first["autoattack"] <= _clean(model, x, y)
    assert full["autoattack"] < _clean(model, x, y)


@pytest.mark.parametrize(
    "spec",
    [
        AttackSpec("fgsm", 0.1),
        AttackSpec("pgd", 0.1, steps=3, restarts=2),
        AttackSpec("pgd", 0.1, steps=3, early_stop=True),
        AttackSpec("autoattack", 0.1, **FAST_AA),
    ],
    ids=lambda s: s.key + ("_es" if s.early_stop else ""),
)
def test_attacks_stay_in_eps_ball_and_restore_modes(tiny, spec) -> None:
    model, x, y = tiny
    model.train()
    model.conv1.eval()  # a mixed state must come back exactly
    flags = [m.training for m in model.modules()]
    adv, correct = attack_batch(model, x, y, spec)
    assert (adv - x).abs().max() <= spec.eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    assert torch.equal(correct, model.eval()(adv).argmax(1) == y)
    model.train()
    model.conv1.eval()
    assert [m.training for m in model.modules()] == flags


def test_autoattack_leaves_the_global_rng_alone(tiny) -> None:
    model, x, y = tiny
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    autoattack(model.eval(), x[:8], y[:8], 0.1, **FAST_AA)  # torchattacks calls torch.manual_seed(seed) inside
    assert torch.equal(torch.rand(3), expected)


def test_perturbation_spectrum_known_answers() -> None:
    eps = 0.25
    constant = torch.full((1, 1, 8, 8), eps)
    spectrum = perturbation_spectrum(constant)[0, 0]
    assert spectrum[4, 4] == pytest.approx(eps) and spectrum.sum() == pytest.approx(eps)  # DC only, in the centre
    i = torch.arange(8)
    checker = eps * (-1.0) ** (i[:, None] + i[None, :]).float()
    spectrum = perturbation_spectrum(checker[None, None])[0, 0]
    assert spectrum[0, 0] == pytest.approx(eps) and spectrum.sum() == pytest.approx(eps)  # Nyquist, fftshift corner


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: AttackSpec("pgd", -0.1, steps=5), "eps=-0.1"),
        (lambda: AttackSpec("pgd", 0.1, steps=0), "steps=0"),
        (lambda: AttackSpec("cw", 0.1), "'cw'"),
        (lambda: AttackSpec("autoattack", 0.1, components=("apgd-ce", "foo")), "foo"),
        (lambda: RobustnessEvaluation(attacks=["fgsm", "deepfool"]), "deepfool"),
        (lambda: RobustnessEvaluation(eps=-0.5), "eps=-0.5"),
        (lambda: RobustnessEvaluation(pgd=[(0, 1)]), "steps=0"),
        (lambda: RobustnessEvaluation(pgd=[(10, 1), (10, 1)]), "(steps, restarts)"),
        (lambda: RobustnessEvaluation(eps_curve=[0.1, -0.2]), "eps=-0.2"),
        (lambda: RobustnessEvaluation(max_images=0), "max_images=0"),
        (lambda: curve_specs([0.1], step_factor=0), "step_factor=0"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_value(make, message) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_autoattack_rejects_more_targets_than_classes(tiny) -> None:
    model, x, y = tiny
    with pytest.raises(ValueError, match="n_target_classes=10"):
        autoattack(model.eval(), x[:4], y[:4], 0.1, steps=2, n_target_classes=10)


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
