"""AutoAttack's cost: robustrain's (torchattacks' components) against Croce & Hein's reference code, whole and per
component, on the same model and images.

    python -m benchmarks.autoattack [--ckpt NAME=CKPT ...] [--images 100] [--eps 0.3] [--repeats 3] [--device cpu]
        [--threads N] [--count] [--json F] [--markdown F]

Without --ckpt the model is the worst-of-10 SmallCNN of benchmarks.spatial (trained on first use, cached in runs/bench)
at eps 0.1, a model the first component does not break entirely, so every component has images to attack. A CKPT is a
robustrain checkpoint (a .ckpt file or a run folder), e.g. a robust and a masked model (`--eps 0.3` for MNIST's
radius). The images: the first --images MNIST5k test digits of configs/eval_robust_mnist5k.yaml for a checkpoint,
benchmarks.spatial's held-out digits for the default model.

Each repeat times the standard version (apgd-ce, apgd-t, fab-t, square; 100 iterations, 9 targets, 5000 queries,
seed 0) and then each component alone on the model's correctly classified images, each time torchattacks' then the
reference's, alternated. A figure is the median over repeats; a ratio (robustrain / reference) the median of the
per-repeat ratios, with their min..max. `--count` also counts, per implementation, the network's calls in the
standard version and the images through it (a wrapper around the network). Needs the reference:
pip install -e '.[reference]'.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from benchmarks.timing import timed
from robustrain.attacks import AUTOATTACK_STANDARD, autoattack

PARTS = ("standard", *AUTOATTACK_STANDARD)
IMPLEMENTATIONS = ("torchattacks", "reference")


def time_part(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, part: str, implementation: str
) -> tuple[float, float]:
    """(seconds, robust accuracy) of one AutoAttack run: the standard version (`part` "standard") or one component."""
    components = AUTOATTACK_STANDARD if part == "standard" else (part,)
    out = {}

    def attack() -> None:
        out["adv"] = autoattack(model, images, labels, eps, components=components, implementation=implementation)

    seconds = timed(attack, images.device)
    with torch.no_grad():
        accuracy = (model(out["adv"]).argmax(1) == labels).float().mean().item()
    return seconds, accuracy


class CountingNetwork(torch.nn.Module):
    """The network, counting its calls, the images through it and the calls with an input gradient."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.counts = {"calls": 0, "images": 0, "gradient_calls": 0}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.counts["calls"] += 1
        self.counts["images"] += len(x)
        self.counts["gradient_calls"] += int(torch.is_grad_enabled() and x.requires_grad)
        return self.net(x)


def count_work(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float) -> dict[str, dict]:
    """Per implementation, the standard version's calls of the network and the images through it."""
    work = {}
    for impl in IMPLEMENTATIONS:
        counting = CountingNetwork(model).eval()
        autoattack(counting, images, labels, eps, implementation=impl)
        work[impl] = counting.counts
    return work


def bench_autoattack(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, repeats: int
) -> dict[str, dict]:
    """Per part: the seconds and robust accuracy of each implementation over repeats, and the ratio's summary (none
    for 0 repeats)."""
    if repeats == 0:
        return {}
    times = {part: {impl: [] for impl in IMPLEMENTATIONS} for part in PARTS}
    accuracy: dict[str, dict[str, float]] = {part: {} for part in PARTS}
    for repeat in range(repeats):
        for part in PARTS:
            for impl in IMPLEMENTATIONS:
                seconds, acc = time_part(model, images, labels, eps, part, impl)
                times[part][impl].append(seconds)
                accuracy[part][impl] = acc
            print(
                f"repeat {repeat} {part:9s} "
                + ", ".join(
                    f"{impl} {times[part][impl][-1]:.2f} s (acc {accuracy[part][impl]:.3f})" for impl in IMPLEMENTATIONS
                )
            )
    out = {}
    for part in PARTS:
        ours, theirs = times[part]["torchattacks"], times[part]["reference"]
        ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
        out[part] = {
            "seconds": {impl: statistics.median(times[part][impl]) for impl in IMPLEMENTATIONS},
            "robust_accuracy": accuracy[part],
            "ratio": statistics.median(ratios),
            "min": min(ratios),
            "max": max(ratios),
        }
    return out


