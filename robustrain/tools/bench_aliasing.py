"""Benchmark: cost per epoch of the aliasing check vs Wong's PGD-ES check vs one FGSM epoch (prints figures).

    python -m robustrain.tools.bench_aliasing [--repeats 7] [--device cpu]

- aliasing check: AliasingMonitor's measurement, 100 probe images, PreActResNet18 at 32x32, layer2 (conv1 + shortcut),
  eval mode, no grad, forward stopped after the last monitored layer; also the same with all 6 downsampling layers.
- PGD-ES check: PGD-5 (step 2/255, eps 8/255, 1 restart) + one prediction on a 128-image batch, same model.
- FGSM epoch: one FGSM-RS training epoch on MNIST5k's 4000 training images, batch 100, SmallCNN (Adam), vs the aliasing
  check of SmallCNN on 100 MNIST probe images.
The measurements are alternated within each repeat (same process, same load), after one warm-up round; the medians
and the min..max spread over the repeats are printed. Random data for the ResNet; real MNIST5k digits for SmallCNN.
"""

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from robustrain.aliasing import measure_model_aliasing
from robustrain.attacks import fgsm, pgd
from robustrain.data import MNIST5k
from robustrain.models import PreActResNet18, SmallCNN
from robustrain.train_eval_modes import eval_mode


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    parser = argparse.ArgumentParser(
        prog="python -m robustrain.tools.bench_aliasing", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)

    resnet = PreActResNet18().to(device)
    probe = torch.rand(100, 3, 32, 32, device=device)
    batch, labels = torch.rand(128, 3, 32, 32, device=device), torch.randint(0, 10, (128,), device=device)
    layer2 = ["layer2.0.conv1", "layer2.0.shortcut"]

    def pgd_check() -> None:
        with eval_mode(resnet):
            adv = pgd(resnet, batch, labels, 8 / 255, 2 / 255, 5)
            with torch.no_grad():
                resnet(adv).argmax(1)

    data = MNIST5k(batch_size=100)
    data.setup()
    mnist_probe = data.probe_set(100, 0)[0].to(device)
    small = SmallCNN().to(device)
    opt = torch.optim.Adam(small.parameters(), lr=1e-3)

    def fgsm_epoch() -> None:
        small.train()
        for x, y in data.train_dataloader():
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(small(fgsm(small, x, y, 0.3, 0.375)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

    tasks = {
        "aliasing layer2 (PRN18, 100 img)": lambda: measure_model_aliasing(resnet, probe, layer2),
        "aliasing all 6 layers (PRN18, 100 img)": lambda: measure_model_aliasing(resnet, probe),
        "PGD-5 check (PRN18, 128 img)": pgd_check,
        "aliasing SmallCNN (MNIST, 100 img)": lambda: measure_model_aliasing(small, mnist_probe),
        "FGSM epoch (SmallCNN, MNIST5k 4000 img)": fgsm_epoch,
    }
    times: dict[str, list[float]] = {name: [] for name in tasks}
    for round_ in range(args.repeats + 1):
        for name, fn in tasks.items():
            elapsed = _timed(fn, device)
            if round_:  # round 0 warms up
                times[name].append(elapsed)

    print(
        f"device: {device} ({torch.get_num_threads()} CPU threads), torch {torch.__version__}, {args.repeats} repeats"
    )
    print(f"{'task':42s} {'median ms':>10s} {'min..max ms':>18s}")
    for name, ts in times.items():
        ms = [1000 * t for t in ts]
        print(f"{name:42s} {statistics.median(ms):10.1f} {min(ms):8.1f}..{max(ms):8.1f}")

    def ratio(a: str, b: str) -> str:
        per_repeat = [x / y for x, y in zip(times[a], times[b])]
        return f"{statistics.median(per_repeat):.4f} (min..max {min(per_repeat):.4f}..{max(per_repeat):.4f})"

    names = list(tasks)
    print(f"aliasing layer2 / PGD-5 check:      {ratio(names[0], names[2])}  (target <= 0.1)")
    print(f"aliasing all layers / PGD-5 check:  {ratio(names[1], names[2])}")
    print(f"aliasing SmallCNN / FGSM epoch:     {ratio(names[3], names[4])}  (target <= 0.01)")
    return times


if __name__ == "__main__":
    main()
