"""What a resumed run may change: the run signature every checkpoint records, and the changes a resume refuses.

A resume continues one run: its weights, optimizer, lr schedule, data order and every stop callback's history. If the
command that resumes it trains under other settings, what comes out is two runs mixed into one folder and one history
that no setting describes. The signature holds what shapes a run, as flat `key: value` pairs named after the config
keys that set them:

- the training module's class and arguments (`model.class_path`, `model.init_args.*`, the network included; the
  `eval_*` attack too, since it defines `val/acc_pgd`, which picks the best checkpoint and sits in every history);
- the data's class and arguments (`data.init_args.*`: the images, their split, batches and injected features);
- the trainer's length and optimisation (`trainer.max_epochs`, `max_steps`, `limit_train_batches`,
  `accumulate_grad_batches`, gradient clipping, precision, the number of processes), which size the lr schedule and
  the data order;
- each stop callback's rule and settings (`<name>/<setting>`, e.g. `pgd_es/steps`: the callback's `hparams()`, as
  TensorBoard's HPARAMS tab shows them) and which stop callbacks run (`callbacks`, their names);
- the seed (`seed_everything`), which draws every epoch's randomness.

What is not in it passes freely: the progress bar, logging cadence, model summary, `num_workers`,
`eval_batch_size`, a dataset's `root` / `download` / `check_images`, the module's `eval_fgsm` and `masking_margin`
(warnings only) and its speed options `channels_last` and `compile` (the same computation, other float rounding), the
data's `pin_memory`, validation cadence and batches, callbacks that do not stop runs (checkpointing, lr monitor), the
logger, devices' kind.
"""

import enum
import math
from collections.abc import Iterable, Mapping
from typing import Any

SIGNATURE_KEY = "signature"  # under checkpoint["robustrain"]
ALLOW_FLAG = "allow_changed_settings"
HARMLESS = {
    "model": ("eval_fgsm", "masking_margin", "channels_last", "compile"),
    "data": ("num_workers", "pin_memory", "eval_batch_size", "root", "download", "check_images"),
}
TRAINER_KEYS = (
    "max_epochs",
    "max_steps",
    "limit_train_batches",
    "accumulate_grad_batches",
    "gradient_clip_val",
    "gradient_clip_algorithm",
    "precision",
    "processes",
)
WHY = {
    "trainer.max_epochs": "the lr schedule spans max_epochs",
    "trainer.max_steps": "the lr schedule spans the run",
    "trainer.limit_train_batches": "the lr schedule and the data order depend on it",
    "trainer.processes": "the data order and batch split depend on the number of processes",
    "seed_everything": "the resumed epochs would draw from another seed",
}


def plain(value: Any) -> Any:
    """`value` as plain data that a weights-only checkpoint can hold (jsonargparse Namespaces and tuples to dicts and
    lists, enums to their values, str / int / float subclasses to the base types; a class_path to its class name)."""
    if isinstance(value, enum.Enum):
        value = value.value
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, Mapping):
        out = {str(k): plain(v) for k, v in value.items() if not str(k).startswith("_") or k == "_class_path"}
        for key in ("class_path", "_class_path"):
            if isinstance(out.get(key), str):
                out[key] = out[key].rsplit(".", 1)[-1]
        return out
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    for kind in (bool, int, float, str):  # bool first: it is an int
        if isinstance(value, kind):
            return kind(value) if kind is not str else str.__str__(value)
    return None if value is None else str(value)


