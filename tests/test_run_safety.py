"""The handed-back model is never lost, one run folder holds one run, and every failure is one line: the 14 cases an
audit of robustrain's command line found, each as a test (numbered as in the audit), and the fault tests of the stop.

 1. a kill or a full disk while `<stop>_stop.ckpt` is written: the stop's model survives (and a recorded stop whose
    model is missing is refused by resume and test);
 2. two processes in one run folder: the second is refused, naming the holder's PID; a stale lock is taken over;
 3. `test` without a checkpoint is refused unless `--untrained true`;
 4. `limit_*_batches 1` is one batch;
 5. a read-only checkpoints folder: one line, before training (and EROFS mid-run: exit 2, one line);
 6. a full disk hit by TensorBoard's event writer or Lightning's hparams.yaml: exit 4, one line;
 7. the study reports on a missing `--out`: one line;
 8. a folder where a history CSV goes: one line, before training;
 9. non-UTF-8 bytes in a history CSV: the file is named (and a resume rewrites it);
10. the disk-full advice fits the situation (resume, or run again);
11. a raw pickle of any protocol is called unsafe;
12. an empty config file is named as empty;
13. the closing summary's commands are shell-quoted;
14. `nan` on the command line is refused as not finite.
"""

import errno
import os
import pickle
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO
from test_faults import TINY, changed_config, one_error_line, refused, train, version

from robustrain.cli.lightning_cli import RobustrainCLI
from robustrain.cli.main import _advice
from robustrain.core.errors import EXIT_BAD_INPUT, EXIT_DISK_FULL
from robustrain.runs.checkpoints import read_checkpoint
from robustrain.runs.lock import LOCK_NAME, RunFolderInUseError, RunFolderLock
from robustrain.stopping.history import read_history_csv, write_history_csv

NAME = "mnist5k_fgsm_aliasing"
STOP = "aliasing_stop.ckpt"
EARLY_STOP = {"threshold": 0.01, "window": 1, "warmup_epochs": 0, "wait_for_lr_peak": False}  # stops at epoch 1


def fault(callback: str, **init_args) -> list[str]:
    args = [f"--trainer.callbacks+=_faults.{callback}"]
    for key, value in init_args.items():
        args += [f"--trainer.callbacks.{key}", str(value)]
    return args


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> tuple[Path, Path]:
    """(workdir, config): an uninterrupted run whose aliasing stop ends it at epoch 1, handing back epoch 0."""
    workdir = tmp_path_factory.mktemp("stopped")
    config = changed_config(workdir, "AliasingMonitor", EARLY_STOP)
    result = train(workdir, *TINY, config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (version(workdir) / STOP).is_file()
    return workdir, config


def stop_weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / STOP, weights_only=True)["state_dict"]


def records_a_stop(ckpt: Path) -> bool:
    states = torch.load(ckpt, weights_only=True)["callbacks"]
    return any(isinstance(s, dict) and s.get("stopped_epoch") is not None for s in states.values())


# --- 1. the stop's model is durable before the stop is recorded ---------------------------------------------------
@pytest.mark.parametrize(
    ("write", "kind"),
    [
        ({"name": "aliasing_stop", "fault": "kill"}, "kill"),
        ({"name": "aliasing_stop", "fault": "full"}, "full"),
        ({"name": "aliasing_history", "fault": "kill", "skip": 1}, "kill"),  # the stop's epoch's history
        ({"name": "last", "fault": "kill", "skip": 1}, "kill"),  # the last.ckpt that records the stop
    ],
    ids=["kill-at-stop-ckpt", "full-disk-at-stop-ckpt", "kill-at-stop-history", "kill-at-last-ckpt-of-stop"],
)
def test_the_stop_model_survives_a_kill_or_full_disk_at_every_write_of_the_stop(stopped, tmp_path, write, kind):
    reference, config = stopped
    broken = train(tmp_path, *TINY, *fault("BreakRename", **write), config=config)
    run = version(tmp_path)
    if kind == "kill":
        assert broken.returncode == -9, broken.stderr[-3000:]
    else:
        assert broken.returncode == EXIT_DISK_FULL, broken.stderr[-3000:]
        assert "free space, then resume with the same command and --ckpt_path last" in one_error_line(broken)
    # whatever happened, no checkpoint records a stop whose model is not on disk
    if records_a_stop(run / "checkpoints/last.ckpt"):
        assert (run / STOP).is_file()
    stray = (run / STOP).is_file() and not records_a_stop(run / "checkpoints/last.ckpt")
    resumed = train(tmp_path, *TINY, "--ckpt_path", "last", config=config)
    if resumed.returncode != 0:  # the kill came after the stop was recorded with its model: nothing left to train
        assert "nothing is left to train" in one_error_line(resumed) and (run / STOP).is_file()
    # a stop model no checkpoint recorded (killed before last.ckpt recorded it) is kept aside, never taken as the run's
    assert (run / "aliasing_stop.before-resume-1.ckpt").is_file() == stray
    assert not list(run.rglob("*.partial"))
    for key, tensor in stop_weights(version(reference)).items():  # the model the uninterrupted run handed back
        assert torch.equal(tensor, stop_weights(run)[key]), key


