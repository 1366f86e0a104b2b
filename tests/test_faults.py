"""Fault injection: kills and resumes, reruns, a full disk, changed settings on resume, non-finite training, corrupt
or crafted files and bad inputs.

Every run here is a real `train.py` process on the embedded MNIST5k digits (tiny limits), killed by a real signal
where a signal is the fault; inputs refused before training are also checked in-process (`refused`), which is the
same code path without the start-up cost. Conditions of the identity claims: same machine, one thread
(OMP_NUM_THREADS=1), the config's fixed seed.
"""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO

from robustrain.core.errors import EXIT_BAD_INPUT, EXIT_DISK_FULL, EXIT_NON_FINITE, EXIT_SIGTERM
from robustrain.runs.checkpoints import latest_checkpoint

RECIPE = REPO / "configs/mnist5k_fgsm_aliasing.yaml"
NAME = "mnist5k_fgsm_aliasing"
TINY = [
    "--trainer.max_epochs", "4",
    "--trainer.limit_train_batches", "8",
    "--trainer.limit_val_batches", "2",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--model.init_args.eval_size", "20",
    "--model.init_args.eval_steps", "2",
]  # fmt: skip
HISTORIES = ("aliasing_history.csv", "pgd_es_history.csv")
REPORT = "robustrain.evaluation.comparison_report"  # the comparison report command, python -m


def train(
    workdir: Path, *args: str, config: Path = RECIPE, command: str = "fit", env: dict | None = None
) -> subprocess.CompletedProcess:
    """`python train.py <command> --config <config> <args>` in workdir, one thread, tests/_faults.py importable."""
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'tests'}{os.pathsep}{REPO}", "OMP_NUM_THREADS": "1", **(env or {})}
    cmd = [sys.executable, str(REPO / "train.py"), command, "--config", str(config), *args]
    workdir.mkdir(parents=True, exist_ok=True)
    # a session of its own, so a group kill (DDP) reaches every rank and nothing else
    return subprocess.run(
        cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=600, start_new_session=True
    )


def kill_at(epoch: int, batch: int, signal_name: str, group: bool = False) -> list[str]:
    return [
        "--trainer.callbacks+=_faults.KillAt",
        "--trainer.callbacks.epoch", str(epoch),
        "--trainer.callbacks.batch", str(batch),
        "--trainer.callbacks.signal_name", signal_name,
        "--trainer.callbacks.group", str(group).lower(),
    ]  # fmt: skip


def break_write(epoch: int, fault: str) -> list[str]:
    return [
        "--trainer.callbacks+=_faults.BreakCheckpointWrite",
        "--trainer.callbacks.epoch", str(epoch),
        "--trainer.callbacks.fault", fault,
    ]  # fmt: skip


