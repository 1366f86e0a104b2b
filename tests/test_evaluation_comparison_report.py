"""The comparison report: run dirs in, one table out, with every number traceable and missing ones shown as '—'."""

import csv
import json
import time
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.tensorboard import SummaryWriter

from robustrain.evaluation.comparison_report import MISSING, build_report, describe_method, load_run, main
from robustrain.evaluation.robust_accuracy import robust_accuracy
from robustrain.evaluation.robustness_evaluation import RobustnessEvaluation
from robustrain.models import SmallCNN
from robustrain.training import StandardTraining

CONFIG = {
    "model": {
        "class_path": "robustrain.training.FGSMTraining",
        "init_args": {"net": {"class_path": "robustrain.models.SmallCNN", "init_args": {"antialias": 3}}},
    },
    "trainer": {
        "callbacks": [
            {"class_path": "robustrain.callbacks.PGDEarlyStopping"},
            {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint"},
        ]
    },
}
ALIASING = {"aliasing": {"conv1": 0.125, "conv2": 0.5}, "categories": None}


def _training_events(version_dir: Path, epochs: int, seconds: float) -> None:
    start = time.time()
    with SummaryWriter(str(version_dir)) as writer:
        for epoch in range(epochs):
            writer.add_scalar("train/loss", 1.0 / (epoch + 1), epoch, walltime=start + seconds * (epoch + 1) / epochs)
            writer.add_scalar("epoch", epoch, epoch, walltime=start + seconds * (epoch + 1) / epochs)


@pytest.fixture
def runs(tmp_path, mnist_batch) -> tuple[Path, Path, dict]:
    """Run a: trained (events, config) and evaluated (robustness by the callback, aliasing, spatial) in version_1.
    Run b: only a checkpoint (epoch 4) and a robustness report without AutoAttack."""
    a, b = tmp_path / "runs" / "a", tmp_path / "runs" / "b"
    (a / "version_0").mkdir(parents=True)
    _training_events(a / "version_0", epochs=3, seconds=60.0)
    (a / "version_0" / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    torch.manual_seed(0)
    x, y = mnist_batch[0][:20], mnist_batch[1][:20]
    net = SmallCNN(channels=(4, 8), hidden=16)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(30):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    callback = RobustnessEvaluation(
        eps=0.1, attacks=["fgsm", "pgd"], pgd=[(3, 1)], pgd_alpha=0.04, pgd_random_start=False, spectrum=False
    )
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        callbacks=[callback],
        inference_mode=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=a / "version_1",
    )
    trainer.test(StandardTraining(net=net, eval_size=0), DataLoader(TensorDataset(x, y), batch_size=8))
    direct = robust_accuracy(net, [(x, y)], callback.specs)
    (a / "version_1" / "aliasing.json").write_text(json.dumps(ALIASING))
    (a / "version_1" / "spatial_report.json").write_text(json.dumps({"grid_acc": 0.375}))
    (b / "version_0").mkdir(parents=True)
    (b / "checkpoints").mkdir()
    torch.save({"epoch": 4, "state_dict": {}}, b / "checkpoints" / "last.ckpt")
    (b / "version_0" / "robustness.json").write_text(json.dumps({"accuracy": {"clean": 0.9, "pgd_3x1": 0.25}}))
    return a, b, direct


def test_table_reproduces_the_numbers_computed_directly(runs, tmp_path) -> None:
    a, b, direct = runs
    out = tmp_path / "out"
    columns, rows = build_report([a, b], out)
    with open(out / "comparison.csv") as f:
        table = {row["run"]: row for row in csv.DictReader(f)}
    assert list(table) == ["a", "b"]
    row = table["a"]
    assert float(row["clean_acc"]) == direct["clean"]
    assert float(row["fgsm_acc"]) == direct["fgsm"]
    assert float(row["pgd_3x1_acc"]) == direct["pgd_3x1"]
    assert float(row["grid_acc"]) == 0.375
    assert float(row["aliasing/conv1"]) == 0.125 and float(row["aliasing/conv2"]) == 0.5
    assert int(row["epochs"]) == 3
    assert float(row["wall_time_s"]) == pytest.approx(60.0, abs=2.0)
    assert row["method"] == "FGSM + anti-aliased (filt 3) + PGD stop"
    assert table["b"]["epochs"] == "5"  # from checkpoints/last.ckpt: epoch index 4 -> 5 epochs
    assert json.loads((out / "comparison.json").read_text())[0]["clean_acc"] == direct["clean"]


def test_missing_entries_show_as_dash_never_as_numbers(runs, tmp_path) -> None:
    a, b, _ = runs
    out = tmp_path / "out"
    build_report([a, b], out, names=["fgsm", "ckpt-only"])
    line = next(line for line in (out / "comparison.md").read_text().splitlines() if line.startswith("| ckpt-only"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    # run, method, clean, fgsm, pgd_3x1, autoattack, grid, aliasing x2, epochs, wall time
    assert cells == ["ckpt-only", MISSING, "90.00", MISSING, "25.00", MISSING, MISSING, MISSING, MISSING, "5", MISSING]
    with open(out / "comparison.csv") as f:
        row = list(csv.DictReader(f))[1]
    assert row["autoattack_acc"] == "" and row["wall_time_s"] == ""


def test_a_checkpoint_stands_for_its_run_dir(runs) -> None:
    _, b, _ = runs
    run = load_run(b / "checkpoints" / "last.ckpt")
    assert run.path == b and run.robustness["accuracy"]["clean"] == 0.9


def test_hparams_view_and_figures_are_written(runs, tmp_path) -> None:
    a, b, _ = runs
    out = tmp_path / "out"
    main([str(a), str(b), "--out", str(out)])
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert (out / "aliasing_per_layer.png").is_file()


def test_describe_method_of_the_standard_configs() -> None:
    repo = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((repo / "configs" / "mnist5k_pgd.yaml").read_text())
    assert describe_method(config) == "PGD"
    demo = yaml.safe_load((repo / "configs" / "co_demo_mnist5k.yaml").read_text())
    demo["trainer"] = {"callbacks": demo["trainer.callbacks"]}  # the config as the CLI saves it
    assert describe_method(demo) == (
        "FGSM + gradient-alignment stop + aliasing stop (monitor only) + PGD stop (monitor only) + "
        "abnormal-example stop (monitor only) + FGSM-PGD gap stop (monitor only)"
    )


def test_a_run_s_label_says_which_stop_acted(tmp_path) -> None:
    version = tmp_path / "run" / "version_0"
    (version / "checkpoints").mkdir(parents=True)
    (version / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    states = {
        "PGDEarlyStopping": {"history": [], "settings": {}, "stopped_epoch": 4, "stop_checkpoint": "pgd_es_stop.ckpt"},
        "ModelCheckpoint{'monitor': None}": {"best_model_score": None},
    }
    torch.save({"epoch": 4, "callbacks": states}, version / "checkpoints" / "last.ckpt")
    run = load_run(tmp_path / "run")
    assert run.method == "FGSM + anti-aliased (filt 3) + PGD stop; PGDEarlyStopping stopped it at epoch 4"


def test_bad_inputs_raise_value_error_naming_the_value(tmp_path) -> None:
    with pytest.raises(ValueError, match="nowhere"):
        load_run(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="names has 1 entries for 2 runs"):
        build_report([tmp_path, tmp_path], tmp_path / "out", names=["x"])
