"""Every stop's settings come from its arguments: a resume that changes any argument that decides what the stop does
is refused (robustrain.runs.resume), for every stop, with the cases generated from its constructors' signatures."""

import inspect
import types
import typing

import pytest

from robustrain.callbacks import (
    AbnormalExamplesMonitor,
    AliasingMonitor,
    GradientAlignmentMonitor,
    MaskingGapMonitor,
    MetricEarlyStopping,
    PGDEarlyStopping,
)
from robustrain.callbacks.rollback_early_stopping import NOT_COMPARED, RollbackEarlyStopping
from robustrain.runs import resume

STOPS = {
    AliasingMonitor: {},
    GradientAlignmentMonitor: {},
    PGDEarlyStopping: {},
    AbnormalExamplesMonitor: {},
    MaskingGapMonitor: {},
    MetricEarlyStopping: {"metric": "val/acc_pgd"},
}
# a change that needs a companion to be valid (the companion is itself a compared setting)
WITH = {"decide_on": {"every_n_train_steps": 3}, "every_n_epochs": {"decide_on": "batch", "every_n_train_steps": 3}}


def _arguments(cls) -> list[inspect.Parameter]:
    seen, out = set(), []
    for klass in (cls, RollbackEarlyStopping):
        for param in inspect.signature(klass.__init__).parameters.values():
            if param.name in seen or param.name == "self" or param.kind is param.VAR_KEYWORD:
                continue
            seen.add(param.name)
            out.append(param)
    return out


def _changes(stop, param: inspect.Parameter) -> list:
    """Valid-looking values other than the stop's resolved one, by the argument's type."""
    now = stop.settings().get(param.name, getattr(stop, param.name, None))
    hint = typing.get_type_hints(type(stop).__init__ if param.name in inspect.signature(type(stop).__init__).parameters
                                 else RollbackEarlyStopping.__init__)[param.name]  # fmt: skip
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    args = [a for a in typing.get_args(hint) if a is not type(None)] if union else [hint]
    candidates: list = []
    for arg in args:
        if typing.get_origin(arg) is typing.Literal:
            candidates += list(typing.get_args(arg))
        elif arg is bool:
            candidates.append(not now)
        elif arg is int:
            candidates += [(now or 0) + 1, (now or 0) + 2]
        elif arg is float:
            candidates += [0.125, 0.25]
        elif arg is str:
            candidates += ["batch", "conv1", f"{now}_other"]
        elif typing.get_origin(arg) is list:
            candidates.append(["conv1"])
    return [c for c in candidates if c != now and not (param.name == "layers" and c == now)]


CASES = [
    pytest.param(cls, param.name, id=f"{cls.__name__}-{param.name}")
    for cls in STOPS
    for param in _arguments(cls)
    if param.name not in NOT_COMPARED
]


@pytest.mark.parametrize(("cls", "argument"), CASES)
def test_a_resume_that_changes_the_argument_is_refused(cls, argument) -> None:
    base = cls(**STOPS[cls])
    recorded = resume.run_signature(("m", {}), None, {}, [(base.name, base.hparams())], 0)
    tried = []
    for value in _changes(base, inspect.signature(cls.__init__).parameters.get(argument) or
                          inspect.signature(RollbackEarlyStopping.__init__).parameters[argument]):  # fmt: skip
        changed = None
        for companion in ({}, WITH.get(argument, {})):
            try:
                changed = cls(**(STOPS[cls] | companion | {argument: value}))
                break
            except ValueError:
                continue
        if changed is None:
            tried.append(value)
            continue
        now = resume.run_signature(("m", {}), None, {}, [(changed.name, changed.hparams())], 0)
        keys = {key for key, _, _ in resume.differences(recorded, now)}
        assert f"{base.name}/{argument}" in keys, (value, keys)
        return
    # every other value is refused when the stop is built: this stop cannot run under a changed value at all
    assert tried, f"no other value of {argument} to try"


def test_every_compared_argument_is_in_the_settings() -> None:
    for cls, required in STOPS.items():
        settings = cls(**required).settings()
        names = {param.name for param in _arguments(cls)} - set(NOT_COMPARED)
        assert names <= set(settings), (cls.__name__, names - set(settings))


def test_no_stop_argument_is_spelled_in_two_constructors() -> None:
    shared = {p.name for p in _arguments(RollbackEarlyStopping)} - {"self"}
    for cls in STOPS:
        own = set(inspect.signature(cls.__dict__.get("__init__", object.__init__)).parameters) - {"self", "kwargs"}
        assert not own & shared, (cls.__name__, own & shared)
        assert len([k for k in cls.__mro__ if isinstance(k, type) and issubclass(k, RollbackEarlyStopping)]) <= 2
