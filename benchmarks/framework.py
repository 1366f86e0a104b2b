"""What the framework costs: the same FGSM-RS training step as a bare PyTorch loop and as `train.py fit`.

    python -m benchmarks.framework [--models SmallCNN PreActResNet18] [--repeats 3] [--json F] [--markdown F]
    python -m benchmarks.framework --options [NAME ...] ...   the speed options against the plain fit instead

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

`--options` times the speed options instead, each one config key on `base` (`OPTIONS`: channels_last, compile,
bf16-mixed), against the plain `base` fit of the same repeat, and the extra seconds of their first step (compilation).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
import yaml

from benchmarks.timing import now
from robustrain.attacks import fgsm_with_start_loss

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ("none", "base", "stops")
# the speed options, each one config key on top of the `base` configuration (`--options`)
OPTIONS = {
    "channels_last": "model.init_args.channels_last: true",
    "compile": "model.init_args.compile: true",
    "bf16-mixed": "trainer.precision: bf16-mixed",
}


@dataclass(frozen=True)
class Setting:
    """One network's recipe, as both sides run it, and its timed window.

    Attributes:
        config: The fit config of `none` and `base`.
        stops_config: The fit config of `stops`.
        stops_from: A config whose AliasingMonitor is added to `stops` (None: `stops_config` brings its own stops).
        stops_label: What `stops` adds, for the table.
        warmup: Steps before the window (the compilation and the first epoch's set-up fall there).
        steps: Timed steps.
        batch: Training batch.
        per_epoch: Batches an epoch (None: the whole training set), so that the window spans epoch ends.
        fgsm: (eps, alpha, init) of the FGSM-RS step.
        optimizer: (name, lr, momentum, weight_decay).
        lines: Config lines of the network and data.
    """

    config: str
    stops_config: str
    stops_from: str | None
    stops_label: str
    warmup: int
    steps: int
    batch: int
    per_epoch: int | None
    fgsm: tuple[float, float, str]
    optimizer: tuple[str, float, float, float]
    lines: tuple[str, ...] = ()


MNIST_FGSM = (0.3, 0.375, "random_unclipped")  # Wong et al.'s MNIST FGSM-RS, Adam at 5e-3
MNIST_ADAM = ("adam", 0.005, 0.0, 0.0)
PREACT_MNIST = (
    "model.init_args.net.class_path: robustrain.models.PreActResNet18",
    "model.init_args.net.init_args.in_channels: 1",
    "model.init_args.net.init_args.normalization: mnist",
    "data.init_args.padding: 2",
)
FIVE_STOPS = "configs/co_demo_mnist5k.yaml"
SETTINGS = {
    # SmallCNN: 40 steps an epoch at batch 100, five epoch ends in the window
    "SmallCNN": Setting(
        "configs/mnist5k_fgsm.yaml", FIVE_STOPS, None, "the five stops", 20, 200, 100, None, MNIST_FGSM, MNIST_ADAM
    ),
    # about 3 s a step at batch 100 on 2 CPU cores: batch 32 on epochs of 10 batches, two epoch ends in the window
    "PreActResNet18": Setting(
        "configs/mnist5k_fgsm.yaml", FIVE_STOPS, None, "the five stops", 3, 20, 32, 10, MNIST_FGSM, MNIST_ADAM,
        PREACT_MNIST,
    ),
    # Wong et al.'s CIFAR-10 recipe (PreActResNet18, batch 128, SGD, eps 8/255, alpha 10/255) on 50000 synthetic
    # CIFAR-10-shaped images, with the aliasing stop of configs/cifar10_fgsm_aliasing.yaml: for a GPU (one epoch end,
    # at step 383, in the window of 400 steps)
    "PreActResNet18-CIFAR10": Setting(
        "configs/cifar10_fgsm_synthetic.yaml", "configs/cifar10_fgsm_synthetic.yaml",
        "configs/cifar10_fgsm_aliasing.yaml", "the aliasing stop", 20, 400, 128, None,
        (8 / 255, 10 / 255, "random_clipped"), ("sgd", 0.2, 0.9, 5e-4),
    ),
}  # fmt: skip
CPU_MODELS = ("SmallCNN", "PreActResNet18")


class StepTimer(L.Callback):
    """Seconds per optimizer step over steps `warmup` .. `warmup + steps`, written to `out` as JSON; then stops fit."""

    def __init__(self, out: str, warmup: int, steps: int) -> None:
        self.out, self.warmup, self.steps = out, warmup, steps
        self._start: float | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self._fit_start = now(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup and self._start is None:
            self._start = now(pl_module.device)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == 1:  # the first step holds torch.compile's compilation, when it is on
            self._first_step = now(pl_module.device) - self._fit_start
        if trainer.global_step == self.warmup + self.steps and self._start is not None:
            seconds = (now(pl_module.device) - self._start) / self.steps
            Path(self.out).write_text(json.dumps({"seconds_per_step": seconds, "first_step": self._first_step}))
            trainer.should_stop = True


def _network(model: str) -> torch.nn.Module:
    from robustrain.models import PreActResNet18, SmallCNN

    if model == "SmallCNN":
        return SmallCNN()
    return PreActResNet18(in_channels=1, normalization="mnist") if model == "PreActResNet18" else PreActResNet18()


def _training_images(model: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The training images of `model`'s recipe as two tensors on `device`: MNIST5k's digits (padded to 32 x 32 for
    PreActResNet18) or the synthetic CIFAR-10 set, the validation split left out, as fit sees them."""
    from robustrain.data import MNIST5k, SyntheticImages
    from robustrain.data.synthetic import collate

    if model == "PreActResNet18-CIFAR10":
        data = SyntheticImages(shape="cifar10", batch_size=SETTINGS[model].batch)
    else:
        data = MNIST5k(batch_size=SETTINGS[model].batch, padding=0 if model == "SmallCNN" else 2)
    data.setup("fit")
    whole = torch.utils.data.DataLoader(data.train_set, batch_size=len(data.train_set), collate_fn=collate)
    images, labels = next(iter(whole))
    return images.to(device), labels.to(device)


def bare(model: str, warmup: int, steps: int, seed: int = 0, device: str = "cpu") -> float:
    """Seconds per step of the bare loop over steps warmup .. warmup + steps."""
    torch.manual_seed(seed)
    setting, device = SETTINGS[model], torch.device(device)
    batch, per_epoch = setting.batch, setting.per_epoch
    images, labels = _training_images(model, device)
    net = _network(model).to(device)
    name, lr, momentum, weight_decay = setting.optimizer
    if name == "adam":
        optimizer = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    total = warmup + steps
    # a triangular cyclic lr over the run, stepped per batch as robustrain's `cyclic` schedule is
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 - abs(2 * s / total - 1) + 1e-3)
    eps, alpha, init = setting.fgsm
    step, start = 0, None
    while step < total:
        order = torch.randperm(len(images), device=device)[: None if per_epoch is None else per_epoch * batch]
        for first in range(0, len(order) - batch + 1, batch):
            if step == warmup:
                start = now(device)
            index = order[first : first + batch]
            x, y = images[index], labels[index]
            adv, _ = fgsm_with_start_loss(net, x, y, eps, alpha, init=init)
            loss = F.cross_entropy(net(adv), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            if step == total:
                break
    return (now(device) - start) / steps


def fit_command(
    model: str,
    config: str,
    out: Path,
    root: Path,
    warmup: int,
    steps: int,
    option: str | None = None,
    device: str = "cpu",
) -> list[str]:
    """The `train.py fit` command of one configuration (and speed option), with the StepTimer appended."""
    setting = SETTINGS[model]
    command = [sys.executable, str(REPO / "train.py"), "fit"]
    command += ["--config", str(REPO / (setting.stops_config if config == "stops" else setting.config))]
    command += ["--config", _overrides(model, config, root, option, device)]
    command += ["--trainer.callbacks+=benchmarks.framework.StepTimer", f"--trainer.callbacks.out={out}"]
    command += [f"--trainer.callbacks.warmup={warmup}", f"--trainer.callbacks.steps={steps}"]
    return command


def _aliasing_stops(path: str) -> list[dict]:
    """The AliasingMonitor entries of a config's `trainer.callbacks`."""
    config = yaml.safe_load((REPO / path).read_text())
    callbacks = config.get("trainer.callbacks") or (config.get("trainer") or {}).get("callbacks") or []
    return [c for c in callbacks if c["class_path"].endswith("AliasingMonitor")]


def _overrides(model: str, config: str, root: Path, option: str | None = None, device: str = "cpu") -> str:
    """A config file of the benchmark's settings on top of the run's config (the recipe's FGSM-RS step and batch, no
    eps warm-up, no validation), the speed option's key and the device."""
    setting = SETTINGS[model]
    (eps, alpha, init), (name, lr, momentum, weight_decay) = setting.fgsm, setting.optimizer
    lines = [
        "trainer.max_epochs: 100",
        "trainer.limit_val_batches: 0",
        "trainer.enable_progress_bar: false",
        f"trainer.accelerator: {'gpu' if torch.device(device).type == 'cuda' else 'cpu'}",
        f"trainer.logger.init_args.save_dir: {root}",
        f"data.init_args.batch_size: {setting.batch}",
        "data.init_args.inject_beta: 0.0",
        f"model.init_args.eps: {eps}",
        f"model.init_args.alpha: {alpha}",
        f"model.init_args.init: {init}",
        "model.init_args.eps_warmup_epochs: 0",
        f"model.init_args.optimizer: {name}",
        f"model.init_args.lr: {lr}",
        f"model.init_args.momentum: {momentum}",
        f"model.init_args.weight_decay: {weight_decay}",
        "model.init_args.lr_schedule: cyclic",
        *setting.lines,
    ]
    if setting.per_epoch is not None:
        lines.append(f"trainer.limit_train_batches: {setting.per_epoch}")
    if config == "none":
        lines += ["base_callbacks: []", "trainer.callbacks: []", "trainer.enable_checkpointing: false"]
    if config == "stops" and setting.stops_from is not None:
        lines.append(yaml.safe_dump({"trainer.callbacks": _aliasing_stops(setting.stops_from)}).strip())
    if option is not None:
        lines.append(OPTIONS[option])
    path = root / f"{model}_{config}_{option}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def run_fit(
    model: str,
    config: str,
    root: Path,
    warmup: int,
    steps: int,
    option: str | None = None,
    device: str = "cpu",
) -> dict:
    """{"seconds_per_step": over the timed window, "first_step": seconds from the start of training to the end of
    the first step} of one `train.py fit` process."""
    out = root / f"{model}_{config}_{option}.json"
    out.unlink(missing_ok=True)
    command = fit_command(model, config, out, root, warmup, steps, option, device)
    # a fresh inductor cache for every process: a compiled run pays its whole compilation, as a first run does
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": tempfile.mkdtemp(prefix="inductor_", dir=root)}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    if result.returncode != 0 or not out.is_file():
        raise RuntimeError(f"fit ({model}, {config}, {option}) failed:\n{result.stderr[-3000:]}")
    return json.loads(out.read_text())


