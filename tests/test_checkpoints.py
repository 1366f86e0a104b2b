"""robustrain.runs.checkpoints: the newest version with a checkpoint, and safe reading of checkpoint files."""

import os

import pytest
import torch

from robustrain.core.errors import BadInputError
from robustrain.runs.checkpoints import latest_checkpoint, read_checkpoint, resolve_ckpt_path


def _make_run(root, versions):
    for n, with_ckpt in versions:
        folder = root / f"version_{n}" / "checkpoints"
        folder.mkdir(parents=True)
        if with_ckpt:
            torch.save({"epoch": n}, folder / "last.ckpt")


def test_last_is_the_newest_version_with_a_checkpoint(tmp_path):
    run = tmp_path / "runs" / "x"
    _make_run(run, [(0, True), (2, True), (10, True), (11, False)])  # version 11 failed before its first epoch
    assert latest_checkpoint(run) == (run / "version_10/checkpoints/last.ckpt", 10)  # 10 > 2: numbers, not text
    assert resolve_ckpt_path("last", run) == (run / "version_10/checkpoints/last.ckpt", 10)
    assert resolve_ckpt_path(str(run), None) == (run / "version_10/checkpoints/last.ckpt", 10)
    assert resolve_ckpt_path(str(run / "version_2"), None) == (run / "version_2/checkpoints/last.ckpt", 2)
    assert resolve_ckpt_path(str(run / "version_2/checkpoints/last.ckpt"), None)[1] == 2
    with pytest.raises(BadInputError, match="no run to resume"):
        resolve_ckpt_path("last", tmp_path / "runs" / "other")
    with pytest.raises(BadInputError, match="is a URL"):
        resolve_ckpt_path("s3://bucket/last.ckpt", run)


class _System:
    """Unpickling it would call os.system (never run here: the file is refused)."""

    def __reduce__(self):
        return (os.system, ("exit 0",))


def test_read_checkpoint_refuses_pickled_objects_and_names_corrupt_files(tmp_path):
    torch.save({"epoch": 1, "w": torch.ones(2)}, tmp_path / "ok.ckpt")
    assert read_checkpoint(tmp_path / "ok.ckpt")["epoch"] == 1
    torch.save({"obj": torch.nn.Linear(1, 1)}, tmp_path / "module.ckpt")  # a whole module: needs full unpickling
    with pytest.raises(
        BadInputError, match=r"module.ckpt was refused as unsafe: loading it would run code \(torch.nn.modules"
    ):
        read_checkpoint(tmp_path / "module.ckpt")
    torch.save({"epoch": 1, "payload": _System()}, tmp_path / "payload.ckpt")
    with pytest.raises(
        BadInputError, match=r"payload.ckpt was refused as unsafe: loading it would run code \(posix.system\)"
    ):
        read_checkpoint(tmp_path / "payload.ckpt")
    (tmp_path / "cut.ckpt").write_bytes((tmp_path / "ok.ckpt").read_bytes()[:100])
    with pytest.raises(BadInputError, match="cut.ckpt is not a readable checkpoint"):
        read_checkpoint(tmp_path / "cut.ckpt")


def test_a_run_folder_names_the_handed_back_model_for_test_and_last_for_resuming(tmp_path):
    run = tmp_path / "runs" / "x"
    _make_run(run, [(0, True), (1, True)])
    stopped = {"history": [], "settings": {}, "stopped_epoch": 3, "stop_checkpoint": "aliasing_stop.ckpt"}
    torch.save({"epoch": 3, "callbacks": {"AliasingMonitor": stopped}}, run / "version_1/checkpoints/last.ckpt")
    torch.save({"epoch": 3}, run / "version_1" / "aliasing_stop.ckpt")
    torch.save({"epoch": 0}, run / "version_0" / "aliasing_stop.ckpt")  # no checkpoint of version 0 records it
    stop = (run / "version_1" / "aliasing_stop.ckpt", 1)
    assert resolve_ckpt_path(str(run), None, model=True) == stop
    assert resolve_ckpt_path(str(run / "version_1"), None, model=True) == stop
    assert resolve_ckpt_path(str(run), None) == (run / "version_1/checkpoints/last.ckpt", 1)  # fit resumes last
    assert resolve_ckpt_path(str(run / "version_0"), None, model=True) == (run / "version_0/checkpoints/last.ckpt", 0)