def copy_run(reference: Path, tmp_path: Path) -> Path:
    shutil.copytree(reference / "runs", tmp_path / "runs")
    return version(tmp_path)


def test_a_recorded_stop_without_its_model_is_refused_by_resume_and_test(stopped, in_tmp, capsys):
    reference, config = stopped
    run = copy_run(reference, in_tmp)
    (run / STOP).unlink()
    line = refused(capsys, *TINY, "--ckpt_path", "last", config=config)
    assert "nothing can be resumed: the run in runs/" in line
    assert f"recorded an early stop (AliasingMonitor, epoch 1) but the model it hands back, runs/{NAME}/" in line
    line = refused(capsys, "--ckpt_path", str(in_tmp / "runs" / NAME), config=config, command="test")
    assert "is missing (removed, or never fully written)" in line and "pass --ckpt_path" in line


# --- 2. one run folder, one run --------------------------------------------------------------------------------------
def test_a_second_process_on_a_locked_run_folder_is_refused_naming_the_holder_and_touching_nothing(
    stopped, in_tmp, capsys
):
    reference, config = stopped
    run = copy_run(reference, in_tmp)
    holder = subprocess.Popen(  # another process holding the run's folder
        [sys.executable, "-c", f"from robustrain.runs.lock import RunFolderLock; RunFolderLock({str(run)!r}).acquire()"
         "; import sys; sys.stdout.write('held\\n'); sys.stdout.flush(); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
        # a new run pinned to the held folder
        line = refused(capsys, *TINY, "--trainer.logger.init_args.version", "0", config=config)
        assert f"run folder runs/{NAME}/version_0 is in use by process {holder.pid}" in line
        assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    finally:
        holder.communicate("")


def test_the_lock_refuses_a_second_holder_releases_on_exit_and_takes_over_a_stale_one(tmp_path):
    with RunFolderLock(tmp_path) as lock:
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
        with pytest.raises(RunFolderInUseError, match=f"in use by process {os.getpid()}"):
            RunFolderLock(tmp_path).acquire()
        assert lock.held
    assert (tmp_path / LOCK_NAME).read_text() == ""  # released: free, no warning for the next one
    (tmp_path / LOCK_NAME).write_text(f"{dead_pid()}\n")  # a holder that ended without releasing it
    with pytest.warns(UserWarning, match="took over the lock of process .* no longer running"):
        RunFolderLock(tmp_path).acquire().release()


def test_the_temp_files_of_a_run_killed_before_its_first_checkpoint_are_removed_by_the_next_run(in_tmp):
    from robustrain.cli import main

    killed = in_tmp / "runs/mnist5k_fgsm/version_0"
    (killed / "checkpoints").mkdir(parents=True)
    debris = [
        killed / f".config.yaml.{dead_pid()}.abc.partial",
        killed / f"checkpoints/.last.ckpt.{dead_pid()}.x.partial",
    ]
    for path in debris:
        path.write_bytes(b"half")
    main(["fit", "--config", str(REPO / "configs/mnist5k_fgsm.yaml"), "--trainer.max_epochs", "1",
          "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "0",
          "--trainer.enable_progress_bar", "false"])  # fmt: skip
    assert not any(path.exists() for path in debris)


# --- 3. and 4. no silent defaults that mean something else -----------------------------------------------------------
def test_test_without_a_checkpoint_is_refused_unless_untrained_is_asked_for(in_tmp, capsys):
    line = refused(capsys, config=REPO / "configs/eval_robust_mnist5k.yaml", command="test")
    assert "test without --ckpt_path would evaluate a freshly initialised network" in line
    assert "--untrained true" in line
    assert not (in_tmp / "runs").exists()


@pytest.mark.parametrize(
    ("spelled", "expected"),
    [(["--trainer.limit_train_batches", "1"], 1), (["--trainer.limit_train_batches=1.0"], 1.0), ("yaml", 1)],
    ids=["one", "all", "yaml-one"],
)
def test_limit_batches_1_is_one_batch_and_1_0_all_of_them(in_tmp, spelled, expected):
    from robustrain.cli import main

    config = REPO / "configs/mnist5k_fgsm.yaml"
    if spelled == "yaml":
        config = in_tmp / "one.yaml"
        config.write_text(f"config: {REPO / 'configs/mnist5k_fgsm.yaml'}\ntrainer.limit_train_batches: 1\n")
        spelled = []
    cli = main(["--config", str(config), "--trainer.limit_val_batches", "1", *spelled], run=False)
    assert cli.trainer.limit_train_batches == expected and type(cli.trainer.limit_train_batches) is type(expected)
    assert cli.trainer.limit_val_batches == 1 and isinstance(cli.trainer.limit_val_batches, int)


# --- 5., 6. and 10. every write error is one line, with advice that fits --------------------------------------------
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="mounting a tmpfs needs root")
def test_a_read_only_checkpoints_folder_is_refused_in_one_line_before_training(stopped, tmp_path, capsys):
    reference, config = stopped
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)]).returncode != 0:
        pytest.skip("mounting a tmpfs is not allowed here")
    try:
        copy_run(reference, mnt)
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        os.chdir(mnt)
        line = refused(capsys, *TINY, "--ckpt_path", "last", config=config)
        assert f"runs/{NAME} is not writable" in line
    finally:
        os.chdir(REPO)
        subprocess.run(["umount", "-l", str(mnt)])