def run_bare(model: str, warmup: int, steps: int, device: str = "cpu") -> float:
    """The bare loop in its own process too, so that both sides start alike."""
    code = f"from benchmarks.framework import bare; print(bare({model!r}, {warmup}, {steps}, device={device!r}))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"bare loop ({model}) failed:\n{result.stderr[-3000:]}")
    return float(result.stdout.strip().splitlines()[-1])


def _conditions(repeats: int, device: str) -> dict:
    name = torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" else "CPU"
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "repeats": repeats, "device": name}


def measure(models: list[str], repeats: int, device: str = "cpu") -> dict:
    results = _conditions(repeats, device)
    with tempfile.TemporaryDirectory(prefix="robustrain_framework_") as folder:
        root = Path(folder)
        for model in models:
            warmup, steps = SETTINGS[model].warmup, SETTINGS[model].steps
            times: dict[str, list[float]] = {name: [] for name in ("bare", *CONFIGS)}
            for repeat in range(repeats):
                times["bare"].append(run_bare(model, warmup, steps, device))
                for config in CONFIGS:
                    times[config].append(run_fit(model, config, root, warmup, steps, None, device)["seconds_per_step"])
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


def measure_options(
    models: list[str], repeats: int, device: str = "cpu", options: tuple[str, ...] = tuple(OPTIONS)
) -> dict:
    """Each speed option against the plain `base` fit: per repeat the plain fit, then each option's, alternated."""
    results = {**_conditions(repeats, device), "options": list(options)}
    with tempfile.TemporaryDirectory(prefix="robustrain_options_") as folder:
        root = Path(folder)
        for model in models:
            warmup, steps = SETTINGS[model].warmup, SETTINGS[model].steps
            runs: dict[str, list[dict]] = {name: [] for name in ("plain", *options)}
            for repeat in range(repeats):
                for option in runs:
                    chosen = None if option == "plain" else option
                    runs[option].append(run_fit(model, "base", root, warmup, steps, chosen, device))
                print(
                    f"{model} repeat {repeat}: "
                    + ", ".join(f"{k} {1000 * v[-1]['seconds_per_step']:.1f} ms" for k, v in runs.items())
                )
            plain = runs["plain"]
            rows = {"plain": _option_row(plain, plain)}
            rows.update({option: _option_row(runs[option], plain) for option in options})
            results[model] = {"window": [warmup, warmup + steps], "rows": rows}
    return results


