"""Does the aliasing stop end FGSM training before robustness is lost? Runs, replays and scores it on MNIST5k.

Every run is FGSM adversarial training on the embedded MNIST5k digits with both early stops recording side by side
(AliasingMonitor and PGDEarlyStopping, monitor-only, so no run is cut short) and the held-out PGD accuracy of every
epoch (the oracle: PGD-20 at step 0.03 on the 500 validation digits); the weights of every epoch are kept. Each stop
rule is then *replayed* on the recorded histories with the entry point the callbacks run (robustrain.stopping.decide,
through robustrain.stopping.replay for the aliasing rules), so any threshold can be scored without retraining, and
the model each rule hands back is the recorded epoch before its stop.

A run *overfits* when its held-out PGD accuracy ends more than 10 points below its best, *catastrophically* when it
falls by 20 points or more within two epochs; otherwise it is *healthy*, unless its best stays below 25% (*never
robust*: nothing to lose, left out of the scores). The aliasing rule's settings are chosen on
the tuning seeds and reported on the others. Then PGD-50-10 and AutoAttack are run on the models the rules hand back.

The command is the report's (experiments/stop_study/report.py):

    python -m experiments.stop_study.report all --out runs/stop_study --docs docs/results/stop_study

(steps: `train`, `select`, `evaluate`, `report`; `all` runs them in order and skips runs already trained.)
"""

import itertools
import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from robustrain.stopping import Rule, decide, pgd_es_rule, read_history_csv
from robustrain.stopping.replay import first_stop, replay

EPS = 0.3
PGD_ALPHA = 0.01  # PGD-50-10's step at EPS
OVERFIT_DROP = 0.10  # best - final held-out PGD accuracy above which a run overfits
CATASTROPHIC_FALL = 0.20  # a fall of this much within two epochs makes the overfitting catastrophic
WITHIN = 0.03  # "within 3 points of the oracle"
NEVER_ROBUST = 0.25  # best held-out PGD accuracy below which a run never became robust
TUNE_SEEDS = tuple(s for s in range(36) if s % 4 in (0, 1))  # rule settings are chosen on these seeds' runs ...
REPORT_SEEDS = tuple(s for s in range(36) if s % 4 in (2, 3))  # ... and reported on these


@dataclass(frozen=True)
class Setting:
    """One training setting of the study; `seeds` runs of it are trained."""

    name: str
    description: str
    model: dict[str, Any]
    net: str = "SmallCNN"
    net_args: dict[str, Any] = field(default_factory=dict)
    epochs: int = 30
    series: str = "mean"  # the aliasing series the rule watches (absolute; relative/<series> for the relative measure)
    seeds: tuple[int, ...] = (0, 1, 2, 3)
    # AutoAttack on the handed-back models; off for PreActResNet18, where its FAB-T (9 targets x 100 iterations, a
    # Jacobian per step) takes about a quarter of an hour per model on a CPU: those rows report PGD-50-10 only
    autoattack: bool = True


