"""Finding the downsampling layers of any nn.Module, re-running them at stride 1, and hooking the aliasing measure.

A downsampling layer is a strided nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d or antialiased_cnns BlurPool (blur and
subsampling measured as one strided op; a stride-1 MaxPool or conv before it is not a downsampling layer), or FLC
pooling (robustrain.models.flc), whose stride-1 op is the identity and whose output is compared with the alias-free
spectrum of its input directly (measure.output_aliasing_measures): it is not a subsampled map.
Conv and pool subclasses count only when they keep torch's forward; BlurPool subclasses (e.g. robustrain.models'
small-map variant) always count, as they are re-run through their own forward with the stride set to 1.
For each of them stride_one_output(module, x)[..., ::sh, ::sw] == module(x), which is what the measure needs
(paper section 3.1).
"""

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from antialiased_cnns.blurpool import BlurPool
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from robustrain.aliasing.measure import aliasing_measures, output_aliasing_measures, output_size
from robustrain.core.train_eval_modes import probe_mode
from robustrain.core.validation import check_positive_int
from robustrain.models.flc import FLCPool

_DOWNSAMPLING_TYPES = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, BlurPool, FLCPool)


def layer_stride(module: nn.Module) -> tuple[int, int]:
    """The (sh, sw) stride of a downsampling layer type (Conv2d, MaxPool2d, AvgPool2d, BlurPool)."""
    if isinstance(module, (BlurPool, FLCPool)):
        return _pair(module.stride)
    for kind in _DOWNSAMPLING_TYPES:
        if isinstance(module, kind) and type(module).forward is kind.forward:
            stride = module.stride if module.stride is not None else module.kernel_size
            return _pair(stride)
    names = ", ".join(kind.__name__ for kind in _DOWNSAMPLING_TYPES)
    raise ValueError(f"module must be one of {names} with its own forward, got {type(module).__name__}")


def find_downsampling_layers(model: nn.Module) -> dict[str, nn.Module]:
    """All layers of the model that subsample with a stride > 1 on some axis.

    Args:
        model: Any module; searched recursively.

    Returns:
        Module path (as in named_modules, "" for the model itself) -> module, in definition order.
    """
    found = {}
    for name, module in model.named_modules():
        try:
            stride = layer_stride(module)
        except ValueError:
            continue
        if max(stride) > 1:
            found[name] = module
    return found