def changed_config(folder: Path, callback: str, settings: dict) -> Path:
    """A copy of the main job's config with the given callback's settings changed."""
    config = yaml.safe_load(RECIPE.read_text())
    config["config"] = str(RECIPE.parent / config["config"])  # the base, relative to the original
    entry = next(c for c in config["trainer.callbacks"] if c["class_path"].endswith(callback))
    entry["init_args"].update(settings)
    path = folder / f"config_{len(list(folder.glob('config_*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under folder, by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def mount_tmpfs(folder: Path, size: str) -> bool:
    """Mount a fresh tmpfs of `size` at folder; False where mounting is not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    except FileNotFoundError:
        return False
    return done.returncode == 0


def unmount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture
def other_filesystem(tmp_path):
    """A folder on another filesystem than tmp_path (where $TMPDIR points in these tests): a fresh tmpfs where
    mounting is allowed, else a folder in /dev/shm."""
    mnt = tmp_path / "mnt"
    if mount_tmpfs(mnt, "64m"):
        yield mnt
        unmount(mnt)
        return
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second filesystem: mounting a tmpfs is not allowed here and /dev/shm is missing")
    folder = Path(tempfile.mkdtemp(dir=shm))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def version(workdir: Path, n: int = 0, name: str = NAME) -> Path:
    return workdir / "runs" / name / f"version_{n}"


def assert_same_run(a: Path, b: Path) -> None:
    """Identical histories, checkpoint files, final weights, optimizer step and best score."""
    for history in HISTORIES:
        assert (a / history).read_text() == (b / history).read_text(), history
    assert sorted(p.name for p in (a / "checkpoints").iterdir()) == sorted(
        p.name for p in (b / "checkpoints").iterdir()
    )
    last_a, last_b = (torch.load(v / "checkpoints/last.ckpt", weights_only=True) for v in (a, b))
    assert (last_a["epoch"], last_a["global_step"]) == (last_b["epoch"], last_b["global_step"])
    for key, tensor in last_a["state_dict"].items():
        assert torch.equal(tensor, last_b["state_dict"][key]), key
    best = [
        [s.get("best_model_score") for k, s in ckpt["callbacks"].items() if "val/acc_pgd" in k]
        for ckpt in (last_a, last_b)
    ]
    assert best[0] == best[1]


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("robustrain")]
    assert len(lines) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run, run twice with the same command: version_0 and version_1."""
    workdir = tmp_path_factory.mktemp("reference")
    for _ in range(2):
        result = train(workdir, *TINY)
        assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_the_same_command_twice_gives_identical_runs_in_their_own_folders(reference):
    assert_same_run(version(reference, 0), version(reference, 1))
    path, n = latest_checkpoint(reference / "runs" / NAME)
    assert n == 1 and path == version(reference, 1) / "checkpoints/last.ckpt"  # `last` is the newest run's
    assert not list((reference / "runs" / NAME).glob("version_*/checkpoints/*-v1.ckpt"))  # nothing mixed