@pytest.mark.parametrize(
    ("name", "errno_name", "code", "expected"),
    [
        ("events.out.tfevents", "ENOSPC", EXIT_DISK_FULL, "no space left on the device: writing runs/"),
        ("hparams.yaml", "ENOSPC", EXIT_DISK_FULL, "no space left on the device: writing "),
        ("hparams.yaml@write", "ENOSPC", EXIT_DISK_FULL, "no space left on the device: writing "),
        ("last.ckpt", "EROFS", EXIT_BAD_INPUT, "checkpoints/last.ckpt: it is on a read-only filesystem"),
    ],
    ids=["tensorboard-full", "hparams-full", "hparams-full-mid-write", "checkpoint-read-only"],
)
def test_a_failed_write_anywhere_is_one_line_with_its_exit_code(tmp_path, name, errno_name, code, expected):
    name, _, at = name.partition("@")
    result = train(tmp_path, *TINY, *fault("FailOpen", name=name, errno_name=errno_name, at=at or "open"))
    assert result.returncode == code, result.stderr[-3000:]
    line = one_error_line(result)
    assert expected in line
    # nothing of this run was checkpointed yet: the advice is to run again, not to resume
    assert "then run the command again (this run has no last.ckpt yet, so there is nothing to resume)" in line
    assert ("free space, then" if code == EXIT_DISK_FULL else "make it writable (or choose another folder") in line
    assert not [p for p in version(tmp_path).rglob("*") if p.is_file() and p.stat().st_size == 0 and p.name != ".lock"]


def test_the_advice_after_a_failed_write_fits_the_situation(tmp_path):
    lock = RunFolderLock(tmp_path).acquire()
    RobustrainCLI.lock = lock
    try:
        assert "nothing to resume" in _advice("fit")
        (tmp_path / "checkpoints").mkdir()
        (tmp_path / "checkpoints/last.ckpt").write_bytes(b"")
        assert _advice("fit") == "resume with the same command and --ckpt_path last"
        assert _advice("test") == "run the command again"
    finally:
        RobustrainCLI.release_lock()


