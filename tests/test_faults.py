"""Fault injection: kills and resumes, reruns, non-finite training, corrupt or crafted files and bad inputs.

Every run here is a real `train.py` process on the embedded MNIST5k digits (tiny limits), killed by a real signal
where a signal is the fault. Conditions of the identity claims: same machine, one thread (OMP_NUM_THREADS=1), the
config's fixed seed.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO

from robustrain.checkpoints import latest_checkpoint
from robustrain.errors import EXIT_BAD_INPUT, EXIT_NON_FINITE, EXIT_SIGTERM

FLAGSHIP = REPO / "configs/mnist5k_fgsm_aliasing.yaml"
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


def train(workdir: Path, *args: str, config: Path = FLAGSHIP, command: str = "fit") -> subprocess.CompletedProcess:
    """`python train.py <command> --config <config> <args>` in workdir, one thread, tests/_faults.py importable."""
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'tests'}{os.pathsep}{REPO}", "OMP_NUM_THREADS": "1"}
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
        (["--model.init_args.eps", "nan"], "model.init_args.eps: expected a float, got nan"),
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
    config = FLAGSHIP
    if isinstance(args, dict):  # AliasingMonitor settings: a copy of the config with them changed
        settings = yaml.safe_load(FLAGSHIP.read_text())
        settings["config"] = str(FLAGSHIP.parent / settings["config"])  # the base, relative to the original
        monitor = next(c for c in settings["trainer.callbacks"] if c["class_path"].endswith("AliasingMonitor"))
        monitor["init_args"].update(args)
        config, args = tmp_path / "config.yaml", []
        config.write_text(yaml.safe_dump(settings))
    result = train(tmp_path, *TINY, *args, config=config)
    assert result.returncode == EXIT_BAD_INPUT, result.stderr[-3000:]
    line = one_error_line(result)
    assert expected in line and "--debug" in line
    assert not list(tmp_path.glob("runs/**/*.ckpt"))


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