def _pool_geometry(
    size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool
) -> tuple[int, int]:
    """(strided output size, right padding so a stride-1 pool covers every window), by PyTorch's size rule."""
    span = dilation * (kernel - 1) + 1
    out = (size + 2 * padding - span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out, max(padding, (out - 1) * stride + span - size - padding)


def _stride_one_pool(module: nn.MaxPool2d | nn.AvgPool2d, x: Tensor) -> Tensor:
    h, w = x.shape[-2:]
    kernel, stride, padding = _pair(module.kernel_size), layer_stride(module), _pair(module.padding)
    dilation = _pair(getattr(module, "dilation", 1))
    (out_h, right_h), (out_w, right_w) = (
        _pool_geometry(*args, module.ceil_mode) for args in zip((h, w), kernel, stride, padding, dilation)
    )
    pads = (padding[1], right_w, padding[0], right_h)
    # keep the stride-1 positions 0 .. (out - 1) * s, the window starts of the strided pool
    crop = (slice(None), slice(None), slice((out_h - 1) * stride[0] + 1), slice((out_w - 1) * stride[1] + 1))
    if isinstance(module, nn.MaxPool2d):
        # padded and clipped positions never win the max, as in PyTorch
        return F.max_pool2d(F.pad(x, pads, value=-math.inf), kernel, stride=1, dilation=dilation)[crop]
    sums = F.avg_pool2d(F.pad(x, pads), kernel, stride=1, divisor_override=1)
    if module.divisor_override:
        return sums[crop] / module.divisor_override
    # PyTorch divides by the window's overlap with the padded input (count_include_pad) or with the input
    counted = torch.ones(1, 1, h, w, dtype=x.dtype, device=x.device)
    if module.count_include_pad:
        counted = F.pad(counted, (padding[1], padding[1], padding[0], padding[0]), value=1.0)
        counted = F.pad(counted, (0, right_w - padding[1], 0, right_h - padding[0]))
    else:
        counted = F.pad(counted, pads)
    divisor = F.avg_pool2d(counted, kernel, stride=1, divisor_override=1)  # (1, 1, H1, W1)
    return sums[crop] / divisor[crop]


def _stride_one_blurpool(module: BlurPool, x: Tensor) -> Tensor:
    # BlurPool's forward (and its subclasses') pads, blurs depthwise and reads self.stride when it subsamples:
    # run that forward (without hooks) at stride 1, with the filter in x's dtype.
    stride, filt = module.stride, module.filt
    module.stride, module.filt = 1, filt.to(x.dtype)
    try:
        return type(module).forward(module, x)
    finally:
        module.stride, module.filt = stride, filt


def stride_one_output(module: nn.Module, x: Tensor) -> Tensor:
    """The downsampling layer's op re-run at stride 1 on the same input: f_s1, with module(x) == f_s1[..., ::sh, ::sw].

    Conv2d keeps weight, bias, padding (and padding_mode), dilation and groups; pools keep kernel, padding,
    dilation, ceil_mode and divisor rules; BlurPool runs its own forward with stride 1 (same padding and filter).
    Parameters and buffers are cast to x's dtype.

    Args:
        module: A layer that layer_stride accepts.
        x: The layer's input, shape (B, C, H, W).

    Returns:
        f_s1 of shape (B, C_out, H1, W1) with ceil(H1 / sh), ceil(W1 / sw) equal to the layer's output size.
    """
    layer_stride(module)
    if x.dim() != 4:
        raise ValueError(f"x must have shape (B, C, H, W), got shape {tuple(x.shape)}")
    if isinstance(module, nn.Conv2d):
        bias = None if module.bias is None else module.bias.to(x.dtype)
        padding = module.padding
        if module.padding_mode != "zeros":
            x, padding = F.pad(x, module._reversed_padding_repeated_twice, mode=module.padding_mode), 0
        return F.conv2d(x, module.weight.to(x.dtype), bias, 1, padding, module.dilation, module.groups)
    if isinstance(module, BlurPool):
        return _stride_one_blurpool(module, x)
    if isinstance(module, FLCPool):
        return x  # an ideal downsampler's stride-1 op: nothing
    return _stride_one_pool(module, x)


def layer_measures(module: nn.Module, f_s1: Tensor, output: Tensor) -> tuple[Tensor, Tensor]:
    """(absolute, relative) per-sample aliasing of one layer from its stride-1 map and its output."""
    stride = layer_stride(module)
    if isinstance(module, FLCPool):
        return output_aliasing_measures(f_s1, output.float(), stride)
    return aliasing_measures(f_s1, stride)


class _StopForward(Exception):
    """Raised by the last monitored layer of a probe forward pass to skip the rest of the network."""


class AliasingRecorder:
    """Per-layer sums over samples and sample counts of the aliasing measure, filled by capture_aliasing's hooks.

    Attributes:
        layers: Monitored module path -> module.
        sums: Module path -> float64 tensor, sum over samples of the per-sample measure (on the layer's device).
        relative_sums: The same for relative_aliasing_measure (both come from the same FFTs).
        counts: Module path -> number of samples measured.
    """

    def __init__(self, layers: dict[str, nn.Module]) -> None:
        self.layers = layers
        self.sums: dict[str, Tensor] = {}
        self.relative_sums: dict[str, Tensor] = {}
        self.counts: dict[str, int] = {name: 0 for name in layers}

    def add(self, name: str, per_sample: Tensor, relative: Tensor | None = None) -> None:
        """Accumulate per-sample values of shape (B,) for one layer (and, optionally, its relative measure)."""
        total = per_sample.detach().double().sum()
        self.sums[name] = self.sums[name] + total if name in self.sums else total
        if relative is not None:
            rel = relative.detach().double().sum()
            self.relative_sums[name] = self.relative_sums[name] + rel if name in self.relative_sums else rel
        self.counts[name] += per_sample.numel()

    def means(self, relative: bool = False) -> dict[str, float]:
        """Mean over all measured samples per layer (layers never reached are left out).

        Args:
            relative: The relative measure's means instead of the paper's absolute one.
        """
        sums = self.relative_sums if relative else self.sums
        return {name: sums[name].item() / self.counts[name] for name in sums}

    def reset(self) -> None:
        """Forget all accumulated values."""
        self.sums.clear()
        self.relative_sums.clear()
        self.counts = {name: 0 for name in self.layers}


def _select_layers(model: nn.Module, layer_names: list[str] | None) -> dict[str, nn.Module]:
    found = find_downsampling_layers(model)
    if layer_names is None:
        if not found:
            kinds = ", ".join(kind.__name__ for kind in _DOWNSAMPLING_TYPES)
            raise ValueError(f"model has no downsampling layers (strided {kinds})")
        return found
    unknown = [name for name in layer_names if name not in found]
    if unknown or not layer_names:
        raise ValueError(
            f"layer_names {layer_names!r} must be a non-empty subset of the downsampling layers {list(found)}"
        )
    return {name: found[name] for name in layer_names}


@contextmanager
def capture_aliasing(model: nn.Module, layer_names: list[str] | None = None) -> Iterator[AliasingRecorder]:
    """Measure aliasing in the model's downsampling layers during every forward pass inside the context.

    Each hook re-runs its layer at stride 1 in float32 (autocast off, no grad) and adds the per-sample
    aliasing_measure to the recorder. Hooks are removed on exit, also after an exception.

    Args:
        model: The model; called as model(x) inside the context.
        layer_names: Module paths to monitor (see find_downsampling_layers); default all downsampling layers.

    Yields:
        The AliasingRecorder holding per-layer sums and counts.
    """
    layers = _select_layers(model, layer_names)
    recorder = AliasingRecorder(layers)

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor | tuple[Tensor, ...]) -> None:
            x = inputs[0].detach()
            with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
                f_s1 = stride_one_output(module, x.float())
            out = output[0] if isinstance(output, tuple) else output
            sh, sw = layer_stride(module)
            if tuple(out.shape[-2:]) != output_size(f_s1.shape[-2:], (sh, sw)):
                shapes = f"stride-1 map {tuple(f_s1.shape)}, output {tuple(out.shape)}"
                raise RuntimeError(f"{name}: the stride-1 re-run does not subsample to the output ({shapes})")
            recorder.add(name, *layer_measures(module, f_s1, out.detach()))

        return hook

    handles = [module.register_forward_hook(make_hook(name)) for name, module in layers.items()]
    try:
        with torch.compiler.set_stance("force_eager"):  # a compiled network would skip hooks added after compiling
            yield recorder
    finally:
        for handle in handles:
            handle.remove()


