"""Training-speed benchmark: seconds per image of each training method's step, and its ratio to an FGSM step.

    python -m benchmarks.training train [--repeats 5] [--pgd-steps 10] [--methods standard fgsm nfgsm ...]
        [--json docs/results/benchmarks_training.json]

Methods: standard, FGSM-RS, N-FGSM, zero-start FGSM + GradAlign / + ELLE, zero-start FGSM on a network with FLC
pooling / BlurPool, PGD-k.

Models: SmallCNN on MNIST5k batches (real data), PreActResNet18 on random 32x32 batches (speed does not depend on
the pixel values). The modes are alternated batch by batch, so machine noise hits them alike; the median over
repeats is reported with the min-max spread of the per-repeat ratios.
"""

import argparse
import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.timing import timed
from robustrain.attacks import fgsm, nfgsm, pgd
from robustrain.data import MNIST5k
from robustrain.models import PreActResNet18, SmallCNN
from robustrain.training import ELLE, GradAlign, Regularizer

METHODS = ("standard", "fgsm", "nfgsm", "gradalign", "elle", "flc", "blurpool", "pgd")


@dataclass
class Mode:
    """One training step to time: its own network and optimizer, how it perturbs, and its regularizer."""

    net: nn.Module
    opt: torch.optim.Optimizer
    perturb: Callable
    regularizer: Regularizer | None = None


def _train_step(mode: Mode, eps: float, x: torch.Tensor, y: torch.Tensor) -> None:
    inputs = mode.perturb(mode.net, x, y)
    loss = F.cross_entropy(mode.net(inputs), y)
    if mode.regularizer is not None:  # as SingleStepTraining adds it
        loss = loss + mode.regularizer.current_weight() * mode.regularizer.penalty(mode.net, x, y, eps)
    mode.opt.zero_grad(set_to_none=True)
    loss.backward()
    mode.opt.step()


def _network(model_name: str, downsample: str = "strided") -> nn.Module:
    if model_name == "SmallCNN":
        return SmallCNN(downsample=downsample)
    return PreActResNet18(downsample=downsample)


def _modes(model_name: str, methods: Sequence[str], pgd_steps: int, eps: float, device: torch.device) -> dict:
    perturbs = {
        "standard": lambda n, a, b: a,
        "fgsm": lambda n, a, b: fgsm(n, a, b, eps, 1.25 * eps, "random_clipped"),
        "nfgsm": lambda n, a, b: nfgsm(n, a, b, eps, eps)[0],
        f"pgd{pgd_steps}": lambda n, a, b: pgd(n, a, b, eps, eps / 4, pgd_steps),
    }
    zero_fgsm = lambda n, a, b: fgsm(n, a, b, eps, eps, "zero")  # noqa: E731  (the CO lab's FGSM)
    modes = {}
    for method in methods:
        name = f"pgd{pgd_steps}" if method == "pgd" else method
        downsample = method if method in ("flc", "blurpool") else "strided"
        torch.manual_seed(0)
        net = _network(model_name, downsample).to(device).train()
        opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
        regularizer = {"gradalign": GradAlign(0.5), "elle": ELLE(100.0)}.get(method)
        perturb = zero_fgsm if method in ("gradalign", "elle", "flc", "blurpool") else perturbs[name]
        modes[name] = Mode(net, opt, perturb, regularizer)
    return modes


def bench_training(
    model_name: str,
    n_batches: int,
    batch_size: int,
    repeats: int,
    pgd_steps: int,
    device: torch.device,
    methods: Sequence[str] = ("standard", "fgsm", "pgd"),
) -> dict[str, list[float]]:
    """Seconds per image for each method's training step, one entry per repeat.

    The methods are alternated batch by batch (standard, FGSM, ... on batch 1, then on batch 2, ...), so a burst of
    load from elsewhere on a shared machine hits all of them alike. Each method trains its own copy of the network
    (FLC and BlurPool: the network with that downsampling); GradAlign and ELLE are added to a zero-start FGSM step, as
    the CO lab trains them.
    """
    if model_name == "SmallCNN":
        x, y = MNIST5k().probe_set(n_batches * batch_size, seed=0)
        eps = 0.3
    else:
        x, y = torch.rand(n_batches * batch_size, 3, 32, 32), torch.randint(0, 10, (n_batches * batch_size,))
        eps = 8 / 255
    modes = _modes(model_name, methods, pgd_steps, eps, device)
    batches = list(zip(x.to(device).split(batch_size), y.to(device).split(batch_size)))
    for mode in modes.values():  # warm-up (allocator, kernels)
        timed(lambda mode=mode: _train_step(mode, eps, *batches[0]), device)
    times = {name: [] for name in modes}
    for _ in range(repeats):
        totals = dict.fromkeys(modes, 0.0)
        for xb, yb in batches:
            for name, mode in modes.items():
                totals[name] += timed(lambda m=mode, a=xb, b=yb: _train_step(m, eps, a, b), device)
        for name, total in totals.items():
            times[name].append(total / len(x))
    return times


def _report(model_name: str, times: dict[str, list[float]], pgd_steps: int) -> dict[str, dict[str, float]]:
    base = "fgsm" if "fgsm" in times else "standard"
    print(f"\n{model_name}: seconds per image (median of {len(times[base])} alternated repeats), ratio to {base}")
    summary = {}
    for name, values in times.items():
        ratios = [v / b for v, b in zip(values, times[base])]
        summary[name] = {
            "ms_per_image": statistics.median(values) * 1e3,
            f"vs_{base}": statistics.median(ratios),
            "min": min(ratios),
            "max": max(ratios),
        }
        print(
            f"  {name:>9}: {statistics.median(values) * 1e3:8.3f} ms/img   ratio to {base} "
            f"{statistics.median(ratios):5.2f} (spread {min(ratios):.2f}-{max(ratios):.2f})"
        )
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training", description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["train"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pgd-steps", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=["SmallCNN", "PreActResNet18"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--json", type=Path, help="also write the medians and spreads here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    print(f"device {device} ({where}), torch {torch.__version__}")
    results = {"device": where, "torch": torch.__version__, "repeats": args.repeats}
    for model_name in args.models:
        small = model_name == "SmallCNN"
        n_batches, batch_size = (10, 100) if small else ((4, 32) if device.type == "cpu" else (20, 128))
        times = bench_training(model_name, n_batches, batch_size, args.repeats, args.pgd_steps, device, args.methods)
        label = f"{model_name} ({n_batches} batches of {batch_size})"
        results[label] = _report(label, times, args.pgd_steps)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
