"""AutoAttack as robustrain assembles it from torchattacks against Croce & Hein's reference code, image by image.

    python -m experiments.autoattack_reference.compare NAME=CKPT [NAME=CKPT ...] [--images 500] \
        [--components apgd-ce apgd-t fab-t square] [--out runs/autoattack_reference]
    python -m experiments.autoattack_reference.compare --table runs/autoattack_reference/*/compare.json

Each CKPT (a .ckpt file, or a run or version folder: its newest last.ckpt) is read weights-only and its network rebuilt
from its hyperparameters. On the first --images MNIST5k test digits (those configs/eval_robust_mnist5k.yaml tests, in
its batches of 250): clean, FGSM and PGD-50-10 (step 0.01) accuracy, to tell a robust model from a masked one, then
AutoAttack at eps 0.3 with each implementation, the same settings (the standard version: apgd-ce, apgd-t, fab-t,
square; 100 iterations, 9 targets, 5000 queries, one restart each; seed 0) and the same images: per image, whether it
survived, and per implementation the accuracy, wall and CPU seconds. Writes <out>/compare.json and prints the markdown
table of docs/evaluation.md (--table: the table of several such files, e.g. one process per checkpoint). Needs the
reference: pip install -e '.[reference]'.
"""

import argparse
import importlib
import json
import os
import platform
import time
from pathlib import Path

import torch

from robustrain.attacks import AUTOATTACK_STANDARD
from robustrain.evaluation.robust_accuracy import AttackSpec, attack_batch
from robustrain.runs.checkpoints import read_checkpoint, resolve_ckpt_path

EPS, PGD_ALPHA, BATCH = 0.3, 0.01, 250  # configs/eval_robust_mnist5k.yaml
IMPLEMENTATIONS = ("torchattacks", "reference")


