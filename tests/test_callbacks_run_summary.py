"""RunSummary: the closing summary of fit says what the run did, for every RollbackEarlyStopping, aligned, on rank zero
through Lightning's logging."""

import math
from pathlib import Path

import lightning as L
import pytest
from _stopping_fixtures import RandomDigits, ScaleWeightAt, tiny_module, tiny_trainer
from conftest import lightning_messages

from robustrain.callbacks import AliasingMonitor, PGDEarlyStopping, RunSummary
from robustrain.callbacks.run_summary import closest_approach, evaluate_command
from robustrain.data import MNIST5k

RULE = dict(monitor="conv1", threshold=0.33, window=3, warmup_epochs=2, probe_size=32)


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """The jump run of the aliasing tests (conv1 tripled at epoch 4): one monitor stops at 4, one watches with the same
    rule (monitor only), one with a limit it never reaches; the summary is logged at the end."""
    tmp_path = tmp_path_factory.mktemp("summary")
    L.seed_everything(0)
    stopper = AliasingMonitor(**RULE)
    watcher = AliasingMonitor(**RULE, monitor_only=True, name="aliasing_watch")
    relaxed = AliasingMonitor(**{**RULE, "threshold": 10.0}, monitor_only=True, name="aliasing_relaxed")
    summary = RunSummary()
    with lightning_messages() as messages:
        trainer = tiny_trainer(tmp_path, [ScaleWeightAt(4, 3.0), stopper, watcher, relaxed, summary])
        trainer.fit(tiny_module(), datamodule=RandomDigits())
    return trainer, summary, messages, (stopper, watcher, relaxed)


def rows(summary: RunSummary) -> dict[str, str]:
    """label -> text of the summary's rows."""
    return {line[2:].split("  ", 1)[0]: line[2:].split("  ", 1)[1].strip() for line in summary.lines[1:]}


def test_the_summary_is_logged_once_through_lightnings_logger(stopped_run) -> None:
    _, summary, messages, _ = stopped_run
    logged = [m for m in messages if m.startswith("robustrain: fit finished")]
    assert logged == ["\n".join(summary.lines)]


def test_the_rows_are_aligned_on_their_labels(stopped_run) -> None:
    _, summary, _, _ = stopped_run
    starts = {len(line) - len(line[2:].split("  ", 1)[1].lstrip()) for line in summary.lines[1:]}
    assert len(starts) == 1  # every text starts in the same column


def test_it_says_why_training_ended_and_what_each_stop_decided(stopped_run) -> None:
    trainer, summary, _, (stopper, _, _) = stopped_run
    table = rows(summary)
    assert table["epochs"] == "5 (0-4): AliasingMonitor (aliasing) stopped it"
    assert table["aliasing"] == "stopped at epoch 4, handed back epoch 3: aliasing_stop.ckpt"
    assert table["aliasing_watch"] == "monitor only: would have stopped at epoch 4 and handed back epoch 3"
    relaxed = table["aliasing_relaxed"]
    assert relaxed.startswith("monitor only: would never have stopped; largest rise +")
    assert "at epoch 4" in relaxed and relaxed.endswith("limit +1000.0%")
    assert summary.lines[0] == f"robustrain: fit finished; run folder {trainer.log_dir}"


def test_it_names_the_histories_figures_tensorboard_and_the_evaluation_command(stopped_run) -> None:
    trainer, summary, _, (stopper, _, _) = stopped_run
    table = rows(summary)
    names = ("aliasing", "aliasing_watch", "aliasing_relaxed")
    assert table["histories"] == ", ".join(f"{n}_history.csv" for n in names)
    assert table["figures"] == ", ".join(f"{n}_curves.png" for n in names)
    for name in names:
        assert (Path(trainer.log_dir) / f"{name}_history.csv").is_file()
    assert table["TensorBoard"] == f"tensorboard --logdir {Path(trainer.log_dir).parent}"
    assert table["evaluate"].startswith("python train.py test --config <an eval config for RandomDigits")
    assert table["evaluate"].endswith(f"--ckpt_path {stopper.stop_checkpoint_path}")
    assert table["best val/acc_pgd"].startswith("not measured")  # eval_size=0


