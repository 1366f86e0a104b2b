"""Tune the FGSM-RS recipe on a seed and split that are not reported: variants of configs/mnist5k_fgsm_aliasing.yaml
trained with seed 100 and scored on the 500 *validation* digits (the reported figures use seeds 0-2 and the test
digits, experiments/fgsm_rs_recipe/seeds.sh).

    python -m experiments.fgsm_rs_recipe.tuning --out runs/fgsm_rs_recipe_tuning [--only NAME ...] [--images 200]

Each variant: train (CLI, one thread), then clean / PGD-50-10 (step 0.01) / AutoAttack (standard, 100 iterations)
on the first --images validation digits of the model the run hands back. Prints a markdown table and writes
<out>/tuning.json.
"""

import argparse
import json
import os
import time
from pathlib import Path

import torch

from robustrain.cli import main as cli_main

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "mnist5k_fgsm_aliasing.yaml"
SEED = 100
EPS, PGD_ALPHA = 0.3, 0.01  # every variant is evaluated at eps 0.3 (PGD-50-10 at step 0.01)
WONG = ["--model.init_args.eps", "0.3", "--model.init_args.alpha", "0.375"]  # Wong et al.'s MNIST eps and step
VARIANTS = {  # name -> CLI overrides of configs/mnist5k_fgsm_aliasing.yaml (which is now the chosen "train_eps_0.4")
    "train_eps_0.3": WONG,
    "wide_32_64": [*WONG, "--model.init_args.net.init_args.channels", "[32, 64]"],
    "epochs_45": [*WONG, "--trainer.max_epochs", "45"],
    "warmup_10": [*WONG, "--model.init_args.eps_warmup_epochs", "10"],
    "alpha_0.3": [*WONG, "--model.init_args.alpha", "0.3"],
    "train_eps_0.4": [],  # evaluated at 0.3, as every variant
    # PreActResNet18 at width 8 (BatchNorm; layer2 is the paper's monitored block), SGD as Wong's CIFAR recipe
    "prn18_w8": [
        *WONG,
        "--model.init_args.net",
        "robustrain.models.PreActResNet18",
        "--model.init_args.net.init_args.in_channels",
        "1",
        "--model.init_args.net.init_args.normalization",
        "none",
        "--model.init_args.net.init_args.width",
        "8",
        "--model.init_args.optimizer",
        "sgd",
        "--model.init_args.lr",
        "0.05",
        "--model.init_args.weight_decay",
        "5e-4",
        "--trainer.max_epochs",
        "15",
        "--model.init_args.eps_warmup_epochs",
        "0",
        "--model.init_args.eval_size",
        "200",
        "--model.init_args.eval_steps",
        "10",
        "--model.init_args.eval_alpha",
        "0.05",
    ],
}


def evaluate(module: torch.nn.Module, n_images: int) -> dict[str, float]:
    """Clean, PGD-50-10 and AutoAttack accuracy (robustrain.evaluation.headline_accuracy) on n validation digits."""
    from robustrain.data import MNIST5k
    from robustrain.evaluation import headline_accuracy

    data = MNIST5k(batch_size=100, eval_batch_size=n_images, val_size=500, test_size=500)
    data.setup("fit")
    images, labels = next(iter(data.val_dataloader()))
    return headline_accuracy(module.net, images[:n_images], labels[:n_images], EPS, PGD_ALPHA)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.fgsm_rs_recipe.tuning", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, default=Path("runs/fgsm_rs_recipe_tuning"))
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--images", type=int, default=200)
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    path = args.out / "tuning.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for name, overrides in VARIANTS.items():
        if (args.only and name not in args.only) or name in results:
            continue
        start = time.perf_counter()
        cli = cli_main(
            [
                "fit",
                "--config",
                str(CONFIG),
                "--seed_everything",
                str(SEED),
                *overrides,
                "--trainer.logger.init_args.save_dir",
                str(args.out),
                "--trainer.logger.init_args.name",
                name,
                "--trainer.callbacks",
                "[]",
                "--trainer.enable_checkpointing",
                "false",
                "--base_callbacks",
                "null",
                "--trainer.callbacks+=robustrain.callbacks.AliasingMonitor",
                "--trainer.enable_progress_bar",
                "false",
            ]
        )
        seconds = time.perf_counter() - start
        results[name] = {"overrides": overrides, "train_seconds": seconds, **evaluate(cli.model, args.images)}
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=1))
        print(name, results[name], flush=True)
    print("| variant | clean | PGD-50-10 | AutoAttack | train s |\n|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {100 * r['clean']:.1f} | {100 * r['pgd_50x10']:.1f} | {100 * r['autoattack']:.1f} "
            f"| {r['train_seconds']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