def _option_row(runs: list[dict], plain: list[dict]) -> dict:
    ratios = [r["seconds_per_step"] / p["seconds_per_step"] for r, p in zip(runs, plain, strict=True)]
    extra = [r["first_step"] - p["first_step"] for r, p in zip(runs, plain, strict=True)]
    return {
        "ms_per_step": 1000 * statistics.median(r["seconds_per_step"] for r in runs),
        "ratio": statistics.median(ratios),
        "min": min(ratios),
        "max": max(ratios),
        "first_step_s": statistics.median(r["first_step"] for r in runs),
        "extra_first_step_s": statistics.median(extra),
    }


def _header(results: dict, command: str, what: str) -> str:
    return (
        f"Generated by `{command}` ({results.get('device', 'CPU')}, torch {results['torch']}, {results['threads']} "
        f"CPU threads, {results['repeats']} repeats; {what})."
    )


def markdown_options(results: dict, command: str) -> str:
    what = (
        "a ratio is the median of the per-repeat ratios to the plain fit of that repeat, min..max beside it; the "
        "first step's extra seconds, the median over repeats, hold torch.compile's compilation"
    )
    lines = [
        _header(results, command, what),
        "",
        "| network | option | ms / step (median) | option / plain | first step, extra seconds |",
        "|---|---|---|---|---|",
    ]
    for model in (m for m in SETTINGS if m in results):
        rows = results[model]["rows"]
        lines.append(f"| {model} | plain (`base`) | {rows['plain']['ms_per_step']:.1f} | 1 | 0 |")
        for option in (o for o in OPTIONS if o in rows):
            row = rows[option]
            lines.append(
                f"| {model} | `{OPTIONS[option]}` | {row['ms_per_step']:.1f} | "
                f"**{row['ratio']:.2f}x** ({row['min']:.2f}..{row['max']:.2f}) | {row['extra_first_step_s']:+.1f} |"
            )
    return "\n".join(lines) + "\n"