ADAM = {"optimizer": "adam", "lr": 5e-3, "weight_decay": 0.0}
SETTINGS = {
    s.name: s
    for s in (
        Setting(
            "unclipped",
            "FGSM-RS, unclipped start, alpha 0.375, no eps warm-up, cyclic lr",
            {"alpha": 0.375, "init": "random_unclipped", **ADAM, "lr_schedule": "cyclic"},
        ),
        Setting(
            "unclipped_warmup",
            "the FGSM-RS recipe: as unclipped, with a 5-epoch eps warm-up",
            {"alpha": 0.375, "init": "random_unclipped", "eps_warmup_epochs": 5, **ADAM, "lr_schedule": "cyclic"},
        ),
        Setting(
            "unclipped_flat",
            "FGSM-RS, unclipped start, alpha 0.375, constant lr 5e-3 (no decay)",
            {"alpha": 0.375, "init": "random_unclipped", **ADAM, "lr_schedule": "constant"},
        ),
        Setting(
            "clipped",
            "FGSM-RS, clipped start (torchattacks FFGSM), alpha 0.375, cyclic lr",
            {"alpha": 0.375, "init": "random_clipped", **ADAM, "lr_schedule": "cyclic"},
            seeds=tuple(range(8)),
        ),
        Setting(
            "zero_init",
            "plain FGSM (zero start), alpha 0.3, cyclic lr",
            {"alpha": 0.3, "init": "zero", **ADAM, "lr_schedule": "cyclic"},
        ),
        Setting(
            "zero_warmup",
            "plain FGSM (zero start), alpha 0.3, 5-epoch eps warm-up, cyclic lr",
            {"alpha": 0.3, "init": "zero", "eps_warmup_epochs": 5, **ADAM, "lr_schedule": "cyclic"},
            seeds=tuple(range(8)),
        ),
        Setting(
            "unclipped_warmup_flat",
            "FGSM-RS unclipped, 5-epoch eps warm-up, constant lr 5e-3 (no decay)",
            {"alpha": 0.375, "init": "random_unclipped", "eps_warmup_epochs": 5, **ADAM, "lr_schedule": "constant"},
        ),
        Setting(
            "eps04_warmup",
            "FGSM-RS unclipped at training eps 0.4, alpha 0.5, 5-epoch eps warm-up, cyclic lr",
            {
                "eps": 0.4,
                "alpha": 0.5,
                "init": "random_unclipped",
                "eps_warmup_epochs": 5,
                **ADAM,
                "lr_schedule": "cyclic",
            },
        ),
        Setting(
            "alpha2x_warmup",
            "FGSM-RS unclipped, alpha 0.6 (= 2 eps), 5-epoch eps warm-up, cyclic lr",
            {"alpha": 0.6, "init": "random_unclipped", "eps_warmup_epochs": 5, **ADAM, "lr_schedule": "cyclic"},
            seeds=tuple(range(36)),
        ),
        Setting(
            "prn18_w8",
            "PreActResNet18 width 8 (BatchNorm), FGSM-RS unclipped, alpha 0.375, SGD cyclic lr 0.05",
            {
                "alpha": 0.375,
                "init": "random_unclipped",
                "optimizer": "sgd",
                "lr": 0.05,
                "momentum": 0.9,
                "weight_decay": 5e-4,
                "lr_schedule": "cyclic",
            },
            net="PreActResNet18",
            net_args={"in_channels": 1, "normalization": "none", "width": 8},
            epochs=15,
            series="layer2",
            seeds=(0, 2),
            autoattack=False,
        ),
    )
}


# --- training -------------------------------------------------------------------------------------------------------
def _run_dir(out: Path, setting: str, seed: int) -> Path:
    return out / "runs" / f"{setting}_seed{seed}"


def build_net(setting: Setting) -> torch.nn.Module:
    """The setting's network, freshly initialised."""
    from robustrain.models import PreActResNet18, SmallCNN

    return {"SmallCNN": SmallCNN, "PreActResNet18": PreActResNet18}[setting.net](**setting.net_args)


def oracle_epoch(acc_pgd: list[float]) -> int:
    """The first epoch with the best held-out PGD accuracy."""
    return max(range(len(acc_pgd)), key=acc_pgd.__getitem__)


