"""experiments.co_lab.report end to end on the CIFAR-10 configs, with a tiny CIFAR-10-format folder made here."""

import json
import os
import subprocess
import sys
from pathlib import Path

from _cifar10_folder import write_cifar10_folder

REPO = Path(__file__).parents[1]
TINY = ",".join(
    [
        "data.init_args.root={root}",
        "data.init_args.verify_files=false",
        "data.init_args.num_workers=0",
        "data.init_args.val_size=20",
        "data.init_args.batch_size=32",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=3",
        "model.init_args.net.init_args.width=4",
        "model.init_args.eval_size=20",
    ]
)


def test_the_study_runs_the_cifar10_configs_from_training_to_figures(tmp_path):
    write_cifar10_folder(tmp_path / "cifar", n_train=300, n_test=30)
    tiny = TINY.format(root=tmp_path / "cifar")
    args = [sys.executable, "-m", "experiments.co_lab.report", "all", "--out", str(tmp_path / "out")]
    args += ["--docs", str(tmp_path / "docs"), "--test-images", "8", "--autoattack-images", "4", "--parallel", "2"]
    args += ["--setting", f"configs/co_lab/cifar10_preact18_fgsm_rs.yaml:{tiny}", "--seeds", "0"]
    args += ["--setting", f"configs/co_lab/cifar10_preact18_injected.yaml:{tiny}", "--seeds", "1"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    runs = tmp_path / "out" / "runs"
    for setting, seed in (("cifar10_preact18_fgsm_rs", 0), ("cifar10_preact18_injected", 1)):
        folder = runs / setting / f"seed{seed}"
        epochs = sorted(p.name for p in (folder / "checkpoints").glob("epoch=*.ckpt"))
        assert epochs == ["epoch=00.ckpt", "epoch=01.ckpt"]
        names = {p.name.removesuffix("_history.csv") for p in folder.glob("*_history.csv")}
        assert names == {"aliasing", "aliasing_bn_train", "pgd_es", "pgd_es_probe", "grad_align", "abnormal"} | {
            "masking_gap"
        }
    result = json.loads((tmp_path / "docs" / "co_lab.json").read_text())
    assert {r["run"] for r in result["runs"]} == {"cifar10_preact18_fgsm_rs/seed0", "cifar10_preact18_injected/seed1"}
    assert "aliasing, paper's rule" in {r["family"] for r in result["detectors"]}
    for figure in ("distance_vs_threshold.png", "signals.png", "co_lab.md"):
        assert (tmp_path / "docs" / figure).stat().st_size > 0
    # the injected run's data carried the feature: its resolved config says so
    config = (runs / "cifar10_preact18_injected" / "seed1" / "config.yaml").read_text()
    assert "inject_beta: 0.0313" in config


def test_image_counts_per_network():
    import pytest

    from experiments.co_lab.evaluate import images_for

    assert images_for(["500"], "PreActResNet18") == 500
    assert images_for(["500", "PreActResNet18=100"], "PreActResNet18") == 100
    assert images_for(["500", "PreActResNet18=100"], "SmallCNN") == 500
    with pytest.raises(ValueError, match="no image count for SmallCNN"):
        images_for(["PreActResNet18=100"], "SmallCNN")
    for bad in ("PreActResNet18=x", "=100", "0", "-5", "ten"):
        with pytest.raises(ValueError, match=f"image count '{bad}': give N or NETWORK=N"):
            images_for([bad], "PreActResNet18")


def test_malformed_image_count_refused_by_the_cli_before_any_work(tmp_path, capsys):
    import pytest

    from experiments.co_lab import prevention, report

    with pytest.raises(SystemExit):
        prevention.main(["evaluate", "--out", str(tmp_path), "--test-images", "250", "PreActResNet18=x"])
    assert "image count 'PreActResNet18=x': give N or NETWORK=N" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        report.main(["report", "--out", str(tmp_path), "--autoattack-images", "=100"])
    assert "image count '=100': give N or NETWORK=N" in capsys.readouterr().err