def flatten(value: Any, prefix: str) -> dict[str, Any]:
    """Nested dicts to `prefix.key.subkey: value` pairs (lists stay values)."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in value.items():
        out.update(flatten(item, f"{prefix}.{key}"))
    return out


def component_signature(section: str, class_path: str | None, init_args: Any) -> dict[str, Any]:
    """`<section>.class_path` and `<section>.init_args.*` of a model or data config, less its harmless arguments."""
    args = plain(init_args) or {}
    args = {k: v for k, v in args.items() if k not in HARMLESS.get(section, ())}
    out = {f"{section}.class_path": plain({"class_path": class_path})["class_path"]}
    out.update(flatten(args, f"{section}.init_args") if args else {})
    return out


def run_signature(
    model: tuple[str | None, Any],
    data: tuple[str | None, Any] | None,
    trainer: Mapping[str, Any],
    callbacks: Iterable[tuple[str, Mapping[str, Any]]],
    seed: int | None,
) -> dict[str, Any]:
    """The flat signature of a run (see the module docstring).

    Args:
        model: (class path, init args) of the training module.
        data: (class path, init args) of the datamodule, or None.
        trainer: The trainer's values of TRAINER_KEYS (others are ignored).
        callbacks: (name, hparams) of every stop callback: its `name` and `hparams()` (`<name>/<setting>` keys).
        seed: The run's seed, or None.
    """
    out = component_signature("model", *model)
    if data is not None:
        out.update(component_signature("data", *data))
    out.update({f"trainer.{k}": plain(trainer[k]) for k in TRAINER_KEYS if k in trainer})
    names = []
    for name, hparams in callbacks:
        names.append(name)
        out.update({str(k): plain(v) for k, v in hparams.items()})
    out["callbacks"] = sorted(names)
    out["seed_everything"] = seed
    return out


def checkpoint_signature(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The signature a checkpoint recorded; for checkpoints written before signatures existed, what can be read back
    (the module's class and arguments, the seed)."""
    robustrain = checkpoint.get("robustrain") or {}
    if isinstance(robustrain.get(SIGNATURE_KEY), Mapping):
        return dict(robustrain[SIGNATURE_KEY])
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    out: dict[str, Any] = {}
    if "_class_path" in hparams:
        out = component_signature("model", hparams.pop("_class_path"), hparams)
    if robustrain.get("run_seed") is not None:
        out["seed_everything"] = robustrain["run_seed"]
    return out


COUNT_OR_FRACTION = ("limit_train_batches",)  # Lightning reads an int as a count and a float as a fraction


def _same(a: Any, b: Any, key: str = "") -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    typed = isinstance(a, bool) or isinstance(b, bool) or key.rsplit(".", 1)[-1] in COUNT_OR_FRACTION
    return type(a) is type(b) and a == b if typed else a == b


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, old value, new value) of every key both signatures hold with different values, in the old order.

    A key only one side holds is no difference (a checkpoint from an older robustrain, or an argument added since),
    except the list of stop callbacks, which both sides always hold.
    """
    return [(key, old[key], new[key]) for key in old if key in new and not _same(old[key], new[key], key)]


def describe(changes: Iterable[tuple[str, Any, Any]]) -> str:
    """`key old -> new (why)` for each change, joined by '; '."""
    parts = []
    for key, old, new in changes:
        why = WHY.get(key)
        parts.append(f"{key} {old!r} -> {new!r}" + (f" ({why})" if why else ""))
    return "; ".join(parts)


def refusal(path: Any, changes: list[tuple[str, Any, Any]]) -> str:
    """The one line that refuses a resume under changed settings, naming each change and the way out."""
    return (
        f"resuming {path} would mix two runs: it was trained under other settings: {describe(changes)}. Resume with "
        f"the checkpoint's settings, start a new run (leave out --ckpt_path), or add --{ALLOW_FLAG} true to continue "
        "under the new ones"
    )


def allowed_note(changes: list[tuple[str, Any, Any]]) -> str:
    """What continuing under changed settings means, for the log."""
    keys = {key for key, _, _ in changes}
    note = f"resuming under changed settings (--{ALLOW_FLAG}): {describe(changes)}"
    if keys & {"trainer.max_epochs", "trainer.max_steps", "trainer.limit_train_batches"}:
        note += (
            "; the lr schedule is re-sized to the new length, so from the resumed step on the lr follows the new "
            "schedule (a cyclic one climbs back up when the run got longer)"
        )
    if "seed_everything" in keys:
        note += "; the resumed epochs draw from the new seed"
    if any("/" in key or key == "callbacks" for key in keys):
        note += "; the stop callbacks' histories continue under their new settings"
    return note