def measure_model_aliasing(
    model: nn.Module,
    images: Tensor,
    layer_names: list[str] | None = None,
    batch_size: int = 100,
    relative: bool = False,
    batchnorm: str = "eval",
) -> dict[str, float]:
    """Mean aliasing measure per downsampling layer over a set of images, as in the paper (eval mode, no grad).

    The forward pass stops after the last monitored layer. Every submodule's training flag is restored after.
    For reductions across ranks use capture_aliasing's recorder (sums and counts) instead.

    Args:
        model: The model, on the images' device.
        images: Inputs of shape (N, C, H, W) in the model's input range, e.g. 100 fixed training images.
        layer_names: Module paths to monitor; default all downsampling layers.
        batch_size: Images per forward pass, >= 1.
        relative: Return relative_aliasing_measure's means instead of the paper's absolute measure.
        batchnorm: "eval" (running statistics: the model as it is evaluated) or "train" (each batch of `batch_size`
            images normalised with its own statistics, as training sees it; running statistics untouched).

    Returns:
        Module path -> mean over the images of the per-sample measure.
    """
    return probe_aliasing(model, images, layer_names, batch_size, batchnorm).means(relative)


def probe_aliasing(
    model: nn.Module,
    images: Tensor,
    layer_names: list[str] | None = None,
    batch_size: int = 100,
    batchnorm: str = "eval",
) -> AliasingRecorder:
    """The recorder of measure_model_aliasing (absolute and relative sums, counts), for callers that need both."""
    check_positive_int("batch_size", batch_size)
    if images.dim() != 4 or len(images) == 0:
        raise ValueError(f"images must have shape (N, C, H, W) with N >= 1, got shape {tuple(images.shape)}")
    layers = _select_layers(model, layer_names)
    recorder = AliasingRecorder(layers)
    with probe_mode(model, batchnorm), torch.no_grad(), _measuring_forwards(model, layers, recorder) as measure:
        for batch in images.split(batch_size):
            measure(batch)
    return recorder