@pytest.mark.parametrize(
    ("epoch", "batch", "signal_name"),
    [(2, 3, "SIGTERM"), (1, 5, "SIGKILL"), (2, 0, "SIGKILL")],
    ids=["sigterm-mid-epoch", "sigkill-mid-epoch", "sigkill-epoch-boundary"],
)
def test_a_killed_run_resumes_to_the_identical_run(reference, tmp_path, epoch, batch, signal_name):
    killed = train(tmp_path, *TINY, *kill_at(epoch, batch, signal_name))
    expected = EXIT_SIGTERM if signal_name == "SIGTERM" else -signal.SIGKILL
    assert killed.returncode == expected, killed.stderr[-3000:]
    assert torch.load(version(tmp_path) / "checkpoints/last.ckpt", weights_only=True)["epoch"] == epoch - 1
    resumed = train(tmp_path, *TINY, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not version(tmp_path, 1).exists()  # the resumed run continues its own folder
    assert_same_run(version(reference), version(tmp_path))


def test_ddp_run_killed_and_resumed_takes_the_same_decisions_on_both_ranks(tmp_path):
    ddp = [*TINY, "--trainer.max_epochs", "3", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    record = ["--trainer.callbacks+=_faults.RecordStop", "--trainer.callbacks.folder"]
    whole = train(tmp_path / "whole", *ddp, *record, "stops")
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = train(tmp_path / "killed", *ddp, *kill_at(1, 4, "SIGKILL", group=True))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    resumed = train(tmp_path / "killed", *ddp, *record, "stops", "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(version(tmp_path / "whole"), version(tmp_path / "killed"))
    views = [
        json.loads((tmp_path / run / "stops" / f"rank{r}.json").read_text())
        for run in ("whole", "killed")
        for r in (0, 1)
    ]
    assert all(view == views[0] for view in views), views
    assert len(views[0]["decisions"]) == 3


# --- checkpoint writes: a kill or a full disk mid-write -------------------------------------------------------------
def test_a_kill_while_last_ckpt_is_written_to_another_filesystem_keeps_the_previous_one(
    reference, tmp_path, other_filesystem
):
    tmpdir = tmp_path / "tmp"  # $TMPDIR, on another filesystem than the run: a move from it is a copy
    tmpdir.mkdir()
    runs = ["--trainer.logger.init_args.save_dir", str(other_filesystem / "runs")]
    env = {"TMPDIR": str(tmpdir)}
    killed = train(tmp_path, *TINY, *runs, *break_write(2, "kill"), env=env)  # killed halfway through epoch 2's
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run = version(other_filesystem)
    assert torch.load(run / "checkpoints/last.ckpt", weights_only=True)["epoch"] == 1  # epoch 1's, whole
    assert not [p for p in tmpdir.rglob("*") if p.is_file() and p.stat().st_size > 100_000]  # nothing staged there
    resumed = train(tmp_path, *TINY, *runs, "--ckpt_path", "last", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not list(run.rglob("*.partial"))  # the killed writer's temp file is gone
    assert_same_run(version(reference), run)


def test_a_full_disk_keeps_the_previous_checkpoint_says_so_in_one_line_and_resumes(reference, tmp_path):
    small = tmp_path / "small"
    real = mount_tmpfs(small, "5m")  # room for epoch 0's best and last checkpoints (2 MB each), not for a third
    fault = [] if real else break_write(1, "full")  # where mounting is not allowed: ENOSPC injected into the write
    runs = ["--trainer.logger.init_args.save_dir", str(small / "runs")]
    try:
        full = train(tmp_path, *TINY, *runs, *fault)
        assert full.returncode == EXIT_DISK_FULL, full.stderr[-3000:]
        line = one_error_line(full)
        assert f"no space left in {small / 'runs'}" in line and "bytes" in line and "--ckpt_path last" in line
        run = version(small)
        assert torch.load(run / "checkpoints/last.ckpt", weights_only=True)["epoch"] == 0
        for ckpt in (run / "checkpoints").glob("*.ckpt"):  # nothing torn under a final name
            assert torch.load(ckpt, weights_only=True)["epoch"] <= 1, ckpt
        assert not list(run.rglob("*.partial"))
        if real:
            subprocess.run(["mount", "-o", "remount,size=64m", str(small)], check=True)
        resumed = train(tmp_path, *TINY, *runs, "--ckpt_path", "last")
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert_same_run(version(reference), run)
    finally:
        if real:
            unmount(small)


# --- resumes under changed settings -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("PGDEarlyStopping", {"steps": 3}), ["pgd_es/steps 5 -> 3"]),
        (("AliasingMonitor", {"monitor": "conv2"}), ["aliasing/monitor 'mean' -> 'conv2'"]),
        (
            ("AliasingMonitor", {"threshold": 0.5, "window": 5}),
            ["aliasing/threshold 0.33 -> 0.5", "aliasing/window 3 -> 5"],
        ),
        (["--trainer.max_epochs", "6"], ["trainer.max_epochs 4 -> 6 (the lr schedule spans max_epochs)"]),
        (["--seed_everything", "5"], ["seed_everything 0 -> 5"]),
        (
            ["--model.init_args.lr", "0.01", "--model.init_args.eval_fgsm", "false"],
            ["model.init_args.lr 0.005 -> 0.01"],
        ),
    ],
    ids=["pgd-es-steps", "aliasing-monitor", "aliasing-rule", "max-epochs", "seed", "lr"],
)
def test_a_resume_under_changed_settings_is_refused_naming_each_change_and_touches_nothing(
    reference, tmp_path, change, expected
):
    shutil.copytree(reference / "runs", tmp_path / "runs")
    before = files_of(tmp_path / "runs")
    args = change if isinstance(change, list) else []
    config = changed_config(tmp_path, *change) if isinstance(change, tuple) else RECIPE
    result = train(tmp_path, *TINY, *args, "--ckpt_path", "last", config=config)
    assert result.returncode == EXIT_BAD_INPUT, result.stderr[-3000:]
    line = one_error_line(result)
    assert all(text in line for text in expected), line
    assert "would mix two runs" in line and "--allow_changed_settings true" in line
    assert "eval_fgsm" not in line  # a harmless change passes
    assert "Seed set to 5" not in result.stderr + result.stdout  # the new seed was never in force
    assert files_of(tmp_path / "runs") == before  # histories, checkpoints, config and logs untouched


def test_an_allowed_change_continues_the_history_and_the_checkpoint_records_it(reference, tmp_path):
    killed = train(tmp_path, *TINY, *kill_at(2, 0, "SIGKILL"))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    config = changed_config(tmp_path, "PGDEarlyStopping", {"steps": 3})
    allow = ["--trainer.max_epochs", "5", "--allow_changed_settings", "true", "--ckpt_path", "last"]
    resumed = train(tmp_path, *TINY, *allow, config=config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "pgd_es/steps 5 -> 3" in resumed.stderr and "the lr schedule is re-sized" in resumed.stderr
    for history in HISTORIES:  # one history: the epochs before the change kept, the new ones appended
        rows = (version(tmp_path) / history).read_text().splitlines()
        kept = (version(reference) / history).read_text().splitlines()[:3]  # header and epochs 0, 1
        assert len(rows) == 1 + 5 and rows[:3] == kept, history
    ckpt = torch.load(version(tmp_path) / "checkpoints/last.ckpt", weights_only=True)
    [change] = ckpt["robustrain"]["settings_changes"]
    assert change["epoch"] == 2 and ["pgd_es/steps", 5, 3] in change["changes"]
    assert ckpt["callbacks"]["PGDEarlyStopping"]["settings"]["steps"] == 3


def test_a_checkpoint_of_another_training_module_is_refused_for_fit(tmp_path):
    standard = train(tmp_path, *TINY, "--trainer.max_epochs", "1", config=REPO / "configs/mnist5k_standard.yaml")
    assert standard.returncode == 0, standard.stderr[-3000:]
    ckpt = version(tmp_path, name="mnist5k_standard") / "checkpoints/last.ckpt"
    result = train(tmp_path, *TINY, "--ckpt_path", str(ckpt))
    assert result.returncode == EXIT_BAD_INPUT, result.stderr[-3000:]
    assert "model.class_path 'StandardTraining' -> 'FGSMTraining'" in one_error_line(result)
    assert not (tmp_path / "runs" / NAME).exists()


# --- no silent success --------------------------------------------------------------------------------------------
def test_resuming_a_finished_run_trains_nothing_and_says_so(reference, tmp_path):
    shutil.copytree(reference / "runs", tmp_path / "runs")
    before = files_of(tmp_path / "runs")
    result = train(tmp_path, *TINY, "--ckpt_path", "last")
    assert result.returncode == EXIT_BAD_INPUT, result.stderr[-3000:]
    assert "nothing is left to train" in one_error_line(result)
    assert files_of(tmp_path / "runs") == before


def test_testing_non_finite_weights_is_refused(reference, tmp_path):
    ckpt = torch.load(version(reference) / "checkpoints/last.ckpt", weights_only=True)
    ckpt["state_dict"]["net.conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(ckpt, tmp_path / "nan.ckpt")
    evaluation = REPO / "configs/eval_robust_mnist5k.yaml"
    result = train(tmp_path, "--ckpt_path", "nan.ckpt", config=evaluation, command="test")
    assert result.returncode == EXIT_BAD_INPUT, result.stderr[-3000:]
    assert "holds non-finite weights (net.conv1.weight)" in one_error_line(result)


def test_attack_steps_larger_than_the_radius_and_an_fgsm_step_of_zero_are_warned_about(tmp_path):
    config = changed_config(tmp_path, "PGDEarlyStopping", {"alpha": 0.9})  # eps: the module's eval_eps, 0.3
    one_batch = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1"]
    slips = ["--model.init_args.alpha", "0", "--model.init_args.eval_alpha", "0.5"]
    result = train(tmp_path, *TINY, *one_batch, *slips, config=config)
    assert result.returncode == 0, result.stderr[-3000:]  # legal settings: warned about, not refused
    text = " ".join(result.stderr.split())
    assert "PGDEarlyStopping: alpha=0.9 is larger than eps=0.3" in text
    assert "FGSMTraining: eval_alpha=0.5 is larger than eval_eps=0.3" in text
    assert "FGSMTraining alpha=0 takes no attack step: it trains on the random start alone" in text


# --- non-finite training ------------------------------------------------------------------------------------------
def assert_all_checkpoints_finite(run: Path) -> None:
    for path in run.glob("**/*.ckpt"):
        for key, tensor in torch.load(path, weights_only=True)["state_dict"].items():
            assert torch.isfinite(tensor).all(), f"{path}: {key}"


@pytest.mark.parametrize("config", ["mnist5k_fgsm.yaml", "mnist5k_fgsm_aliasing.yaml"])
def test_a_diverging_run_stops_at_once_with_a_non_zero_exit_and_finite_checkpoints(tmp_path, config):
    huge_lr = [
        "--model.init_args.optimizer",
        "sgd",
        "--model.init_args.lr",
        "1e6",
        "--model.init_args.lr_schedule",
        "constant",
    ]
    result = train(tmp_path, *TINY, *huge_lr, config=REPO / "configs" / config)
    assert result.returncode == EXIT_NON_FINITE, result.stderr[-3000:]
    line = one_error_line(result)
    assert "non-finite" in line and "step" in line
    assert_all_checkpoints_finite(tmp_path / "runs")


def test_nan_weights_mid_run_keep_the_last_finite_checkpoint(tmp_path):
    nan_at_epoch_2 = ["--trainer.callbacks+=_stopping_fixtures.ScaleWeightAt", "--trainer.callbacks.epoch", "2",
                      "--trainer.callbacks.factor", ".nan"]  # fmt: skip
    result = train(tmp_path, *TINY, *nan_at_epoch_2)
    assert result.returncode == EXIT_NON_FINITE, result.stderr[-3000:]
    assert "epoch 2, step 16" in one_error_line(result)  # the first step of epoch 2 (8 steps an epoch)
    assert torch.load(version(tmp_path) / "checkpoints/last.ckpt", weights_only=True)["epoch"] == 1
    assert_all_checkpoints_finite(tmp_path / "runs")


# --- corrupt, crafted and remote checkpoints ----------------------------------------------------------------------
class _Exploit:
    """Unpickling it would create the file `marker`: what a crafted checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def crafted_checkpoint(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        torch.save({"epoch": 3, "state_dict": {}, "payload": _Exploit(marker)}, f)
    return path


def test_a_crafted_checkpoint_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = crafted_checkpoint(tmp_path / "runs/crafted/version_0/checkpoints/last.ckpt", marker)
    fit = train(tmp_path, *TINY, "--ckpt_path", str(ckpt))
    assert fit.returncode == EXIT_BAD_INPUT and "refuses to unpickle" in one_error_line(fit)
    report = subprocess.run(
        [sys.executable, "-m", REPORT, str(tmp_path / "runs/crafted"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert report.returncode == EXIT_BAD_INPUT and "refuses to unpickle" in report.stderr
    assert not marker.exists()


def test_a_corrupt_checkpoint_is_named_in_one_line(tmp_path):
    ckpt = tmp_path / "broken.ckpt"
    ckpt.write_bytes(b"PK\x03\x04 truncated")
    result = train(tmp_path, *TINY, "--ckpt_path", str(ckpt))
    assert result.returncode == EXIT_BAD_INPUT
    line = one_error_line(result)
    assert "broken.ckpt is not a readable checkpoint" in line and "weights_only=False" not in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--ckpt_path", "https://example.com/model.ckpt"], "is a URL"),
        (["--weights_only", "false"], "weights_only=false is refused"),
        (["--ckpt_path", "last"], "no run to resume"),
        (["--ckpt_path", "missing.ckpt"], "does not exist"),
    ],
    ids=["remote", "weights-only-false", "last-without-run", "missing"],
)
def test_unsafe_or_missing_checkpoints_are_refused_before_training(tmp_path, args, expected):
    result = train(tmp_path, *TINY, *args)
    assert result.returncode == EXIT_BAD_INPUT and expected in one_error_line(result)
    assert not list(tmp_path.glob("runs/**/*.ckpt"))


def test_a_checkpoint_of_another_network_is_refused_for_test(reference, tmp_path):
    ckpt = torch.load(version(reference) / "checkpoints/last.ckpt", weights_only=True)
    ckpt["hyper_parameters"]["net"] = {"class_path": "robustrain.models.PreActResNet18", "init_args": {}}
    torch.save(ckpt, tmp_path / "prn18.ckpt")
    result = train(
        tmp_path,
        "--ckpt_path",
        str(tmp_path / "prn18.ckpt"),
        config=REPO / "configs/eval_robust_mnist5k.yaml",
        command="test",
    )
    assert result.returncode == EXIT_BAD_INPUT
    assert "holds a robustrain.models.PreActResNet18 network but the config asks for" in one_error_line(result)


# --- bad inputs: one line, before training, nothing lost ----------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model.init_args.eps", "nan"], "model.init_args.eps: got nan, but only a finite number is valid here"),
        (["--model.init_args.eps", ".nan"], "eps=nan is not valid: it must be in [0, 1]"),
        (["--model.init_args.epz", "0.3"], "epz"),
        (["--model.init_args.eval_size", "0"], "monitors 'val/acc_pgd', which this run never logs"),
        (["--data.init_args.val_size", "5000"], "val_size=5000 leaves no training images"),
        ({"probe_size": 100000}, "n=100000 is not valid: it must be an integer in 1..4000 (probe images"),
        (
            {"layers": ["conv9"]},
            "layers=['conv9'] is not valid: it must be a non-empty subset of the downsampling layers",
        ),
    ],
    ids=["eps-nan-text", "eps-nan", "unknown-key", "eval-size-0", "val-size", "probe-size", "layer"],
)
def test_bad_inputs_get_one_line_before_training(tmp_path, args, expected):
    config = RECIPE
    if isinstance(args, dict):  # AliasingMonitor settings: a copy of the config with them changed
        settings = yaml.safe_load(RECIPE.read_text())
        settings["config"] = str(RECIPE.parent / settings["config"])  # the base, relative to the original
        monitor = next(c for c in settings["trainer.callbacks"] if c["class_path"].endswith("AliasingMonitor"))
        monitor["init_args"].update(args)
        config, args = tmp_path / "config.yaml", []
        config.write_text(yaml.safe_dump(settings))
    result = train(tmp_path, *TINY, *args, config=config)
    assert result.returncode == EXIT_BAD_INPUT, result.stderr[-3000:]
    line = one_error_line(result)
    assert expected in line and "--debug" in line
    assert not list(tmp_path.glob("runs/**/*.ckpt"))
    assert not list(tmp_path.glob("runs/*/version_*"))  # a refused run leaves no (empty) version folder


def refused(capsys, *args: str, config: Path = RECIPE, command: str = "fit") -> str:
    """The one line `train.py <command> --config <config> <args>` is refused with (exit 2), run in-process."""
    from robustrain.cli import main

    capsys.readouterr()
    logging.disable(logging.INFO)  # Lightning's info lines go to a handler bound to the first test's capture
    try:
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--config", str(config), *args])
    finally:
        logging.disable(logging.NOTSET)
    captured = capsys.readouterr()
    assert exit_info.value.code == EXIT_BAD_INPUT, captured.err[-3000:]
    lines = [line for line in captured.err.splitlines() if line.startswith("robustrain")]
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err[-3000:]
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--trainer.max_epochs", "-2"], "trainer.max_epochs=-2 is not valid: give trainer.max_epochs >= 1"),
        (["--trainer.max_epochs", "-1"], "trainer.max_epochs=-1 (no limit) is not valid here"),
        (["--trainer.limit_train_batches", "0"], "trainer.limit_train_batches=0 trains no batch"),
        (["--seed_everything", "abc"], "seed_everything: expected an integer seed, or true"),
        (["--model.init_args.eval_restarts", "0"], "eval_restarts=0 is not valid"),
        (["--ckpt_path", ""], "ckpt_path is empty"),
        pytest.param(
            ["--trainer.accelerator", "gpu"],
            "trainer.accelerator=gpu asks for a GPU, but this machine has none",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU"),
        ),
    ],
    ids=["max-epochs-neg", "max-epochs-unlimited", "no-batch", "seed-text", "eval-restarts", "empty-ckpt", "no-gpu"],
)
def test_refused_values_get_one_line_and_leave_nothing(in_tmp, capsys, args, expected):
    line = refused(capsys, *TINY, *args)
    assert expected in line
    assert not (in_tmp / "runs").exists()


@pytest.mark.parametrize("kind", ["syntax", "binary", "nested"])
def test_an_unreadable_config_file_is_named(in_tmp, capsys, kind):
    bad = in_tmp / "bad.yaml"
    if kind == "binary":
        bad.write_bytes(bytes(range(256)) * 4)
    else:
        bad.write_text("model:\n  init_args: [\n")
    config = bad
    if kind == "nested":  # a config whose `config:` names the broken one
        config = in_tmp / "top.yaml"
        config.write_text("config: bad.yaml\n")
    line = refused(capsys, config=config)
    assert f"config file {bad}" in line
    assert ("is not a text (YAML) file" if kind == "binary" else "is not valid YAML at line 3") in line


def _payload_checkpoint(path: Path, marker: Path) -> Path:
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"epoch": 1, "state_dict": {}, "payload": Payload()}, path)
    return path


@pytest.mark.parametrize("command", ["fit", "test"])
@pytest.mark.parametrize("kind", ["wrong-shape", "bare-state-dict", "os-system", "non-finite"])
def test_a_refused_checkpoint_gets_one_line_that_says_why(reference, in_tmp, capsys, kind, command):
    ckpt = torch.load(version(reference) / "checkpoints/last.ckpt", weights_only=True)
    path, marker = in_tmp / f"{kind}.ckpt", in_tmp / "ran"
    if kind == "wrong-shape":
        ckpt["state_dict"]["net.conv1.weight"] = torch.zeros(3, 3)
        torch.save(ckpt, path)
        expected = "does not fit the model: net.conv1.weight is (3, 3) in the checkpoint but (16, 1, 4, 4)"
    elif kind == "bare-state-dict":
        torch.save(ckpt["state_dict"], path)
        expected = "is not a Lightning checkpoint: it lacks 'state_dict', 'pytorch-lightning_version'"
    elif kind == "os-system":
        _payload_checkpoint(path, marker)
        expected = "was refused as unsafe: loading it would run code (posix.system)"
    else:
        ckpt["state_dict"]["net.fc2.bias"][0] = float("inf")
        torch.save(ckpt, path)
        expected = "holds non-finite weights (net.fc2.bias)"
    args = ["--ckpt_path", str(path)]
    line = (
        refused(capsys, *TINY, *args)
        if command == "fit"
        else refused(capsys, *args, config=REPO / "configs/eval_robust_mnist5k.yaml", command="test")
    )
    assert f"{path} " in line and expected in line
    assert not marker.exists() and not (in_tmp / "runs").exists()


def test_testing_on_images_the_network_cannot_take_is_refused(reference, in_tmp, capsys):
    ckpt = version(reference) / "checkpoints/last.ckpt"
    padded = ["--ckpt_path", str(ckpt), "--data.init_args.padding", "2"]  # 32 x 32 digits for a 28 x 28 network
    line = refused(capsys, *padded, config=REPO / "configs/eval_robust_mnist5k.yaml", command="test")
    assert "the network (SmallCNN) does not take the data's images: MNIST5k gives (1, 32, 32) images" in line


def test_an_output_folder_that_cannot_be_created_is_refused(tmp_path):
    (tmp_path / "a_file").write_text("")
    result = train(tmp_path, *TINY, "--trainer.logger.init_args.save_dir", str(tmp_path / "a_file/runs"))
    assert result.returncode == EXIT_BAD_INPUT and "is a file, not a folder" in one_error_line(result)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_a_read_only_output_folder_is_refused(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o555)
    result = train(tmp_path, *TINY, "--trainer.logger.init_args.save_dir", str(tmp_path / "ro/runs"))
    assert result.returncode == EXIT_BAD_INPUT and "is not writable" in one_error_line(result)


def test_a_rerun_after_a_refused_input_keeps_the_earlier_run(reference):
    before = sorted(p.relative_to(reference) for p in reference.glob("runs/**/*") if p.is_file())
    result = train(reference, *TINY, "--model.init_args.eps", "2")
    assert result.returncode == EXIT_BAD_INPUT
    after = sorted(p.relative_to(reference) for p in reference.glob("runs/**/*") if p.is_file())
    assert set(before) <= set(after)


def test_report_on_a_folder_without_runs_fails(tmp_path):
    (tmp_path / "empty").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", REPORT, str(tmp_path / "empty"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == EXIT_BAD_INPUT and "holds no robustrain run" in result.stderr


def report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", REPORT, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"model: [\n", "is not valid YAML at line 2"),
        (bytes(range(256)) * 4, "is not a text (YAML) file"),
        (b"- a\n- list\n", "must hold a LightningCLI config (a mapping), not a list"),
    ],
    ids=["syntax", "binary", "list"],
)
def test_report_names_an_unreadable_run_config(tmp_path, content, expected):
    config = tmp_path / "run/version_0/config.yaml"
    config.parent.mkdir(parents=True)
    config.write_bytes(content)
    result = report(str(tmp_path / "run"), "--out", str(tmp_path / "out"))
    assert result.returncode == EXIT_BAD_INPUT and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"{config} {expected}" in result.stderr


def test_report_refuses_an_output_folder_under_a_file(reference, tmp_path):
    (tmp_path / "a_file").write_text("")
    result = report(str(reference / "runs" / NAME), "--out", str(tmp_path / "a_file/out"))
    assert result.returncode == EXIT_BAD_INPUT and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "--out" in result.stderr and "is a file, not a folder" in result.stderr


def test_replay_names_an_empty_history(tmp_path):
    for content in ("", "epoch,step,kind,value\n"):
        (tmp_path / "empty.csv").write_text(content)
        result = subprocess.run(
            [sys.executable, "-m", "robustrain.stopping.replay", str(tmp_path / "empty.csv")],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == EXIT_BAD_INPUT and "Traceback" not in result.stderr
        assert f"{tmp_path / 'empty.csv'} holds no records" in result.stderr


def test_replay_names_the_file_and_line_of_a_malformed_history(reference, tmp_path):
    rows = (version(reference) / "aliasing_history.csv").read_text().splitlines()
    rows[2] = rows[2].replace(",", ",oops,", 1)
    (tmp_path / "bad.csv").write_text("\n".join(rows) + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "robustrain.stopping.replay", str(tmp_path / "bad.csv")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == EXIT_BAD_INPUT
    assert "bad.csv, line 3" in result.stderr and "Traceback" not in result.stderr


def test_image_folder_reports_a_corrupt_image_at_setup(tmp_path):
    from PIL import Image

    from robustrain.data import ImageFolder

    for split in ("train", "val"):
        for cls in ("a", "b"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(folder / f"{i}.png")
    (tmp_path / "train/b/broken.png").write_bytes(b"\x89PNG not really")
    data = ImageFolder(str(tmp_path), resize_size=8, crop_size=8, val_size=2, num_workers=0)
    with pytest.raises(ValueError, match=r"1 image\(s\) under .* cannot be read: .*broken.png"):
        data.setup("fit")
    assert ImageFolder(str(tmp_path), 8, 8, val_size=2, num_workers=0, check_images=False).setup("fit") is None
