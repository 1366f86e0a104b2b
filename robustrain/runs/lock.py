"""One run folder, one run: an exclusive lock on a run's version folder for the whole of a fit, validate, test or
predict.

The lock is `flock` on `<version folder>/.lock`, which holds the holder's PID. The kernel releases it when the
holder exits, however it exits (SIGKILL included), so a lock is never left held by a dead process; a `.lock` that
still names a PID nobody holds it for (its process is gone) is stale, and is taken over with a warning. The file
itself stays (removing it would race a process that has just opened it); an empty one means "free".

    with RunFolderLock("runs/co_demo_mnist5k/version_0"):
        ...  # nobody else trains, resumes or tests in this folder

A second process finds the lock held and gets a BadInputError naming the holder's PID. `flock` is advisory and
local: it keeps robustrain processes of one machine (or of one NFS client) apart, not arbitrary writers.
"""

import errno
import fcntl
import os
import warnings
from pathlib import Path

from robustrain.core.errors import BadInputError
from robustrain.runs.atomic import process_alive

LOCK_NAME = ".lock"
NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)  # flock unsupported where the folder lives


class RunFolderInUseError(BadInputError):
    """The run folder is locked by another live process (its PID in the message)."""


def _read_pid(fd: int) -> int | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 64).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


class RunFolderLock:
    """An exclusive lock on `folder` (created if needed); `acquire` / `release`, or use it as a context manager."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "RunFolderLock":
        """Take the lock, or raise RunFolderInUseError naming the live holder; warns when taking over a stale one."""
        if self._fd is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in NO_LOCKS:  # a filesystem without flock (some FUSE, Lustre without -o flock)
                os.close(fd)
                warnings.warn(
                    f"run folder {self.folder}: this filesystem cannot lock files ({error.strerror}); the run goes on "
                    "unlocked, so nothing stops a second run in the same folder",
                    stacklevel=2,
                )
                return self
            if not isinstance(error, BlockingIOError):
                os.close(fd)
                raise
            holder = _read_pid(fd)
            os.close(fd)
            who = f"process {holder}" if holder is not None else "another process"
            raise RunFolderInUseError(
                f"run folder {self.folder} is in use by {who} (it holds {self.path}): one folder holds one run; wait "
                "for it to finish, or give this run another folder (--trainer.logger.init_args.version or .name)"
            ) from None
        previous = _read_pid(fd)
        if previous is not None and previous != os.getpid() and not process_alive(previous):
            warnings.warn(
                f"run folder {self.folder}: took over the lock of process {previous}, which is no longer running "
                "(it ended without releasing it)",
                stacklevel=2,
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Mark the folder free and release the lock (a no-op when not held)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass  # a read-only or full filesystem: the kernel releases the lock all the same
        finally:
            os.close(fd)

    def __enter__(self) -> "RunFolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def held_by_another(folder: str | Path) -> bool:
    """Whether another process holds the lock of `folder` now (False where it has no lock file)."""
    path = Path(folder) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing releases the shared lock just taken
    return False
