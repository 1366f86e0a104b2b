"""The speed options of a training module: channels-last memory format and torch.compile of the network.

Both leave what is computed unchanged (up to float rounding) and change only how fast: measured effects in
docs/benchmarks.md ("Speed options"). Mixed precision is the trainer's (`trainer.precision: bf16-mixed`) and the
DataLoader's pinned memory the datamodule's (`pin_memory`).
"""

from typing import Any

import torch
from torch import nn

from robustrain.core.errors import BadInputError

# torch.compile's keyword arguments a config may set (all but the model itself)
COMPILE_KEYS = ("fullgraph", "dynamic", "backend", "mode", "options", "disable")
COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_options(value: bool | dict[str, Any]) -> dict[str, Any] | None:
    """torch.compile's keyword arguments from the `compile` key: false -> None (no compilation), true -> {} (torch's
    defaults: inductor, mode "default"), a mapping -> itself, checked here, at construction, not at the first step.

    Raises:
        BadInputError: for another type, a key torch.compile does not take, an unknown mode or backend.
    """
    if isinstance(value, bool):
        return {} if value else None
    if not isinstance(value, dict):
        raise BadInputError(
            f"compile={value!r} is not valid: it must be true, false or a mapping of torch.compile arguments "
            f"({', '.join(COMPILE_KEYS)}), e.g. {{mode: max-autotune}}"
        )
    unknown = sorted(set(value) - set(COMPILE_KEYS))
    if unknown:
        raise BadInputError(
            f"compile has key(s) {unknown} that torch.compile does not take; valid keys: {', '.join(COMPILE_KEYS)}"
        )
    if value.get("mode") not in COMPILE_MODES:
        raise BadInputError(
            f"compile.mode={value['mode']!r} is not valid: it must be one of {[m for m in COMPILE_MODES if m]}"
        )
    if value.get("mode") is not None and value.get("options") is not None:
        raise BadInputError("compile takes `mode` or `options`, not both (torch.compile refuses the pair)")
    backend = value.get("backend", "inductor")
    if value.get("mode") is not None and backend != "inductor":
        raise BadInputError(f"compile.mode={value['mode']!r} is an inductor setting; backend {backend!r} takes none")
    if isinstance(backend, str):
        backends = torch._dynamo.list_backends(exclude_tags=())  # the registry torch.compile looks names up in
        if backend not in backends:
            raise BadInputError(f"compile.backend={backend!r} is not valid: torch's backends are {backends}")
    return dict(value)


def match_state_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give every state tensor of `optimizer` shaped as its parameter the parameter's memory layout.

    A checkpoint saved without channels-last weights and resumed with them (or the reverse) restores momentum buffers
    and Adam's moments in the old layout, which torch's fused kernels would read element by element in the new one.
    """
    for param, state in optimizer.state.items():
        for key, value in state.items():
            if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def apply_speed_options(net: nn.Module, channels_last: bool, compile_kwargs: dict[str, Any] | None) -> None:
    """Put `net`'s 4-D weights in channels-last format and / or compile it in place (`nn.Module.compile`).

    Compiling in place keeps the module and its parameter names: every attack and the callbacks' probes call the
    compiled network through `net(x)`, and a state dict loads into an uncompiled network (unlike the `_orig_mod.`
    prefix of the module `torch.compile(net)` returns). Forward hooks added after compilation are not run by the
    compiled code, so the measurements that hook layers (robustrain.aliasing) run the network eagerly. Idempotent: a
    second call does not recompile.
    """
    if channels_last:
        net.to(memory_format=torch.channels_last)
    if compile_kwargs is not None and not getattr(net, "_robustrain_compiled", False):
        net.compile(**compile_kwargs)
        net._robustrain_compiled = True