def test_a_cli_fit_summary_names_the_best_checkpoint_and_the_eval_config(in_tmp, lightning_log) -> None:
    from conftest import REPO

    from robustrain.cli import main

    main(
        [
            "fit",
            "--config",
            str(REPO / "configs/mnist5k_fgsm_aliasing.yaml"),
            "--trainer.max_epochs",
            "2",
            "--trainer.limit_train_batches",
            "2",
            "--trainer.limit_val_batches",
            "1",
            "--trainer.enable_progress_bar",
            "false",
            "--model.init_args.eval_size",
            "20",
            "--model.init_args.eval_steps",
            "2",
        ]
    )
    [summary] = [m for m in lightning_log if m.startswith("robustrain: fit finished")]
    lines = summary.splitlines()
    assert lines[0] == "robustrain: fit finished; run folder runs/mnist5k_fgsm_aliasing/version_0"
    table = {line[2:].split("  ", 1)[0]: line[2:].split("  ", 1)[1].strip() for line in lines[1:]}
    assert table["epochs"] == "2 (0-1): max_epochs=2 reached"
    assert table["best val/acc_pgd"].split(": ")[1].startswith("checkpoints/best-epoch=0")
    assert " at epoch " in table["best val/acc_pgd"]
    assert table["aliasing"] == "never fired (no check past its warm-up)"
    assert table["pgd_es"].startswith("monitor only: would")
    assert table["TensorBoard"] == "tensorboard --logdir runs/mnist5k_fgsm_aliasing"
    assert table["evaluate"] == (
        "python train.py test --config configs/eval_robust_mnist5k.yaml "
        "--ckpt_path runs/mnist5k_fgsm_aliasing/version_0"
    )


def test_closest_approach_measures_a_relative_rise_against_its_limit() -> None:
    records = [
        {"epoch": 0, "value": 1.0, "median": math.nan, "limit": math.nan, "warmup": True},
        {"epoch": 1, "value": 5.0, "median": 1.0, "limit": 1.33, "warmup": True},  # warm-up: no decision
        {"epoch": 2, "value": 1.1, "median": 1.0, "limit": 1.33},
        {"epoch": 3, "value": 1.2, "median": 1.0, "limit": 1.33},
        {"epoch": 4, "value": 1.0, "median": 1.1, "limit": 1.463},
    ]
    closest = closest_approach(records, "rise", "relative")
    assert closest["epoch"] == 3 and closest["direction"] == "rise"
    assert closest["change"] == pytest.approx(0.2) and closest["limit_change"] == pytest.approx(0.33)


def test_closest_approach_measures_an_absolute_fall() -> None:
    records = [
        {"epoch": 0, "value": 0.7, "median": math.nan, "limit": math.nan},
        {"epoch": 1, "value": 0.6, "median": 0.7, "limit": 0.5},
        {"epoch": 2, "value": 0.65, "median": 0.6, "limit": 0.4},
    ]
    closest = closest_approach(records, "fall", "absolute")
    assert closest["epoch"] == 1 and closest["direction"] == "fall"
    assert closest["change"] == pytest.approx(-0.1) and closest["limit_change"] == pytest.approx(-0.2)
    assert closest_approach(records[:1]) is None  # nothing decided yet


def test_pgd_es_reports_its_largest_fall(tmp_path) -> None:
    from robustrain.callbacks.run_summary import stop_decision

    stop = PGDEarlyStopping(eps=0.1, alpha=0.05, monitor_only=True)
    stop.history = [
        {"epoch": 0, "kind": "first_batch", "value": 0.5, "median": math.nan, "limit": math.nan, "should_stop": False},
        {"epoch": 1, "kind": "first_batch", "value": 0.42, "median": 0.5, "limit": 0.3, "should_stop": False},
        {"epoch": 2, "kind": "first_batch", "value": 0.45, "median": 0.42, "limit": 0.22, "should_stop": False},
    ]
    assert stop_decision(stop) == (
        "monitor only: would never have stopped; largest fall -0.08 at epoch 1 (0.42 against median 0.5), limit -0.2"
    )


def test_the_evaluation_command_repeats_the_image_changing_data_arguments() -> None:
    assert evaluate_command(MNIST5k(padding=2, inject_beta=0.1), "runs/x/version_0") == (
        "python train.py test --config configs/eval_robust_mnist5k.yaml --ckpt_path runs/x/version_0 "
        "--data.init_args.padding 2 --data.init_args.inject_beta 0.1"
    )
    assert evaluate_command(MNIST5k(), "a.ckpt").endswith("eval_robust_mnist5k.yaml --ckpt_path a.ckpt")


def test_the_evaluation_command_attacks_at_the_runs_radius() -> None:
    # configs/eval_robust_mnist5k.yaml attacks at eps 0.3: a run trained for another threat model says its own
    assert evaluate_command(MNIST5k(), "a.ckpt", eps=0.3).endswith("--ckpt_path a.ckpt")
    assert evaluate_command(MNIST5k(), "a.ckpt", eps=0.2).endswith(
        "--ckpt_path a.ckpt --trainer.callbacks.init_args.eps 0.2"
    )
