"""Finding and reading checkpoints safely: run folders, `last`, and weights-only loading with readable errors.

A run's files live in its own version folder, `<save_dir>/<name>/version_N/` (TensorBoard events, config.yaml,
histories, figures) with its checkpoints in `version_N/checkpoints/`, so reruns never mix. `last` names the
`checkpoints/last.ckpt` of the newest version that has one. A run whose early stop handed back earlier weights also
holds them as `version_N/<stop>_stop.ckpt`: that is the model the run ends with, which `test` of a run folder uses.

Checkpoints are only ever read with `torch.load(weights_only=True)`, which cannot run code, and never from the
network.
"""

import pickle
import pickletools
import re
import shlex
from pathlib import Path
from typing import Any

import torch

from robustrain.core.errors import BadInputError

LAST = "last"
_VERSION = re.compile(r"^version_(\d+)$")
# torch's refusals of a pickled global: "Unsupported global: GLOBAL os.system ..." or "unsupported GLOBAL posix.system"
_UNSAFE_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def is_remote(path: str | Path) -> bool:
    """True for URLs (http://, s3://, ...), which robustrain never loads."""
    return "://" in str(path)


def run_versions(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(N, folder) of every `version_N` folder of a run, in increasing N."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if p.is_dir() and (m := _VERSION.match(p.name))]
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> tuple[Path, int] | None:
    """(version_N/checkpoints/last.ckpt, N) of the newest version that has one, or None."""
    for version, folder in reversed(run_versions(run_dir)):
        path = folder / "checkpoints" / "last.ckpt"
        if path.is_file():
            return path, version
    return None


def handed_back_checkpoint(version_dir: Path) -> Path | None:
    """The newest `<stop>_stop.ckpt` in a run's version folder, or None (for runs whose checkpoints do not name it)."""
    found = sorted(version_dir.glob("*_stop.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _is_stop_state(state: Any) -> bool:
    """A robustrain early stop's callback state (RollbackEarlyStopping.state_dict), not, say, Lightning's
    EarlyStopping, which records a `stopped_epoch` of 0 whether it stopped or not."""
    return isinstance(state, dict) and "history" in state and "settings" in state


def recorded_stops(checkpoint: dict) -> list[tuple[str, int, str | None]]:
    """(callback, epoch, handed-back file) of every robustrain early stop the checkpoint records as decided; the file
    is None where the stop saved none or where the checkpoint predates the record of it."""
    stops = []
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if _is_stop_state(state) and state.get("stopped_epoch") is not None:
            stops.append((key.split("{")[0], int(state["stopped_epoch"]), state.get("stop_checkpoint")))
    return stops


def missing_stop_model(checkpoint: dict, version_dir: Path) -> str | None:
    """Why the run of this checkpoint has no model to hand back, or None: it records an early stop whose
    `<stop>_stop.ckpt` is not in the run's version folder (a file removed since it was written)."""
    for callback, epoch, name in recorded_stops(checkpoint):
        if name is not None and not (version_dir / name).is_file():
            return (
                f"the run in {version_dir} recorded an early stop ({callback}, epoch {epoch}) but the model it hands "
                f"back, {version_dir / name}, is missing (removed, or never fully written); its last.ckpt holds the "
                "weights the stop rejected"
            )
    return None


def version_dir_of(path: Path) -> Path | None:
    """The version folder of a run's `<version>/checkpoints/<file>.ckpt`, or None for a file elsewhere."""
    return path.parents[1] if path.parent.name == "checkpoints" and len(path.parents) > 1 else None


def _model_of(found: tuple[Path, int], version_dir: Path) -> tuple[Path, int]:
    """The model a run ends with: the `<stop>_stop.ckpt` its last.ckpt records, else last.ckpt (a `*_stop.ckpt` that
    no checkpoint records, left by a run killed before recording it, is not the run's model)."""
    checkpoint = read_checkpoint(found[0])
    missing = missing_stop_model(checkpoint, version_dir)
    if missing is not None:
        raise BadInputError(
            f"{missing}: train the run again, or pass --ckpt_path {shlex.quote(str(found[0]))} to evaluate those "
            "weights anyway"
        )
    stops = recorded_stops(checkpoint)
    named = [name for _, _, name in stops if name is not None]
    if named:
        return version_dir / named[-1], found[1]
    if stops:  # written before checkpoints named the file: the newest one
        stop = handed_back_checkpoint(version_dir)
        if stop is not None:
            return stop, found[1]
    return found


def resolve_ckpt_path(ckpt_path: str, run_dir: str | Path | None, model: bool = False) -> tuple[Path, int | None]:
    """The checkpoint file `ckpt_path` names, and the run version it belongs to (None if it is not a run's).

    Args:
        ckpt_path: A .ckpt file; a run folder (`runs/<name>`: its newest last.ckpt) or version folder; or "last",
            the newest last.ckpt of `run_dir`.
        run_dir: `<save_dir>/<name>` of the run being configured (for "last").
        model: Name the model a run folder ends with (for test, validate, predict): the weights its early stop handed
            back (`<stop>_stop.ckpt`) when it stopped, else last.ckpt. Without it (fit), last.ckpt, to resume.

    Raises:
        BadInputError: for a URL, a missing file or folder, or a folder without checkpoints.
    """
    if is_remote(ckpt_path):
        raise BadInputError(
            f"ckpt_path={ckpt_path!r} is a URL: robustrain only loads local checkpoints (download it yourself, check "
            "where it comes from, and pass the local file)"
        )
    if ckpt_path == LAST:
        found = latest_checkpoint(run_dir) if run_dir is not None else None
        if found is None and model:
            raise BadInputError(
                f"ckpt_path=last: no {run_dir}/version_*/checkpoints/last.ckpt exists (`last` is the newest run of "
                "this config's run folder); give the .ckpt file or the run folder to evaluate"
            )
        if found is None:
            raise BadInputError(
                f"ckpt_path=last: no run to resume, no {run_dir}/version_*/checkpoints/last.ckpt exists; drop "
                "--ckpt_path to start a new run"
            )
        return _model_of(found, found[0].parents[1]) if model else found
    path = Path(ckpt_path)
    if path.is_file():
        version = _VERSION.match(path.parent.parent.name) if path.parent.name == "checkpoints" else None
        return path, int(version.group(1)) if version else None
    if path.is_dir():
        if (version := _VERSION.match(path.name)) and (path / "checkpoints" / "last.ckpt").is_file():
            found = path / "checkpoints" / "last.ckpt", int(version.group(1))
        else:
            found = latest_checkpoint(path)
        if found is None:
            raise BadInputError(f"ckpt_path={ckpt_path!r} is a folder without version_*/checkpoints/last.ckpt")
        return _model_of(found, found[0].parents[1]) if model else found
    raise BadInputError(f"ckpt_path={ckpt_path!r} does not exist: give a .ckpt file, a run folder or 'last'")


def read_checkpoint(path: str | Path, what: str = "checkpoint") -> dict[str, Any]:
    """The file's contents (a checkpoint, or the `what` named), loaded weights-only on the CPU.

    Raises:
        BadInputError: naming the file, when it is corrupt, truncated, or holds anything but tensors and containers.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        unsafe = _UNSAFE_GLOBAL.search(str(error))
        imports = None if unsafe else pickle_imports(path)
        if unsafe or imports:
            what = f"loading it would run code ({unsafe.group(1) if unsafe else imports[0]})"
            raise BadInputError(
                f"{path} was refused as unsafe: {what}; it holds objects other than tensors and plain containers, "
                "and robustrain refuses to unpickle them (only trust and convert a file whose origin you know)"
            ) from None
        raise BadInputError(f"{path} is not a readable {what} (corrupt or not a torch.save file)") from None
    except (RuntimeError, EOFError, OSError, ValueError, IndexError) as error:
        raise BadInputError(f"{path} is not a readable {what} (corrupt or truncated: {_first_line(error)})") from None
    if not isinstance(checkpoint, dict):
        raise BadInputError(f"{path} is not a {what}: it holds a {type(checkpoint).__name__}, not a dict")
    return checkpoint


def pickle_imports(path: str | Path) -> list[str] | None:
    """The globals (`module.name`) a plain pickle file would import, read without unpickling it (pickletools), or
    None when the file is no plain pickle (a torch.save zip archive, or not a pickle at all).

    torch's weights-only loader names the refused global for pickle protocols 1 to 3 only; for protocol 0 and 4-5 it
    reports an "unsupported operand", which would read as a corrupt file rather than as code it refused to run.
    """
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if data[:2] == b"PK":  # torch.save's zip format: torch's own refusal names the global
        return None
    found, strings = [], []
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in ("GLOBAL", "INST"):
                found.append(str(arg).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:  # noqa: BLE001 - anything genops cannot read is no pickle this check can speak for
        return found or None
    return found or None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
