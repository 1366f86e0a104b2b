"""Training-speed benchmark: seconds per image of standard, FGSM and PGD-k training steps, and their ratios.

    python -m benchmarks.training train [--repeats 5] [--pgd-steps 10]

Models: SmallCNN on MNIST5k batches (real data), PreActResNet18 on random 32x32 batches (speed does not depend on
the pixel values). The modes are alternated batch by batch, so machine noise hits them alike; the median over
repeats is reported with the min-max spread of the per-repeat ratios.
"""

import argparse
import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.timing import timed
from robustrain.attacks import fgsm, pgd
from robustrain.data import MNIST5k
from robustrain.models import PreActResNet18, SmallCNN


def _train_step(net: nn.Module, opt: torch.optim.Optimizer, perturb: Callable, x: torch.Tensor, y: torch.Tensor):
    inputs = perturb(net, x, y)
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(net(inputs), y).backward()
    opt.step()


def _time_step(net, opt, perturb, x, y, device) -> float:
    return timed(lambda: _train_step(net, opt, perturb, x, y), device)


def bench_training(
    model_name: str, n_batches: int, batch_size: int, repeats: int, pgd_steps: int, device: torch.device
) -> dict[str, list[float]]:
    """Seconds per image for each mode, one entry per repeat.

    The modes are alternated batch by batch (standard, FGSM, PGD on batch 1, then on batch 2, ...), so a burst of
    load from elsewhere on a shared machine hits all of them alike.
    """
    if model_name == "SmallCNN":
        x, y = MNIST5k().probe_set(n_batches * batch_size, seed=0)
        net, eps = SmallCNN(), 0.3
    else:
        x, y = torch.rand(n_batches * batch_size, 3, 32, 32), torch.randint(0, 10, (n_batches * batch_size,))
        net, eps = PreActResNet18(), 8 / 255
    net = net.to(device).train()
    batches = list(zip(x.to(device).split(batch_size), y.to(device).split(batch_size)))
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    modes = {
        "standard": lambda n, a, b: a,
        "fgsm": lambda n, a, b: fgsm(n, a, b, eps, 1.25 * eps, "random_clipped"),
        f"pgd{pgd_steps}": lambda n, a, b: pgd(n, a, b, eps, eps / 4, pgd_steps),
    }
    for perturb in modes.values():  # warm-up (allocator, kernels)
        _time_step(net, opt, perturb, *batches[0], device)
    times = {name: [] for name in modes}
    for _ in range(repeats):
        totals = dict.fromkeys(modes, 0.0)
        for xb, yb in batches:
            for name, perturb in modes.items():
                totals[name] += _time_step(net, opt, perturb, xb, yb, device)
        for name, total in totals.items():
            times[name].append(total / len(x))
    return times


def _report(model_name: str, times: dict[str, list[float]], pgd_steps: int) -> None:
    std = times["standard"]
    print(f"\n{model_name}: seconds per image (median of {len(std)} alternated repeats)")
    for name, values in times.items():
        ratios = [v / s for v, s in zip(values, std)]
        target = {"fgsm": "<= 2.1", f"pgd{pgd_steps}": f"<= {1.05 * (pgd_steps + 1):.2f}"}.get(name, "")
        print(
            f"  {name:>9}: {statistics.median(values) * 1e3:8.3f} ms/img   ratio to standard "
            f"{statistics.median(ratios):5.2f} (spread {min(ratios):.2f}-{max(ratios):.2f}) {target}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training", description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["train"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pgd-steps", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=["SmallCNN", "PreActResNet18"])
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    print(f"device {device} ({where}), torch {torch.__version__}")
    for model_name in args.models:
        small = model_name == "SmallCNN"
        n_batches, batch_size = (10, 100) if small else ((4, 32) if device.type == "cpu" else (20, 128))
        times = bench_training(model_name, n_batches, batch_size, args.repeats, args.pgd_steps, device)
        _report(f"{model_name} ({n_batches} batches of {batch_size})", times, args.pgd_steps)


if __name__ == "__main__":
    main()