def markdown(results: dict, command: str) -> str:
    lines = [
        _header(results, command, "the figure is the median of the per-repeat ratios, min..max beside it"),
        "",
        "| network | configuration | ms / step (median) | fit / bare loop |",
        "|---|---|---|---|",
    ]
    for model in (m for m in SETTINGS if m in results):
        names = {
            "none": "fit, no callbacks",
            "base": "fit, base callbacks",
            "stops": f"fit, base + {SETTINGS[model].stops_label}",
        }
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
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        choices=list(SETTINGS),
        help=f"networks and recipes (default: {' '.join(CPU_MODELS)} on a CPU, PreActResNet18-CIFAR10 on CUDA)",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--options",
        nargs="*",
        choices=list(OPTIONS),
        default=None,
        help="time the speed options instead: all (no names) or the ones named",
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--markdown", type=Path, help="write the table here")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: at least 1 is valid")
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device is visible; use --device cpu")
    models = args.models or (["PreActResNet18-CIFAR10"] if torch.device(args.device).type == "cuda" else CPU_MODELS)
    if args.options is None:
        results = measure(list(models), args.repeats, args.device)
    else:
        results = measure_options(list(models), args.repeats, args.device, tuple(args.options or OPTIONS))
    command = "python -m benchmarks.framework " + " ".join(argv if argv is not None else sys.argv[1:])
    table = (markdown if args.options is None else markdown_options)(results, command.strip())
    print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.markdown:
        args.markdown.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