def default_setup(n_images: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    from benchmarks.spatial import worst_of_10_setup

    return worst_of_10_setup(n_images)


def checkpoint_setup(path: str, n_images: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A checkpoint's network in eval mode and the first n MNIST5k test digits (configs/eval_robust_mnist5k.yaml's)."""
    from experiments.autoattack_reference.compare import load_network
    from robustrain.data import MNIST5k

    data = MNIST5k()
    data.setup("test")
    images, labels = next(iter(torch.utils.data.DataLoader(data.test_set, batch_size=n_images)))
    return load_network(path), images, labels


def markdown(report: dict) -> str:
    c = report["conditions"]
    lines = [
        f"`{c['command']}`: {c['device_name']}, {c['cpu_threads']} CPU threads, torch {c['torch']}, {c['images']} "
        f"images, {c['repeats']} repeats. Seconds: the median over repeats; robustrain / reference: the median of the "
        "per-repeat ratios (min..max). Each component alone attacks every correctly classified image.",
    ]
    if any(report["models"].values()):
        lines += [
            "",
            "| model | part | robustrain s | reference s | robustrain / reference "
            "| robust acc. robustrain / reference |",
            "|---|---|---|---|---|---|",
        ]
    for name, parts in report["models"].items():
        for part, r in parts.items():
            acc = r["robust_accuracy"]
            lines.append(
                f"| {name} (eps {report['eps'][name]:g}) | {part} | {r['seconds']['torchattacks']:.2f} | "
                f"{r['seconds']['reference']:.2f} | **{r['ratio']:.2f}** ({r['min']:.2f}..{r['max']:.2f}) | "
                f"{acc['torchattacks']:.3f} / {acc['reference']:.3f} |"
            )
    for name, work in report.get("work", {}).items():
        parts = [
            f"{impl} {w['calls']} calls, {w['images']} images, {w['gradient_calls']} with input gradients"
            for impl, w in work.items()
        ]
        lines += ["", f"The standard version's work on {name}: " + "; ".join(parts) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.autoattack", description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", nargs="*", default=[], help="NAME=CKPT pairs (default: the worst-of-10 SmallCNN)")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--eps", type=float, default=None, help="radius (default: 0.1 for the default model, else 0.3)")
    parser.add_argument("--repeats", type=int, default=3, help="0: no timing (with --count: the counts alone)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--count", action="store_true", help="also count the network's calls of each implementation")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    from robustrain.attacks.autoattack_reference import check_reference_available

    check_reference_available()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    pairs = [p.split("=", 1) for p in args.ckpt]
    if any(len(p) != 2 for p in pairs):
        parser.error(f"--ckpt {args.ckpt}: give NAME=CKPT pairs")
    setups = {name: (path, 0.3 if args.eps is None else args.eps) for name, path in pairs}
    if not setups:
        setups = {"worst-of-10 SmallCNN": (None, 0.1 if args.eps is None else args.eps)}
    command = " ".join(["python -m benchmarks.autoattack", *(sys.argv[1:] if argv is None else argv)])
    report = {
        "conditions": {
            "command": command,
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
            "cpu_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "images": args.images,
            "repeats": args.repeats,
        },
        "eps": {name: eps for name, (_, eps) in setups.items()},
        "models": {},
    }
    for name, (path, eps) in setups.items():
        model, images, labels = default_setup(args.images) if path is None else checkpoint_setup(path, args.images)
        model, images, labels = model.to(device).eval(), images.to(device), labels.to(device)
        print(f"{name}: eps {eps}")
        report["models"][name] = bench_autoattack(model, images, labels, eps, args.repeats)
        if args.count:
            report.setdefault("work", {})[name] = count_work(model, images, labels, eps)
            print(f"{name}: {report['work'][name]}")
    table = markdown(report)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(table)
    return report


if __name__ == "__main__":
    main()
