"""robustrain.runs.atomic: a file is its old or its whole new self; no temp file is left; a full disk is named."""

import errno
import os
import subprocess
import sys

import pytest

from robustrain.core.errors import BadInputError, DiskFullError
from robustrain.runs.atomic import (
    PARTIAL,
    atomic_savefig,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    check_writable_folder,
    remove_stale_partials,
)


def test_a_write_replaces_the_file_whole_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "sub" / "a.json"
    atomic_write_text(path, "old")
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]


def test_a_failing_write_keeps_the_old_file_and_removes_its_temp_file(tmp_path):
    path = tmp_path / "last.ckpt"
    atomic_write_bytes(path, b"previous checkpoint")

    def half_then_fail(f):
        f.write(b"half of the new")
        raise RuntimeError("killed by a bug")

    with pytest.raises(RuntimeError, match="killed by a bug"):
        atomic_write(path, half_then_fail)
    assert path.read_bytes() == b"previous checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_a_full_disk_is_one_error_naming_the_folder_and_the_bytes_needed(tmp_path):
    path = tmp_path / "last.ckpt"
    atomic_write_bytes(path, b"previous")

    def no_space(f):
        f.write(b"x")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(DiskFullError) as error:
        atomic_write(path, no_space, size=2_000_000)
    assert str(error.value).startswith(f"no space left in {tmp_path}: writing last.ckpt needs 2,000,000 bytes (")
    assert "bytes free" in str(error.value) and "intact" in str(error.value)
    assert path.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_the_temp_file_of_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    stale = tmp_path / f".last.ckpt.{dead_pid}.abcd1234{PARTIAL}"
    alive = tmp_path / f".last.ckpt.{os.getppid()}.abcd1234{PARTIAL}"  # a writer that may still be writing
    stale.write_bytes(b"torn")
    alive.write_bytes(b"in progress")
    assert remove_stale_partials(tmp_path) == [stale]
    atomic_write_text(tmp_path / "other.txt", "x")
    assert not stale.exists() and alive.exists()


def test_a_new_file_gets_the_usual_permissions_and_a_replaced_one_keeps_its_own(tmp_path):
    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "new.txt", "x")
        assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
        os.chmod(tmp_path / "new.txt", 0o600)
        atomic_write_text(tmp_path / "new.txt", "y")
        assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(umask)


def test_a_figure_is_saved_atomically_in_the_format_of_its_suffix(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1))
    fig.add_subplot().plot([0, 1])
    atomic_savefig(fig, tmp_path / "curve.png", dpi=20)
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["curve.png"]


def test_a_folder_under_a_file_is_refused_naming_both(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(BadInputError, match=r"--out .*a_file/out cannot be created: .*a_file is a file, not a folder"):
        check_writable_folder(tmp_path / "a_file" / "out", "--out")
    check_writable_folder(tmp_path / "new" / "deeper")  # creatable: no error
