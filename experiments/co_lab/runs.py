"""Training the CO lab's runs through the CLI, and reading back what each recorded.

A run is one training config (plus overrides) at one seed, trained by `python train.py fit` into
`<out>/runs/<setting>/seed<k>/` (TensorBoard events, config.yaml, every detector's history CSV, and
`checkpoints/epoch=NN.ckpt` for every epoch). `<setting>` is the config's file name without `.yaml`, or `--tag`.
A run that finished holds `done.json`; a killed one is resumed from its `last.ckpt` (robustrain resumes exactly).
"""

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from robustrain.evaluation.comparison_report import read_events
from robustrain.runs.atomic import atomic_write_text
from robustrain.stopping import read_history_csv

REPO = Path(__file__).resolve().parents[2]
TRAIN = REPO / "train.py"


@dataclass(frozen=True)
class Job:
    """One run to train: its configs, overrides (--key value pairs) and seed."""

    setting: str
    configs: tuple[str, ...]
    overrides: tuple[tuple[str, str], ...]
    seed: int

    def folder(self, out: Path) -> Path:
        return out / "runs" / self.setting / f"seed{self.seed}"

    def command(self, out: Path) -> list[str]:
        folder = self.folder(out)
        args = [sys.executable, str(TRAIN), "fit"]
        for config in self.configs:
            args += ["--config", config]
        args += [
            "--seed_everything",
            str(self.seed),
            "--trainer.logger.init_args.save_dir",
            str(out / "runs"),
            "--trainer.logger.init_args.name",
            self.setting,
            "--trainer.logger.init_args.version",
            f"seed{self.seed}",
            "--trainer.enable_progress_bar",
            "false",
        ]
        for key, value in self.overrides:
            args += [f"--{key}", value]
        last = folder / "checkpoints" / "last.ckpt"
        if last.is_file():  # a killed run: resume it exactly where it stopped
            args += ["--ckpt_path", str(last)]
        return args


def jobs(
    configs: Sequence[str], seeds: Sequence[int], overrides: Sequence[str] = (), tag: str | None = None
) -> list[Job]:
    """The runs of one setting: the configs (stacked in order, the last wins) at every seed.

    Args:
        configs: Config files, e.g. ["configs/co_lab/smallcnn_injected.yaml"].
        seeds: Seeds (seed_everything).
        overrides: "key=value" strings passed as --key value (e.g. "data.init_args.inject_beta=0.05").
        tag: The setting's name; default the last config's file name without .yaml.
    """
    pairs = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} must be key=value, e.g. data.init_args.inject_beta=0.05")
        pairs.append((key, value))
    setting = tag or Path(configs[-1]).stem
    return [Job(setting, tuple(configs), tuple(pairs), int(seed)) for seed in seeds]


FAILED = "failed.json"
FINISHED = "nothing is left to train"  # train.py's refusal to resume a run whose last.ckpt ended it


def train(jobs_: Sequence[Job], out: Path, parallel: int = 1, threads: int = 1, keep_going: bool = False) -> list[Path]:
    """Train every job not finished yet, `parallel` processes at a time with `threads` torch threads each.

    Returns the run folders trained now. A failing run raises RuntimeError with the tail of its log; with
    `keep_going` it writes `failed.json` (exit code, log tail) in its folder instead, is not retried, and the others
    go on (a run whose gradients turn non-finite, exit 3, is then an outcome of its method, not a broken study).
    """
    todo = [job for job in jobs_ if not any((job.folder(out) / name).is_file() for name in ("done.json", FAILED))]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))

    def run(job: Job) -> Path:
        folder = job.folder(out)
        folder.mkdir(parents=True, exist_ok=True)
        start = time.time()
        print(f"training {job.setting} seed {job.seed}", flush=True)
        with open(folder / "train.log", "a") as log:
            code = subprocess.call(job.command(out), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        tail = (folder / "train.log").read_text()[-2000:]
        if code == 2 and FINISHED in tail.splitlines()[-1]:
            code = 0  # killed after its last epoch, before done.json: its last.ckpt holds the finished run
        if code != 0:
            if not keep_going:
                raise RuntimeError(f"{job.setting} seed {job.seed} failed (exit {code}):\n{tail}")
            failed = {"setting": job.setting, "seed": job.seed, "configs": list(job.configs), "exit": code}
            atomic_write_text(folder / FAILED, json.dumps({**failed, "log_tail": tail}, indent=1))
            print(f"FAILED {job.setting} seed {job.seed} (exit {code})", flush=True)
            return folder
        done = {"setting": job.setting, "seed": job.seed, "configs": list(job.configs), "seconds": time.time() - start}
        atomic_write_text(folder / "done.json", json.dumps(done, indent=1))
        return folder

    with ThreadPoolExecutor(max_workers=max(parallel, 1)) as pool:
        return list(pool.map(run, todo))


@dataclass
class Run:
    """What one finished run recorded.

    Attributes:
        setting, seed: Which run.
        folder: Its folder.
        config: The resolved config (config.yaml).
        val: Per-epoch held-out accuracies: {"acc", "acc_pgd", "acc_fgsm"} -> list over epochs.
        histories: Detector name (file stem) -> its history records.
        steps_per_epoch: Optimizer steps per epoch.
    """

    setting: str
    seed: int
    folder: Path
    config: dict[str, Any]
    val: dict[str, list[float]]
    histories: dict[str, list[dict]] = field(default_factory=dict)
    steps_per_epoch: int = 1

    @property
    def name(self) -> str:
        return f"{self.setting}/seed{self.seed}"

    @property
    def epochs(self) -> int:
        return len(self.val["acc_pgd"])

    @property
    def network(self) -> str:
        net = self.config["model"]["init_args"]["net"]
        return str(net["class_path"]).rsplit(".", 1)[-1]

    @property
    def eval_eps(self) -> float:
        args = self.config["model"]["init_args"]
        return float(args.get("eval_eps") or args["eps"])

    def monitored(self, history: str) -> str:
        """The series a detector's callback monitored (AliasingMonitor's `monitor`, e.g. layer2 or mean)."""
        for callback in (self.config.get("trainer") or {}).get("callbacks") or []:
            args = callback.get("init_args") or {}
            if args.get("name") == history and "monitor" in args:
                return str(args["monitor"])
        return "value"


def _per_epoch(scalars: dict[str, list[tuple[int, float]]], tag: str) -> list[float]:
    return [value for _, value in sorted(scalars.get(tag, []))]


def load_run(folder: Path) -> Run:
    """A finished run's config, per-epoch validation accuracies and detector histories."""
    done = json.loads((folder / "done.json").read_text())
    config = yaml.safe_load((folder / "config.yaml").read_text())
    scalars, _, _ = read_events(folder)
    val = {key: _per_epoch(scalars, f"val/{key}") for key in ("acc", "acc_pgd", "acc_fgsm")}
    histories = {
        path.name.removesuffix("_history.csv"): read_history_csv(path) for path in sorted(folder.glob("*_history.csv"))
    }
    # an epoch-end check runs at global step (epoch + 1) * steps per epoch
    ends = [r for records in histories.values() for r in records if r["kind"] != "batch"]
    steps = round(ends[0]["step"] / (ends[0]["epoch"] + 1)) if ends else 1
    return Run(done["setting"], int(done["seed"]), folder, config, val, histories, max(steps, 1))


def load_runs(out: Path) -> list[Run]:
    """Every finished run under <out>/runs, ordered by setting and seed."""
    folders = sorted((out / "runs").glob("*/seed*/done.json"))
    runs = [load_run(path.parent) for path in folders]
    return sorted(runs, key=lambda r: (r.setting, r.seed))
