"""Atomic, durable writes: a file is either its old self or its complete new self, whatever kills the writer.

The bytes go to a temp file in the destination's own folder (never /tmp, so the final step is a rename on one
filesystem, not a copy), which is flushed and fsynced, then `os.replace`d over the final name, and the folder is
fsynced so the rename survives a power cut. Any failure removes the temp file. A process killed mid-write (SIGKILL
cannot be caught) leaves its temp file, `.<name>.<pid>.<random>.partial`, which the next write in that folder (or
`remove_stale_partials`) removes once that process is gone. A full disk (or quota) is reported as DiskFullError
naming the folder and the bytes needed; the file keeps its old contents.
"""

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from robustrain.core.errors import NO_SPACE, BadInputError, DiskFullError

PARTIAL = ".partial"


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on folders; the rename itself is still atomic
    finally:
        os.close(fd)


def _file_mode(path: Path) -> int:
    """The mode the new file gets: the old file's, or what `open` would give under the process's umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def partial_target(path: str | Path) -> tuple[Path, int] | None:
    """(the file it was to become, its writer's PID) of an atomic write's temp file `.<name>.<pid>.<random>.partial`,
    or None for any other file."""
    path = Path(path)
    if not (path.name.startswith(".") and path.name.endswith(PARTIAL)):
        return None
    parts = path.name[: -len(PARTIAL)].rsplit(".", 2)  # (".<name>", "<pid>", "<random>")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return path.parent / parts[0][1:], int(parts[1])


def remove_stale_partials(folder: str | Path) -> list[Path]:
    """Remove the temp files that killed writers left in `folder` (those whose process is gone). Returns them."""
    removed = []
    for stale in Path(folder).glob(f".*{PARTIAL}"):
        found = partial_target(stale)
        if found is not None and found[1] != os.getpid() and not process_alive(found[1]):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
                removed.append(stale)
    return removed


def disk_full_message(folder: Path, name: str, needed: int | None) -> str:
    """The one line for a write that found no space: the folder, the file, the bytes needed and free."""
    try:
        free = f"{shutil.disk_usage(folder).free:,} bytes free"
    except OSError:
        free = "free space unknown"
    need = f"needs {needed:,} bytes" if needed is not None else "needs more space"
    return f"no space left in {folder}: writing {name} {need} ({free}); the previous {name}, if any, is intact"


def check_writable_folder(folder: str | Path, what: str = "folder", hint: str = "") -> None:
    """BadInputError unless `folder` is a writable folder or can be created; `what` names it, `hint` ends the line."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise BadInputError(f"{what} {folder} cannot be created: {existing} is a file, not a folder{hint}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BadInputError(f"{what} {folder} is not writable ({existing} is read-only){hint}")


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None], size: int | None = None) -> Path:
    """Write `path` atomically and durably: `write(f)` fills a temp file beside it, which then replaces `path`.

    Args:
        path: The final file; its folder is created if needed.
        write: Called with the temp file (binary, open for writing); writes the whole content.
        size: The content's size in bytes when known, for the disk-full message.

    Raises:
        DiskFullError: when the disk (or quota) is full; `path` keeps its old contents and no temp file is left.
        OSError: any other write failure, with the same guarantees.
    """
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(folder)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.{os.getpid()}.", suffix=PARTIAL)
    try:
        with open(fd, "wb") as f:
            os.fchmod(f.fileno(), _file_mode(path))  # mkstemp's 0600 would make the file private
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(error, OSError) and error.errno in NO_SPACE:
            raise DiskFullError(error.errno, disk_full_message(folder, path.name, size)) from error
        raise
    _fsync_folder(folder)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically and durably (see atomic_write)."""
    return atomic_write(path, lambda f: f.write(data), size=len(data))


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically and durably (see atomic_write)."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_savefig(fig, path: str | Path, **kwargs) -> Path:
    """`fig.savefig` to `path` atomically (rendered in memory first; the format from the suffix, e.g. .png)."""
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=kwargs.pop("format", path.suffix.lstrip(".") or "png"), **kwargs)
    return atomic_write_bytes(path, buffer.getvalue())