def load_network(path: str) -> torch.nn.Module:
    """The network of a robustrain checkpoint (its `net` hyperparameter and weights), in eval mode."""
    ckpt_path, _ = resolve_ckpt_path(path, None)
    checkpoint = read_checkpoint(ckpt_path)
    config = checkpoint["hyper_parameters"]["net"]
    module, name = config["class_path"].rsplit(".", 1)
    net = getattr(importlib.import_module(module), name)(**config.get("init_args", {}))
    net.load_state_dict({k[4:]: v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")})
    return net.eval()


def test_digits(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first n MNIST5k test digits in the eval config's batches."""
    from robustrain.data import MNIST5k

    data = MNIST5k(batch_size=100, eval_batch_size=BATCH, val_size=500, test_size=500)
    data.setup("test")
    batches, seen = [], 0
    for images, labels in data.test_dataloader():
        take = min(len(labels), n - seen)
        batches.append((images[:take], labels[:take]))
        seen += take
        if seen >= n:
            break
    return batches


def survived(net: torch.nn.Module, batches, spec: AttackSpec) -> tuple[list[bool], float, float]:
    """(per-image: correct after the attack, wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    flags: list[bool] = []
    for images, labels in batches:
        flags += attack_batch(net, images, labels, spec)[1].tolist()
    return flags, time.perf_counter() - wall, time.process_time() - cpu


def compare(net: torch.nn.Module, batches, components: tuple[str, ...], recheck_seeds: tuple[int, ...] = ()) -> dict:
    """Clean / FGSM / PGD-50-10 accuracy and both AutoAttacks per image (see the module docstring); the images the
    two disagree on are attacked again by both with each of `recheck_seeds`, to tell chance from a real gap."""
    result: dict = {"images": sum(len(labels) for _, labels in batches)}
    for spec in (
        AttackSpec("clean"),
        AttackSpec("fgsm", EPS),
        AttackSpec("pgd", EPS, alpha=PGD_ALPHA, steps=50, restarts=10),
    ):
        flags, _, _ = survived(net, batches, spec)
        result[spec.key] = sum(flags) / len(flags)
    for implementation in IMPLEMENTATIONS:
        spec = AttackSpec("autoattack", EPS, steps=100, components=components, implementation=implementation)
        flags, wall, cpu = survived(net, batches, spec)
        result[implementation] = {
            "accuracy": sum(flags) / len(flags),
            "wall_seconds": round(wall, 1),
            "cpu_seconds": round(cpu, 1),
            "robust": [int(f) for f in flags],
        }
    ours, theirs = (result[i]["robust"] for i in IMPLEMENTATIONS)
    result["disagree"] = [i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b]
    result["agreement"] = 1 - len(result["disagree"]) / len(ours)
    if recheck_seeds and result["disagree"]:
        images = torch.cat([x for x, _ in batches])[result["disagree"]]
        labels = torch.cat([y for _, y in batches])[result["disagree"]]
        result["recheck"] = {"seeds": list(recheck_seeds)}
        for implementation in IMPLEMENTATIONS:
            rows = []
            for seed in recheck_seeds:
                spec = AttackSpec(
                    "autoattack", EPS, steps=100, components=components, implementation=implementation, seed=seed
                )
                rows.append([int(f) for f in attack_batch(net, images, labels, spec)[1].tolist()])
            result["recheck"][implementation] = rows  # [seed][disagreeing image]: survived
    return result


def recheck_summary(result: dict) -> str:
    """Per disagreeing image: how many of the recheck seeds it survived, per implementation."""
    recheck = result.get("recheck")
    if not recheck:
        return "-"
    parts = []
    for k, image in enumerate(result["disagree"]):
        counts = "/".join(str(sum(row[k] for row in recheck[impl])) for impl in IMPLEMENTATIONS)
        parts.append(f"#{image}: {counts}")
    return f"{', '.join(parts)} of {len(recheck['seeds'])}"


def table(results: dict[str, dict]) -> str:
    """The markdown table of docs/evaluation.md."""
    lines = [
        "| checkpoint | images | clean | FGSM | PGD-50-10 | AutoAttack torchattacks | AutoAttack reference "
        "| difference | per-image agreement | s torchattacks / reference (CPU s) "
        "| disagreeing images survived other seeds (torchattacks/reference) |",
        "|---" * 11 + "|",
    ]
    for name, r in results.items():
        ours, theirs = r["torchattacks"], r["reference"]
        lines.append(
            f"| {name} | {r['images']} | {100 * r['clean']:.1f} | {100 * r['fgsm']:.1f} | {100 * r['pgd_50x10']:.1f} "
            f"| {100 * ours['accuracy']:.1f} | {100 * theirs['accuracy']:.1f} "
            f"| {100 * (ours['accuracy'] - theirs['accuracy']):+.1f} "
            f"| {100 * r['agreement']:.1f}% ({len(r['disagree'])} differ) "
            f"| {ours['wall_seconds']:.0f} / {theirs['wall_seconds']:.0f} "
            f"({ours['cpu_seconds']:.0f} / {theirs['cpu_seconds']:.0f}) | {recheck_summary(r)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.autoattack_reference.compare", description=__doc__.split("\n")[0]
    )
    parser.add_argument("checkpoints", nargs="*", help="NAME=CKPT: a name for the table and a checkpoint or run folder")
    parser.add_argument(
        "--table", nargs="+", type=Path, help="print the table of these compare.json files, run nothing"
    )
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--components", nargs="+", default=list(AUTOATTACK_STANDARD))
    parser.add_argument("--out", type=Path, default=Path("runs/autoattack_reference"))
    parser.add_argument(
        "--recheck-seeds", nargs="*", type=int, default=[1, 2, 3, 4], help="seeds to attack the disagreeing images with"
    )
    args = parser.parse_args(argv)
    if args.table:
        print(table({k: v for path in args.table for k, v in json.loads(path.read_text())["results"].items()}))
        return 0
    batches = test_digits(args.images)
    results = {}
    for item in args.checkpoints:
        name, _, path = item.partition("=")
        results[name] = {
            "checkpoint": path,
            **compare(load_network(path), batches, tuple(args.components), tuple(args.recheck_seeds)),
        }
        print(name, {k: v for k, v in results[name].items() if k not in IMPLEMENTATIONS}, flush=True)
    machine = {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_end": os.getloadavg(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"eps": EPS, "components": args.components, "machine": machine, "results": results}
    (args.out / "compare.json").write_text(json.dumps(record, indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