# --- 7., 8. and 9. files in the way ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("module", "step"),
    [("experiments.co_lab.report", "report"), ("experiments.co_lab.report", "select"),
     ("experiments.stop_study.report", "report"), ("experiments.co_lab.prevention", "report")],
)  # fmt: skip
def test_a_report_on_a_missing_out_folder_is_one_line(tmp_path, capsys, module, step):
    import importlib

    code = importlib.import_module(module).main([step, "--out", str(tmp_path / "missing")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"--out {tmp_path / 'missing'} holds no runs (no such folder)" in err


def test_a_folder_where_a_history_csv_goes_is_refused_before_training(in_tmp, capsys):
    (in_tmp / f"runs/{NAME}/version_0/aliasing_history.csv").mkdir(parents=True)
    line = refused(capsys, *TINY, "--trainer.logger.init_args.version", "0")
    assert f"runs/{NAME}/version_0/aliasing_history.csv is a folder, where this run writes its history CSV" in line
    assert not list((in_tmp / f"runs/{NAME}/version_0").glob("*.ckpt"))


def test_non_utf8_bytes_in_a_history_csv_name_the_file_and_a_resume_rewrites_it(tmp_path):
    path = tmp_path / "aliasing_history.csv"
    path.write_bytes(b"epoch,value\n0,\xff\xfe\n")
    with pytest.raises(ValueError, match=f"{path} is not a history CSV: byte 14 is not UTF-8 text"):
        read_history_csv(path)
    write_history_csv([{"epoch": 0, "value": 1.0}], path)  # the resumed run's history replaces it
    assert read_history_csv(path) == [{"epoch": 0, "value": 1.0}]


# --- 11. to 14. messages ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_raw_pickle_of_any_protocol_is_refused_as_unsafe_and_never_runs(tmp_path, protocol):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "payload.ckpt"
    path.write_bytes(pickle.dumps({"state_dict": Payload()}, protocol=protocol))
    with pytest.raises(ValueError, match=r"was refused as unsafe: loading it would run code \((posix|nt)\.system\)"):
        read_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("content", ["", "# only a comment\n"], ids=["zero-bytes", "comments"])
def test_an_empty_config_file_is_named_as_empty(in_tmp, capsys, content):
    config = in_tmp / "empty.yaml"
    config.write_text(content)
    assert f"config file {config} is empty" in refused(capsys, config=config)


def test_the_summary_commands_quote_every_path(tmp_path):
    from robustrain.callbacks.run_summary import evaluate_command
    from robustrain.data import MNIST5k

    ckpt = str(tmp_path / "my runs" / "it's" / "aliasing_stop.ckpt")
    command = evaluate_command(MNIST5k(), ckpt)
    assert shlex.split(command)[shlex.split(command).index("--ckpt_path") + 1] == ckpt


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_non_finite_number_on_the_command_line_is_refused_as_not_finite(in_tmp, capsys, value):
    line = refused(capsys, *TINY, f"--model.init_args.eps={value}")  # (-inf as its own word is an option)
    assert f"model.init_args.eps: got {value}, but only a finite number is valid here" in line


# --- what the review of this work found ----------------------------------------------------------------------------
def test_only_robustrain_stops_count_as_recorded_stops_and_a_bare_last_ckpt_has_no_version_folder():
    from robustrain.runs.checkpoints import recorded_stops, version_dir_of

    checkpoint = {
        "callbacks": {
            "EarlyStopping{'monitor': 'val/acc'}": {"stopped_epoch": 0, "wait_count": 0},  # Lightning's: always 0
            "AliasingMonitor": {"history": [], "settings": {}, "stopped_epoch": 3, "stop_checkpoint": STOP},
            "PGDEarlyStopping": {"history": [], "settings": {}, "stopped_epoch": None},
        }
    }
    assert recorded_stops(checkpoint) == [("AliasingMonitor", 3, STOP)]
    assert version_dir_of(Path("last.ckpt")) is None and version_dir_of(Path("x/last.ckpt")) is None
    assert version_dir_of(Path("runs/a/version_0/checkpoints/last.ckpt")) == Path("runs/a/version_0")


def test_a_config_that_still_lists_the_base_callbacks_itself_builds_them_once(in_tmp):
    from robustrain.cli import main

    old_style = in_tmp / "old.yaml"  # as the experiment configs were written before base_callbacks
    old_style.write_text(
        f"config: {REPO / 'configs/mnist5k_fgsm.yaml'}\n"
        "trainer.callbacks:\n"
        "  - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n"
        "    init_args: {monitor: val/acc_pgd, mode: max, filename: 'best-{epoch:02d}'}\n"
        "  - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n"
        "    init_args: {filename: last}\n"
        "  - class_path: lightning.pytorch.callbacks.LearningRateMonitor\n"
        "    init_args: {logging_interval: step}\n"
    )
    cli = main(["--config", str(old_style)], run=False)
    assert [c.monitor for c in cli.trainer.checkpoint_callbacks] == ["val/acc_pgd", None]
    assert sum(type(c).__name__ == "LearningRateMonitor" for c in cli.trainer.callbacks) == 1


def test_a_refused_run_leaves_another_processs_new_locked_folder_alone(tmp_path):
    from robustrain.cli.checks import remove_refused_run_folders

    ours, theirs = tmp_path / "version_0", tmp_path / "version_1"
    ours.mkdir()
    theirs.mkdir()
    lock = RunFolderLock(theirs).acquire()  # another run, before its first checkpoint (our process stands in)
    try:
        assert remove_refused_run_folders((tmp_path, set())) == [ours]
        assert theirs.is_dir()
    finally:
        lock.release()


def test_a_filesystem_without_locks_runs_unlocked_with_a_warning(tmp_path, monkeypatch):
    import fcntl

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.warns(UserWarning, match="this filesystem cannot lock files .* the run goes on unlocked"):
        lock = RunFolderLock(tmp_path).acquire()
    assert not lock.held
