"""Benchmark: cost per epoch of the aliasing check vs Wong's PGD-ES check vs one FGSM epoch (prints figures).

    python -m benchmarks.aliasing [--repeats 7] [--device cpu]

- aliasing check: AliasingMonitor's measurement, 100 probe images, PreActResNet18 at 32x32, layer2 (conv1 + shortcut),
  eval mode, no grad, forward stopped after the last monitored layer; also the same with all 6 downsampling layers.
- PGD-ES check: PGD-5 (step 2/255, eps 8/255, 1 restart) + one prediction on a 128-image batch, same model.
- FGSM epoch: one FGSM-RS training epoch on MNIST5k's 4000 training images, batch 100, SmallCNN (Adam), vs the aliasing
  check of SmallCNN on 100 MNIST probe images.
- per-batch mode: AliasingMonitor(every_n_train_steps=1)'s measurement after a step (both SmallCNN layers on the clean
  training batch: all 100 images, or batch_probe_size=8) vs one FGSM-RS training step, over 10 batches.
The measurements are alternated within each repeat (same process, same load), after one warm-up round; the medians
and the min..max spread over the repeats are printed. Random data for the ResNet; real MNIST5k digits for SmallCNN.
"""

import argparse
import statistics

import torch
import torch.nn.functional as F

from benchmarks.timing import timed
from robustrain.aliasing import measure_model_aliasing, probe_aliasing
from robustrain.attacks import fgsm, pgd
from robustrain.core.train_eval_modes import eval_mode
from robustrain.data import MNIST5k
from robustrain.models import PreActResNet18, SmallCNN


def bench_aliasing(repeats: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds of each task, one entry per repeat (the tasks alternated within every repeat, after a warm-up round)."""
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
    train_batches = [(x.to(device), y.to(device)) for x, y in data.train_dataloader()]
    small = SmallCNN().to(device)
    opt = torch.optim.Adam(small.parameters(), lr=1e-3)

    def fgsm_step(x: torch.Tensor, y: torch.Tensor) -> None:
        small.train()
        loss = F.cross_entropy(small(fgsm(small, x, y, 0.3, 0.375, "random_clipped")), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def fgsm_epoch() -> None:
        for x, y in train_batches:
            fgsm_step(x, y)

    def batch_checks(n_images: int | None) -> None:
        # what AliasingMonitor(every_n_train_steps=1, batch_probe_size=n_images) does after each step: every layer,
        # the clean training batch, the per-layer sums to the host (the all-reduce is the identity on one device)
        for x, _ in train_batches[:10]:
            recorder = probe_aliasing(small, x[:n_images])
            torch.stack([recorder.sums[name] for name in recorder.layers]).tolist()

    def fgsm_steps() -> None:
        for x, y in train_batches[:10]:
            fgsm_step(x, y)

    def small_checks() -> None:
        for _ in range(SMALL_CHECKS):
            measure_model_aliasing(small, mnist_probe)

    tasks = {
        "aliasing layer2 (PRN18, 100 img)": lambda: measure_model_aliasing(resnet, probe, layer2),
        "aliasing all 6 layers (PRN18, 100 img)": lambda: measure_model_aliasing(resnet, probe),
        "PGD-5 check (PRN18, 128 img)": pgd_check,
        f"{SMALL_CHECKS} aliasing checks (SmallCNN, MNIST, 100 img)": small_checks,
        "FGSM epoch (SmallCNN, MNIST5k 4000 img)": fgsm_epoch,
        "per-batch aliasing x 10 (SmallCNN, 100 img)": lambda: batch_checks(None),
        "per-batch aliasing x 10 (SmallCNN, first 8 img)": lambda: batch_checks(8),
        "FGSM step x 10 (SmallCNN, 100 img)": fgsm_steps,
    }
    times: dict[str, list[float]] = {name: [] for name in tasks}
    for round_ in range(repeats + 1):
        for name, fn in tasks.items():
            elapsed = timed(fn, device)
            if round_:  # round 0 warms up
                times[name].append(elapsed)
    return times


SMALL_CHECKS = 5  # SmallCNN's check is short: timed 5 times in a row, divided by 5

RATIOS = {  # name: (numerator task, denominator task, target as "<= x", numerator count)
    "aliasing layer2 / PGD-5 check (PRN18)": (
        "aliasing layer2 (PRN18, 100 img)",
        "PGD-5 check (PRN18, 128 img)",
        0.05,
        1,
    ),
    "aliasing all layers / PGD-5 check (PRN18)": (
        "aliasing all 6 layers (PRN18, 100 img)",
        "PGD-5 check (PRN18, 128 img)",
        None,
        1,
    ),
    "aliasing / FGSM epoch (SmallCNN, MNIST5k)": (
        f"{SMALL_CHECKS} aliasing checks (SmallCNN, MNIST, 100 img)",
        "FGSM epoch (SmallCNN, MNIST5k 4000 img)",
        0.01,
        SMALL_CHECKS,
    ),
    "per-batch aliasing / FGSM step (SmallCNN, batch 100)": (
        "per-batch aliasing x 10 (SmallCNN, 100 img)",
        "FGSM step x 10 (SmallCNN, 100 img)",
        0.03,
        1,
    ),
    "per-batch aliasing, batch_probe_size 8 / FGSM step (SmallCNN)": (
        "per-batch aliasing x 10 (SmallCNN, first 8 img)",
        "FGSM step x 10 (SmallCNN, 100 img)",
        0.03,
        1,
    ),
}


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.aliasing", description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    times = bench_aliasing(args.repeats, device)
    print(
        f"device: {device} ({torch.get_num_threads()} CPU threads), torch {torch.__version__}, {args.repeats} repeats"
    )
    print(f"{'task':50s} {'median ms':>10s} {'min..max ms':>18s}")
    for name, ts in times.items():
        ms = [1000 * t for t in ts]
        print(f"{name:50s} {statistics.median(ms):10.1f} {min(ms):8.1f}..{max(ms):8.1f}")
    for label, (a, b, target, count) in RATIOS.items():
        per_repeat = [x / count / y for x, y in zip(times[a], times[b])]
        goal = f"  (target <= {target})" if target is not None else ""
        print(
            f"{label:62s} {statistics.median(per_repeat):.4f} "
            f"(min..max {min(per_repeat):.4f}..{max(per_repeat):.4f}){goal}"
        )
    return times


if __name__ == "__main__":
    main()