@contextmanager
def _measuring_forwards(
    model: nn.Module, layers: dict[str, nn.Module], recorder: AliasingRecorder
) -> Iterator[Callable[[Tensor], None]]:
    """Inside, each monitored layer runs once, at stride 1: it measures that map and returns its subsampled copy.

    This is what makes the probe cost one stride-1 evaluation per layer instead of a strided forward plus a
    stride-1 re-run: module(x) == stride_one_output(module, x)[..., ::sh, ::sw] for every layer layer_stride
    accepts (tested), up to float rounding. Each layer's forward is an instance attribute inside the context; the
    class's forward is back on exit.

    Yields:
        measure(batch): one forward pass of the model, stopped once every monitored layer has measured the batch.
    """
    pending: set[str] = set()

    def measure(batch: Tensor) -> None:
        pending.update(layers)
        try:
            model(batch)
        except _StopForward:
            pass

    def make_forward(name: str, module: nn.Module):
        sh, sw = layer_stride(module)

        def forward(x: Tensor) -> Tensor:
            with torch.autocast(device_type=x.device.type, enabled=False):
                f_s1 = stride_one_output(module, x.float())  # (B, C_out, H1, W1)
            # FLC's output is not f_s1 subsampled: run it (its own forward, no hooks)
            out = type(module).forward(module, x) if isinstance(module, FLCPool) else None
            recorder.add(name, *layer_measures(module, f_s1, f_s1[..., ::sh, ::sw] if out is None else out))
            pending.discard(name)
            if not pending:  # the last monitored layer of this forward pass: skip the rest of the network
                raise _StopForward
            return f_s1[..., ::sh, ::sw].to(x.dtype) if out is None else out  # (B, C_out, H1, W1) -> the output

        return forward

    saved = {name: module.__dict__.get("forward") for name, module in layers.items()}
    try:
        for name, module in layers.items():
            module.forward = make_forward(name, module)
        with torch.compiler.set_stance("force_eager"):  # no recompilation for the swapped forwards
            yield measure
    finally:
        for name, module in layers.items():
            if saved[name] is None:
                module.__dict__.pop("forward", None)
            else:
                module.forward = saved[name]


def group_layers(values: dict[str, float], prefixes: list[str]) -> dict[str, float]:
    """Average the per-layer values under each module-path prefix (the paper's per-block value).

    E.g. "layer2" of a ResNet-18 = mean of "layer2.0.conv1" and "layer2.0.downsample.0". A prefix matches a path
    equal to it or starting with it followed by a dot, so "layer1" does not match "layer10".

    Args:
        values: Module path -> value, e.g. from measure_model_aliasing.
        prefixes: Module-path prefixes, each matching at least one path.

    Returns:
        Prefix -> mean of its layers' values, in the order of prefixes.
    """
    grouped = {}
    for prefix in prefixes:
        members = [v for name, v in values.items() if name == prefix or name.startswith(prefix + ".")]
        if not members:
            raise ValueError(f"prefix {prefix!r} matches none of the layers {list(values)}")
        grouped[prefix] = sum(members) / len(members)
    return grouped
