"""Benchmark: the cost of one check of every CO detector, against one FGSM epoch and Wong et al.'s PGD-ES check.

    python -m benchmarks.detectors [--repeats 5] [--threads 1] [--device cpu] [--out FILE.json]

(default --out: docs/results/benchmarks_detectors.json)

On the CO lab's two networks and data (configs/co_lab): SmallCNN on MNIST5k (batch 25, 160 steps per epoch) and
PreActResNet18 width 16 on the digits padded to 32 px (batch 128, 32 steps per epoch), both with the injected feature.
Tasks, as the callbacks run them:
- fgsm_epoch: one zero-start FGSM training epoch, timed over 8 steps and scaled to the epoch's steps;
- pgd_es: PGD-5 (step eps / 4) on one training batch plus a prediction (Wong et al.'s check, source first_batch);
- aliasing: the probe of 100 training images through the monitored layers at stride 1 (all downsampling layers);
- aliasing_step: the same on 16 images of a batch (`every_n_train_steps`, `batch_probe_size: 16`), per check;
- grad_align: two input gradients on the 100 probe images (x and x + eta) and their cosines;
- grad_align_step: the same on 16 images, per check;
- masking_gap: plain FGSM on the validation images the module attacks (`eval_size`), the only cost the gap adds
  (its PGD half is the validation the module runs anyway);
- abnormal: nothing to time: the fraction comes from the two losses the FGSM step computes anyway.
Tasks are alternated within each repeat after a warm-up round; each ratio is the median of the per-repeat ratios,
with their min..max.
"""

import argparse
import json
import statistics
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.timing import timed
from robustrain.aliasing import probe_aliasing
from robustrain.attacks import fgsm, pgd
from robustrain.core.train_eval_modes import eval_mode
from robustrain.data import MNIST5k
from robustrain.models import PreActResNet18, SmallCNN
from robustrain.signals import gradient_alignment

NETWORKS = {
    # name -> (network factory, datamodule arguments, eps, eval_size)
    "SmallCNN": (lambda: SmallCNN(), {"batch_size": 25, "inject_beta": 0.1}, 0.2, 500),
    "PreActResNet18-w16": (
        lambda: PreActResNet18(in_channels=1, normalization="mnist", width=16),
        {"batch_size": 128, "padding": 2, "inject_beta": 0.05},
        0.2,
        250,
    ),
}


def tasks(network: str, device: torch.device) -> tuple[dict[str, Callable[[], object]], dict[str, float]]:
    """The timed tasks of one network, and the factor that turns each task's time into the time of one check."""
    factory, data_args, eps, eval_size = NETWORKS[network]
    torch.manual_seed(0)
    net = factory().to(device)
    data = MNIST5k(**data_args)
    data.setup()
    box = data.input_range
    batches = [(x.to(device), y.to(device)) for x, y in data.train_dataloader()]
    steps_per_epoch = len(batches)
    probe, probe_labels = (t.to(device) for t in data.probe_set(100, 0))
    val, val_labels = (t.to(device) for t in data.probe_set(eval_size, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    timed_steps = 8

    def fgsm_steps() -> None:
        net.train()
        for x, y in batches[:timed_steps]:
            loss = F.cross_entropy(net(fgsm(net, x, y, eps, eps, "zero", box=box)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

    def pgd_es() -> None:
        x, y = batches[0]
        with eval_mode(net):
            adv = pgd(net, x, y, eps, eps / 4, 5, box=box)
            with torch.no_grad():
                net(adv).argmax(1).tolist()

    def aliasing(images: torch.Tensor) -> Callable[[], None]:
        def run() -> None:
            recorder = probe_aliasing(net, images)
            torch.stack(list(recorder.sums.values())).tolist()

        return run

    def grad_align(images: torch.Tensor, labels: torch.Tensor) -> Callable[[], None]:
        def run() -> None:
            with eval_mode(net):
                gradient_alignment(net, images, labels, eps, box).mean().item()

        return run

    def masking_gap() -> None:
        with eval_mode(net):
            for start in range(0, len(val), 500):
                x, y = val[start : start + 500], val_labels[start : start + 500]
                adv = fgsm(net, x, y, eps, eps, "zero", box=box)
                with torch.no_grad():
                    net(adv).argmax(1).tolist()

    x16, y16 = batches[1][0][:16], batches[1][1][:16]
    jobs = {
        "fgsm_epoch": fgsm_steps,
        "pgd_es": pgd_es,
        "aliasing": aliasing(probe),
        "aliasing_step": aliasing(x16),
        "grad_align": grad_align(probe, probe_labels),
        "grad_align_step": grad_align(x16, y16),
        "masking_gap": masking_gap,
    }
    scale = dict.fromkeys(jobs, 1.0)
    scale["fgsm_epoch"] = steps_per_epoch / timed_steps
    return jobs, scale


def bench(network: str, repeats: int, device: torch.device) -> dict[str, dict[str, float]]:
    """Per task: seconds per check (median) and its ratio to one FGSM epoch and to the PGD-ES check, with spreads."""
    jobs, scale = tasks(network, device)
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for repeat in range(repeats + 1):  # the first round warms up
        for name, job in jobs.items():
            seconds = timed(job, device) * scale[name]
            if repeat:
                times[name].append(seconds)
    out = {}
    for name, seconds in times.items():
        vs_epoch = [s / e for s, e in zip(seconds, times["fgsm_epoch"])]
        vs_pgd = [s / p for s, p in zip(seconds, times["pgd_es"])]
        out[name] = {
            "seconds": statistics.median(seconds),
            "vs_fgsm_epoch": statistics.median(vs_epoch),
            "vs_fgsm_epoch_spread": [min(vs_epoch), max(vs_epoch)],
            "vs_pgd_es": statistics.median(vs_pgd),
            "vs_pgd_es_spread": [min(vs_pgd), max(vs_pgd)],
        }
    out["abnormal"] = {"seconds": 0.0, "vs_fgsm_epoch": 0.0, "vs_pgd_es": 0.0, "note": "from the step's own losses"}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.detectors", description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("docs/results/benchmarks_detectors.json"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    result = {
        "command": "python -m benchmarks.detectors " + " ".join(argv or []),
        "device": args.device,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "repeats": args.repeats,
        "networks": {},
    }
    for network in NETWORKS:
        result["networks"][network] = bench(network, args.repeats, device)
        print(f"{network}: one check as a fraction of one FGSM epoch / of the PGD-ES check (median, min..max)")
        for name, r in result["networks"][network].items():
            if name == "abnormal":
                print(f"  {name:16s} 0 (the step's own losses)")
                continue
            lo, hi = r["vs_pgd_es_spread"]
            print(
                f"  {name:16s} {r['vs_fgsm_epoch']:.4f} of an epoch   {r['vs_pgd_es']:.3f}x PGD-ES ({lo:.3f}..{hi:.3f})"
                f"   {1000 * r['seconds']:.1f} ms"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