def train_run(setting: Setting, seed: int, out: Path) -> Path:
    """Train one run with both stops monitor-only, the oracle's PGD every epoch, and the weights of every epoch."""
    import lightning as L

    from robustrain.callbacks import AliasingMonitor, PGDEarlyStopping
    from robustrain.data import MNIST5k
    from robustrain.training import FGSMTraining

    run = _run_dir(out, setting.name, seed)
    run.mkdir(parents=True, exist_ok=True)
    L.seed_everything(seed, verbose=False)
    net = build_net(setting)
    model = {"eps": EPS, **setting.model}  # training eps; every evaluation is at EPS
    module = FGSMTraining(
        net=net,
        eval_eps=EPS,
        eval_alpha=0.03,
        eval_steps=20,
        eval_size=500,
        eval_fgsm=True,
        masking_margin=None,
        **model,
    )

    class EveryEpochWeights(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            torch.save(pl_module.net.state_dict(), run / f"epoch{trainer.current_epoch:02d}.pt")

    groups = ["layer2"] if setting.net == "PreActResNet18" else []
    callbacks = [
        AliasingMonitor(monitor=setting.series, groups=groups, monitor_only=True, probe_size=100),
        PGDEarlyStopping(eps=EPS, alpha=0.1, steps=5, max_drop=0.2, monitor_only=True),
        EveryEpochWeights(),
    ]
    logger = L.pytorch.loggers.CSVLogger(run, name="", version="")
    trainer = L.Trainer(
        max_epochs=setting.epochs,
        accelerator="cpu",
        devices=1,
        inference_mode=False,
        logger=logger,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    start = time.perf_counter()
    trainer.fit(module, MNIST5k(batch_size=100, val_size=500, test_size=500))
    # the per-epoch oracle: val/acc_pgd and val/acc_fgsm from Lightning's metrics.csv, one row per epoch
    rows = [r for r in _read_csv(run / "metrics.csv") if r.get("val/acc_pgd") not in (None, "")]
    summary = {
        "setting": setting.name,
        "seed": seed,
        "seconds": time.perf_counter() - start,
        "val_acc": [float(r["val/acc"]) for r in rows],
        "val_acc_pgd": [float(r["val/acc_pgd"]) for r in rows],
        "val_acc_fgsm": [float(r["val/acc_fgsm"]) for r in rows],
        "series": setting.series,
    }
    (run / "summary.json").write_text(json.dumps(summary, indent=1))
    return run


def train(out: Path, only: list[str] | None = None, shard: str = "0/1") -> None:
    """Train every run of the study (or of the settings in `only`) not trained yet; shard "k/n" takes every n-th job
    from the k-th, so n processes can share the list."""
    k, n = (int(v) for v in shard.split("/"))
    jobs = [(s, seed) for s in SETTINGS.values() if only is None or s.name in only for seed in s.seeds]
    for i, (setting, seed) in enumerate(jobs):
        if i % n != k or _run_dir(out, setting.name, seed).exists():
            continue  # another shard's job, or trained (or being trained) already; delete a killed run's dir
        print(f"training {setting.name} seed {seed}", flush=True)
        train_run(setting, seed, out)


def _read_csv(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def load_run(run: Path) -> dict[str, Any]:
    """The run's summary plus its aliasing and PGD-ES histories."""
    summary = json.loads((run / "summary.json").read_text())
    summary["aliasing"] = read_history_csv(run / "aliasing_history.csv")
    summary["pgd_es"] = read_history_csv(run / "pgd_es_history.csv")
    summary["dir"] = str(run)
    return summary


# --- classification and stops -----------------------------------------------------------------------------------
def classify(acc_pgd: list[float]) -> str:
    """'catastrophic', 'gradual', 'healthy' or 'never_robust' from the held-out PGD accuracy per epoch (see the
    module docstring); a run whose best PGD accuracy stays below NEVER_ROBUST never learned to resist the attack and
    has no robustness to lose: it is left out of the scores."""
    best, final = max(acc_pgd), acc_pgd[-1]
    if best < NEVER_ROBUST:
        return "never_robust"
    if best - final <= OVERFIT_DROP:
        return "healthy"
    peak = acc_pgd.index(best)
    falls = [acc_pgd[e - k] - acc_pgd[e] for e in range(peak + 1, len(acc_pgd)) for k in (1, 2) if e - k >= peak]
    return "catastrophic" if falls and max(falls) >= CATASTROPHIC_FALL else "gradual"


def handed_back(stop_epoch: int | None, last_epoch: int) -> int:
    """The epoch whose weights a rule hands back: the one before its stop (the start of training = -1), or the last."""
    return last_epoch if stop_epoch is None else stop_epoch - 1


def aliasing_stop(run: dict, rule: dict) -> int | None:
    """Epoch at which Algorithm 1 with these settings stops the run (replayed), or None."""
    column = ("relative/" if rule["measure"] == "relative" else "") + run["series"]
    settings = {k: v for k, v in rule.items() if k != "measure"}  # threshold, window, warm-up, lr wait, reference
    stop = first_stop(replay(run["aliasing"], Rule(**settings), column=column))
    return None if stop is None else stop["epoch"]


def pgd_es_stop(run: dict, max_drop: float = 0.2) -> int | None:
    """Epoch at which Wong et al.'s PGD early stop fires (replayed from its recorded accuracies), or None."""
    rule, values = pgd_es_rule(max_drop), []
    for record in run["pgd_es"]:
        if decide(values, [False] * len(values), record["acc"], False, rule).should_stop:
            return record["epoch"]
        values.append(record["acc"])
    return None


def score_rule(runs: list[dict], rule: dict) -> dict[str, Any]:
    """How a rule does on runs: hits (overfitting runs handed back within 3 points of the oracle) and false stops."""
    hits = overfit = false_stops = healthy = 0
    distances = []
    for run in runs:
        acc = run["val_acc_pgd"]
        oracle = oracle_epoch(acc)
        stop = aliasing_stop(run, rule)
        back = handed_back(stop, len(acc) - 1)
        back_acc = acc[back] if back >= 0 else 0.0
        if run["kind"] == "never_robust":
            continue
        if run["kind"] == "healthy":
            healthy += 1
            false_stops += stop is not None
        else:
            overfit += 1
            hits += back_acc >= acc[oracle] - WITHIN
            distances.append(back - oracle)
    return {
        "hits": hits,
        "overfit": overfit,
        "false_stops": false_stops,
        "healthy": healthy,
        "mean_abs_distance": statistics.mean(abs(d) for d in distances) if distances else math.nan,
    }


RULE_GRID = {
    "measure": ("absolute", "relative"),
    "threshold": (0.1, 0.15, 0.2, 0.25, 0.33, 0.4, 0.5),
    "window": (1, 3, 5),
    "warmup_epochs": (0, 3, 5, 8),
    "wait_for_lr_peak": (True, False),
    "reference": ("window", "restart"),
}
PAPER_RULE = {
    "measure": "absolute",
    "threshold": 0.33,
    "window": 3,
    "warmup_epochs": 5,
    "wait_for_lr_peak": True,
    "reference": "window",
}


def select_rule(runs: list[dict], grid: dict[str, tuple] = RULE_GRID) -> tuple[dict, list[dict]]:
    """The grid's best rule on these runs: most hits minus two per false stop; ties go to the smallest distance to
    the oracle, then to the rule that shares most settings with the paper's (PAPER_RULE), so that where the runs
    cannot tell rules apart the paper's rule stays. Returns (best rule, every rule's score)."""
    scored = []
    for values in itertools.product(*grid.values()):
        rule = dict(zip(grid, values))
        scored.append({**rule, **score_rule(runs, rule)})

    def key(r: dict) -> tuple:
        distance = r["mean_abs_distance"] if math.isfinite(r["mean_abs_distance"]) else math.inf
        like_paper = sum(r[k] == v for k, v in PAPER_RULE.items() if k in grid)
        return (r["hits"] - 2 * r["false_stops"], -distance, like_paper)

    best = max(scored, key=key)
    return {k: best[k] for k in grid}, scored


# --- evaluation of handed-back models -------------------------------------------------------------------------------
def evaluate_epoch(run: dict, epoch: int, n_images: int) -> dict[str, float]:
    """robustrain.evaluation.headline_accuracy of one recorded epoch's weights (-1: the initial ones) on the first
    n_images test digits."""
    from robustrain.data import MNIST5k
    from robustrain.evaluation import headline_accuracy

    setting = SETTINGS[run["setting"]]
    net = build_net(setting)
    if epoch >= 0:
        net.load_state_dict(torch.load(Path(run["dir"]) / f"epoch{epoch:02d}.pt", weights_only=True))
    data = MNIST5k(batch_size=100, eval_batch_size=n_images, val_size=500, test_size=500)
    data.setup("test")
    images, labels = next(iter(data.test_dataloader()))
    return headline_accuracy(net, images[:n_images], labels[:n_images], EPS, PGD_ALPHA, setting.autoattack)
