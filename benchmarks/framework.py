"""What the framework costs: the same FGSM-RS training step as a bare PyTorch loop and as `train.py fit`.

    python -m benchmarks.framework [--models SmallCNN PreActResNet18] [--repeats 3] [--json F] [--markdown F]

The step: Wong et al.'s MNIST FGSM-RS (configs/mnist5k_fgsm.yaml: eps 0.3, alpha 0.375, the unclipped random start,
Adam with a cyclic lr, batch 100; no eps warm-up here, so that both sides run the same step from the first one) on
the embedded MNIST5k training digits. PreActResNet18 (width 64, as Wong et al.'s) takes them padded to 32x32, as the
CO lab does, in batches of 32 and epochs of 10 batches (`WINDOWS`): a smaller step than its recipe's, so its ratios
are upper bounds of the overhead at batch 128.

- `bare`: a plain loop over the digits held as one tensor (reshuffled each epoch), calling robustrain's FGSM and
  Adam with a per-step lr schedule: what fast_adversarial's scripts do.
- `fit`, three ways, each its own `python train.py fit` process with the config's logger and data: `none` (no
  checkpoints, no lr monitor, no stops), `base` (the base config's two checkpoints and lr monitor) and `stops` (those
  and the main job's five stops, configs/co_demo_mnist5k.yaml, at their default schedules). The progress bar is off
  and validation is off (`limit_val_batches: 0`: the bare loop validates nothing); the masking-gap stop, which reads
  validation, therefore never checks.

A callback (`StepTimer`) times optimizer steps `warmup` .. `warmup + steps` inside fit, and the bare loop times the
same steps; the window spans several epoch ends, so the checkpoint writes and stop checks there are counted. Each
repeat runs the four in turn (bare first) and a figure is the median over repeats of fit's seconds per step divided by
the bare loop's of that repeat, with the min..max of those ratios.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from robustrain.attacks import fgsm_with_start_loss

REPO = Path(__file__).resolve().parents[1]
EPS, ALPHA, LR = 0.3, 0.375, 0.005
CONFIGS = ("none", "base", "stops")
# per network: (warmup steps, timed steps, batch, batches an epoch: None = all 4000 digits). SmallCNN: 40 steps an
# epoch at batch 100, five epoch ends timed. PreActResNet18 takes about 3 s a step at batch 100 on 2 CPU cores, so it
# runs at batch 32 on epochs of 10 batches: two epoch ends in its 20 timed steps.
WINDOWS = {"SmallCNN": (20, 200, 100, None), "PreActResNet18": (3, 20, 32, 10)}


class StepTimer(L.Callback):
    """Seconds per optimizer step over steps `warmup` .. `warmup + steps`, written to `out` as JSON; then stops fit."""

    def __init__(self, out: str, warmup: int, steps: int) -> None:
        self.out, self.warmup, self.steps = out, warmup, steps
        self._start: float | None = None

    def _now(self, pl_module: L.LightningModule) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup and self._start is None:
            self._start = self._now(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup + self.steps and self._start is not None:
            seconds = (self._now(pl_module) - self._start) / self.steps
            Path(self.out).write_text(json.dumps({"seconds_per_step": seconds}))
            trainer.should_stop = True


def _network(model: str) -> torch.nn.Module:
    from robustrain.models import PreActResNet18, SmallCNN

    return SmallCNN() if model == "SmallCNN" else PreActResNet18(in_channels=1, normalization="mnist")


def bare(model: str, warmup: int, steps: int, seed: int = 0) -> float:
    """Seconds per step of the bare loop over steps warmup .. warmup + steps."""
    from robustrain.data import MNIST5k

    torch.manual_seed(seed)
    _, _, batch, per_epoch = WINDOWS[model]
    data = MNIST5k(batch_size=batch, padding=0 if model == "SmallCNN" else 2)
    data.setup("fit")
    images = torch.stack([data.train_set[i][0] for i in range(len(data.train_set))])
    labels = torch.tensor([int(data.train_set[i][1]) for i in range(len(data.train_set))])
    net = _network(model)
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    total = warmup + steps
    # a triangular cyclic lr over the run, stepped per batch as robustrain's `cyclic` schedule is
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 - abs(2 * s / total - 1) + 1e-3)
    step, start = 0, None
    while step < total:
        order = torch.randperm(len(images))[: None if per_epoch is None else per_epoch * batch]
        for first in range(0, len(order) - batch + 1, batch):
            if step == warmup:
                start = time.perf_counter()
            index = order[first : first + batch]
            x, y = images[index], labels[index]
            adv, _ = fgsm_with_start_loss(net, x, y, EPS, ALPHA, init="random_unclipped")
            loss = F.cross_entropy(net(adv), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            if step == total:
                break
    return (time.perf_counter() - start) / steps


def fit_command(model: str, config: str, out: Path, root: Path, warmup: int, steps: int) -> list[str]:
    """The `train.py fit` command of one configuration, with the StepTimer appended."""
    command = [sys.executable, str(REPO / "train.py"), "fit"]
    command += [
        "--config",
        str(REPO / ("configs/co_demo_mnist5k.yaml" if config == "stops" else "configs/mnist5k_fgsm.yaml")),
    ]
    command += ["--config", _overrides(model, config, root)]
    command += ["--trainer.callbacks+=benchmarks.framework.StepTimer", f"--trainer.callbacks.out={out}"]
    command += [f"--trainer.callbacks.warmup={warmup}", f"--trainer.callbacks.steps={steps}"]
    return command


def _overrides(model: str, config: str, root: Path) -> str:
    """A config file of the benchmark's settings on top of the run's config (FGSM-RS, batch 100, no validation)."""
    lines = [
        "trainer.max_epochs: 100",
        "trainer.limit_val_batches: 0",
        "trainer.enable_progress_bar: false",
        f"trainer.logger.init_args.save_dir: {root}",
        f"data.init_args.batch_size: {WINDOWS[model][2]}",
        "data.init_args.inject_beta: 0.0",
        "model.init_args.eps: 0.3",
        "model.init_args.alpha: 0.375",
        "model.init_args.init: random_unclipped",
        "model.init_args.eps_warmup_epochs: 0",
        "model.init_args.optimizer: adam",
        "model.init_args.lr: 0.005",
        "model.init_args.lr_schedule: cyclic",
    ]
    if WINDOWS[model][3] is not None:
        lines.append(f"trainer.limit_train_batches: {WINDOWS[model][3]}")
    if config == "none":
        lines += ["base_callbacks: []", "trainer.callbacks: []", "trainer.enable_checkpointing: false"]
    if model == "PreActResNet18":
        lines += [
            "model.init_args.net.class_path: robustrain.models.PreActResNet18",
            "model.init_args.net.init_args.in_channels: 1",
            "model.init_args.net.init_args.normalization: mnist",
            "data.init_args.padding: 2",
        ]
    path = root / f"{model}_{config}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def run_fit(model: str, config: str, root: Path, warmup: int, steps: int) -> float:
    out = root / f"{model}_{config}.json"
    out.unlink(missing_ok=True)
    result = subprocess.run(
        fit_command(model, config, out, root, warmup, steps), cwd=REPO, capture_output=True, text=True
    )
    if result.returncode != 0 or not out.is_file():
        raise RuntimeError(f"fit ({model}, {config}) failed:\n{result.stderr[-3000:]}")
    return json.loads(out.read_text())["seconds_per_step"]


def run_bare(model: str, warmup: int, steps: int) -> float:
    """The bare loop in its own process too, so that both sides start alike."""
    code = f"from benchmarks.framework import bare; print(bare({model!r}, {warmup}, {steps}))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"bare loop ({model}) failed:\n{result.stderr[-3000:]}")
    return float(result.stdout.strip().splitlines()[-1])


def measure(models: list[str], repeats: int) -> dict:
    results: dict = {"torch": torch.__version__, "threads": torch.get_num_threads(), "repeats": repeats}
    with tempfile.TemporaryDirectory(prefix="robustrain_framework_") as folder:
        root = Path(folder)
        for model in models:
            warmup, steps, _, _ = WINDOWS[model]
            times: dict[str, list[float]] = {name: [] for name in ("bare", *CONFIGS)}
            for repeat in range(repeats):
                times["bare"].append(run_bare(model, warmup, steps))
                for config in CONFIGS:
                    times[config].append(run_fit(model, config, root, warmup, steps))
                print(f"{model} repeat {repeat}: " + ", ".join(f"{k} {1000 * v[-1]:.1f} ms" for k, v in times.items()))
            rows = {}
            for config in CONFIGS:
                ratios = [f / b for f, b in zip(times[config], times["bare"], strict=True)]
                rows[config] = {
                    "ratio": statistics.median(ratios),
                    "min": min(ratios),
                    "max": max(ratios),
                    "ms_per_step": 1000 * statistics.median(times[config]),
                }
            rows["bare"] = {"ms_per_step": 1000 * statistics.median(times["bare"])}
            results[model] = {"window": [warmup, warmup + steps], "rows": rows}
    return results


def markdown(results: dict, command: str) -> str:
    lines = [
        f"Generated by `{command}` (torch {results['torch']}, {results['threads']} threads, {results['repeats']} "
        "repeats; the figure is the median of the per-repeat ratios, min..max beside it).",
        "",
        "| network | configuration | ms / step (median) | fit / bare loop |",
        "|---|---|---|---|",
    ]
    names = {"none": "fit, no callbacks", "base": "fit, base callbacks", "stops": "fit, base + the five stops"}
    for model in (m for m in WINDOWS if m in results):
        rows = results[model]["rows"]
        lines.append(f"| {model} | bare loop | {rows['bare']['ms_per_step']:.1f} | 1 |")
        for config in CONFIGS:
            row = rows[config]
            lines.append(
                f"| {model} | {names[config]} | {row['ms_per_step']:.1f} | "
                f"**{row['ratio']:.2f}x** ({row['min']:.2f}..{row['max']:.2f}) |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.framework", description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(WINDOWS), choices=list(WINDOWS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--markdown", type=Path, help="write the table here")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: at least 1 is valid")
    results = measure(args.models, args.repeats)
    command = "python -m benchmarks.framework " + " ".join(argv if argv is not None else sys.argv[1:])
    table = markdown(results, command.strip())
    print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.markdown:
        args.markdown.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
