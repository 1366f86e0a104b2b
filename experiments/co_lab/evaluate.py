"""Test-set robust accuracy of chosen epochs of a run: PGD-50-10 and AutoAttack, cached per run.

Every epoch's weights are in `checkpoints/epoch=NN.ckpt` (weights only, read with robustrain's safe reader); the
network and the data (injected features included) are rebuilt from the run's config.yaml. PGD-50-10 is Wong et al.'s
strong check (50 steps, 10 restarts; step eps / 10 here, so one restart crosses the ball 5 times) and AutoAttack the
standard version with the original 100 iterations (robustrain.attacks.autoattack), both on the first test images and
in the data's range. Results go to `<run>/test_accuracy.json` ({epoch: {attack: accuracy}}), so reruns only attack
what is missing.
"""

import argparse
import importlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from experiments.co_lab.runs import Run
from robustrain.evaluation import AttackSpec, robust_accuracy
from robustrain.runs.checkpoints import read_checkpoint

CACHE = "test_accuracy.json"


def instantiate(config: dict[str, Any]) -> Any:
    """An object from a {class_path, init_args} config, its nested configs instantiated first."""
    module, _, name = str(config["class_path"]).rpartition(".")
    args = {
        key: instantiate(value) if isinstance(value, dict) and "class_path" in value else value
        for key, value in (config.get("init_args") or {}).items()
    }
    return getattr(importlib.import_module(module), name)(**args)


def image_count(item: str) -> str:
    """One image-count item, "N" or "NETWORK=N" with N a positive integer, checked (an argparse `type`, so a
    malformed count is refused before any run is attacked)."""
    key, sep, value = item.partition("=")
    number = value if sep else key
    if (sep and not key) or not number.isdigit() or int(number) < 1:
        raise ValueError(
            f"image count {item!r}: give N or NETWORK=N with N a positive integer, e.g. 250 or PreActResNet18=100"
        )
    return item


def _image_count_arg(item: str) -> str:
    """`image_count` as an argparse `type`: its message, not argparse's generic one, on a malformed count."""
    try:
        return image_count(item)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_image_count_arguments(
    parser: argparse.ArgumentParser, test_images: Sequence[str], autoattack_images: Sequence[str]
) -> None:
    """The CO lab CLIs' `--test-images` and `--autoattack-images` (N or NETWORK=N items, checked at parsing)."""
    parser.add_argument(
        "--test-images",
        nargs="+",
        type=_image_count_arg,
        default=list(test_images),
        help="test images attacked with PGD-50-10: N, or NETWORK=N pairs (e.g. SmallCNN=500 PreActResNet18=100)",
    )
    parser.add_argument(
        "--autoattack-images",
        nargs="+",
        type=_image_count_arg,
        default=list(autoattack_images),
        help="as --test-images, for AutoAttack",
    )


def images_for(counts: Sequence[str], network: str) -> int:
    """The image count for a network from ["500"] or ["SmallCNN=500", "PreActResNet18=100"] (the bare number is the
    default for networks not named)."""
    default, named = None, {}
    for item in map(image_count, counts):
        key, sep, value = item.partition("=")
        if sep:
            named[key] = int(value)
        else:
            default = int(key)
    if network in named:
        return named[network]
    if default is None:
        raise ValueError(f"no image count for {network}: give {network}=N or a bare N for every network")
    return default


def test_images(run: Run, count: int) -> tuple[torch.Tensor, torch.Tensor, tuple[float, float]]:
    """The run's first `count` test images, labels and pixel range, as its datamodule gives them."""
    data = instantiate(run.config["data"])
    data.setup("test")
    n = min(count, len(data.test_set))
    images, labels = zip(*(data.test_set[i] for i in range(n)))
    return torch.stack(images), torch.as_tensor(labels), tuple(data.input_range)


def network_at(run: Run, epoch: int) -> torch.nn.Module:
    """The run's network with the weights of the end of `epoch`, in eval mode."""
    net = instantiate(run.config["model"]["init_args"]["net"])
    state = read_checkpoint(run.folder / "checkpoints" / f"epoch={epoch:02d}.ckpt")["state_dict"]
    net.load_state_dict({k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")})
    return net.eval()


def evaluate_epochs(
    run: Run, epochs: set[int], attacks: tuple[str, ...], images: int, autoattack_images: int
) -> dict[int, dict[str, float]]:
    """{epoch: {"clean", "pgd_50x10"[, "autoattack"]}} for the epochs asked (epoch -1, the untrained start, is 0),
    attacking only what the run's cache lacks."""
    path = run.folder / CACHE
    cache = {int(k): v for k, v in json.loads(path.read_text()).items()} if path.is_file() else {}
    eps = run.eval_eps
    pgd = AttackSpec("pgd", eps, alpha=eps / 10, steps=50, restarts=10)
    data = None
    for epoch in sorted(e for e in epochs if e >= 0):
        done = cache.setdefault(epoch, {})
        wanted = [a for a in attacks if a not in done]
        if not wanted:
            continue
        if data is None:
            data = test_images(run, max(images, autoattack_images))
        x, y, box = data
        net = network_at(run, epoch)
        torch.manual_seed(0)
        if "clean" in wanted or "pgd_50x10" in wanted:
            done.update(robust_accuracy(net, [(x[:images], y[:images])], [AttackSpec("clean"), pgd], box))
        if "autoattack" in wanted:
            spec = AttackSpec("autoattack", eps, steps=100)
            done["autoattack"] = robust_accuracy(net, [(x[:autoattack_images], y[:autoattack_images])], [spec], box)[
                "autoattack"
            ]
        path.write_text(json.dumps({str(k): v for k, v in sorted(cache.items())}, indent=1))
    result = {e: cache[e] for e in epochs if e >= 0}
    for epoch in epochs:
        if epoch < 0:
            result[epoch] = {"clean": 0.1, "pgd_50x10": 0.0, "autoattack": 0.0}
    return result


def cache_of(run: Run) -> dict[int, dict[str, float]]:
    path = Path(run.folder) / CACHE
    return {int(k): v for k, v in json.loads(path.read_text()).items()} if path.is_file() else {}
