"""robustrain.evaluation.spatial_evaluation: SpatialEvaluation through the CLI, DDP and ImageFolder paths, its report
against brute-force loops."""

import json
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from PIL import Image

from robustrain.cli import main
from robustrain.data import MNIST5k, load_mnist5k
from robustrain.evaluation import SpatialEvaluation
from robustrain.models import SmallCNN, TorchvisionResNet
from robustrain.spatial import grid_parameters, rotate_translate
from robustrain.training import StandardTraining

REPO = Path(__file__).resolve().parents[1]


EVAL_MNIST = str(REPO / "configs/eval_spatial_mnist5k.yaml")


REPORT_KEYS = {
    "n_images",
    "clean_acc",
    "grid_acc",
    "per_transform_acc",
    "per_transform_acc_grid",
    "random_acc",
    "worst_of_k_acc",
    "worst_of_k",
    "first_order_acc",
    "first_order_grid_acc",
    "first_order_images",
    "shift_consistency",
    "smoothness",
    "grid",
    "settings",
}


SMALL_GRID = {"rotation_deg_range": 6.0, "n_rotations": 5, "translation_px_range": 1.0, "n_translations": 3}


def _grid_args(**overrides) -> list[str]:
    settings = {**SMALL_GRID, "first_order_steps": 3, "first_order_size": 8, "shift_pairs": 2, **overrides}
    return [arg for key, value in settings.items() for arg in (f"--trainer.callbacks.init_args.{key}", str(value))]


def _brute_force(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """(B, T) correctness, one image and one transform per forward."""
    correct = torch.zeros(x.shape[0], params.shape[0], dtype=torch.bool)
    with torch.no_grad():
        for i in range(x.shape[0]):
            for t in range(params.shape[0]):
                image = rotate_translate(x[i : i + 1], params[t, :1], params[t, 1:].unsqueeze(0))
                correct[i, t] = net(image).argmax(dim=1).item() == y[i].item()
    return correct


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A SmallCNN trained 40 steps on MNIST5k (clean) through the CLI, saved as a Lightning checkpoint."""
    root = tmp_path_factory.mktemp("ckpt")
    args = [
        "fit",
        "--config",
        str(REPO / "configs/mnist5k_standard.yaml"),
        "--trainer.max_steps",
        "40",
        "--trainer.limit_val_batches",
        "0",
        "--trainer.callbacks",
        "[]",
        "--trainer.enable_checkpointing",
        "false",
        "--base_callbacks",
        "null",
        "--trainer.logger",
        "false",
        "--trainer.enable_progress_bar",
        "false",
        "--model.init_args.eval_size",
        "0",
        "--model.init_args.lr_schedule",
        "constant",
        "--trainer.default_root_dir",
        str(root),
    ]
    cli = main(args)
    path = root / "small_cnn.ckpt"
    cli.trainer.save_checkpoint(path)
    return path


def _mnist_test_set(test_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    data = MNIST5k(test_size=test_size)
    data.setup()
    images, labels = zip(*(data.test_set[i] for i in range(test_size)))
    return torch.stack(images), torch.as_tensor(labels)


def _trained_net(checkpoint: Path) -> SmallCNN:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    net = SmallCNN()
    net.load_state_dict({k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")})
    return net.eval()


@pytest.mark.slow  # ~160 s on 2 CPU cores
def test_cli_report_matches_brute_force_whatever_the_batch_and_chunk_size(checkpoint, in_tmp):
    x, y = _mnist_test_set(30)
    params = grid_parameters(**SMALL_GRID, translation_axes="both")  # (45, 3)
    correct = _brute_force(_trained_net(checkpoint), x, y, params)  # (30, 45)
    reports = []
    for batch_size, chunk_size in ((16, 4), (30, 45)):
        args = [
            "test",
            "--config",
            EVAL_MNIST,
            "--ckpt_path",
            str(checkpoint),
            "--data.init_args.test_size",
            "30",
            "--data.init_args.eval_batch_size",
            str(batch_size),
            "--trainer.enable_progress_bar",
            "false",
            *_grid_args(chunk_size=chunk_size),
        ]
        cli = main(args)
        log_dir = Path(cli.trainer.log_dir)
        report = json.loads((log_dir / "spatial_report.json").read_text())
        assert set(report) == REPORT_KEYS
        assert report["n_images"] == 30 and report["grid"]["n_transforms"] == 45
        assert report["grid_acc"] == pytest.approx(correct.all(dim=1).double().mean().item(), abs=1e-12)
        assert report["per_transform_acc"] == pytest.approx(correct.double().mean().item(), abs=1e-12)
        per_transform = torch.tensor(report["per_transform_acc_grid"], dtype=torch.float64)  # (R, Ntx, Nty)
        torch.testing.assert_close(per_transform, correct.double().mean(dim=0).view(5, 3, 3), atol=1e-12, rtol=0)
        assert cli.trainer.callback_metrics["spatial/grid_acc"].item() == pytest.approx(report["grid_acc"])
        assert report["first_order_images"] == 8 and report["shift_consistency"] is not None
        assert (log_dir / "per_transform_acc_heatmap.png").is_file() and (log_dir / "loss_surfaces.png").is_file()
        assert list(log_dir.glob("events.out.tfevents.*"))
        reports.append(report)
    assert 0 < reports[0]["grid_acc"] < reports[0]["clean_acc"]  # a meaningful check: some images survive, not all
    smooth = [r["smoothness"]["total_variation"]["mean"] for r in reports]
    assert smooth[0] == pytest.approx(smooth[1], rel=1e-5)


def _run_test(devices: int, root: Path, checkpoint: Path) -> dict:
    module = StandardTraining(net=_trained_net(checkpoint), eval_size=0)
    callback = SpatialEvaluation(**SMALL_GRID, first_order_steps=0, shift_pairs=1, chunk_size=8)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn" if devices > 1 else "auto",
        logger=False,
        default_root_dir=str(root),
        callbacks=[callback],
        inference_mode=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.test(module, datamodule=MNIST5k(test_size=30, eval_batch_size=8))
    return json.loads((root / "spatial_report.json").read_text())


@pytest.mark.slow  # ~50 s
def test_two_ddp_processes_report_what_one_process_reports(checkpoint, tmp_path):
    one = _run_test(1, tmp_path / "one", checkpoint)
    two = _run_test(2, tmp_path / "two", checkpoint)  # each rank evaluates 15 of the 30 images
    assert two["n_images"] == one["n_images"] == 30
    for key in ("clean_acc", "grid_acc", "per_transform_acc"):
        assert two[key] == pytest.approx(one[key], abs=1e-12), key
    assert two["per_transform_acc_grid"] == one["per_transform_acc_grid"]
    for field, stats in one["smoothness"].items():
        assert two["smoothness"][field]["mean"] == pytest.approx(stats["mean"], rel=1e-5), field


def _write_image_folder(root: Path, per_class: int = 4) -> None:
    """root/{train,val}/digit_<c>/*.png for digits 0-3, cut from MNIST5k (grayscale PNGs, loaded as RGB)."""
    images, labels = load_mnist5k()
    for split, offset in (("train", 0), ("val", per_class)):
        for digit in range(4):
            folder = root / split / f"digit_{digit}"
            folder.mkdir(parents=True)
            for i, index in enumerate((labels == digit).nonzero().flatten()[offset : offset + per_class].tolist()):
                Image.fromarray((images[index, 0] * 255).round().byte().numpy()).save(folder / f"{i}.png")


@pytest.mark.slow  # ~30 s
def test_torchvision_resnet_with_local_weights_over_an_image_folder(tmp_path, in_tmp):
    _write_image_folder(tmp_path / "folder", per_class=2)
    torch.manual_seed(1)
    reference = TorchvisionResNet(arch="resnet18", num_classes=4).eval()
    torch.save(reference.net.state_dict(), tmp_path / "resnet18.pth")
    # Seed 000's config at 28 px: 24 px at 224 is 3 px here; 5 rotations keep the test fast.
    args = [
        "test",
        "--config",
        str(REPO / "configs/eval_spatial_imagenet_resnet50.yaml"),
        "--model.init_args.net.init_args.arch",
        "resnet18",
        "--model.init_args.net.init_args.num_classes",
        "4",
        "--model.init_args.net.init_args.weights_path",
        str(tmp_path / "resnet18.pth"),
        "--data.init_args.root",
        str(tmp_path / "folder"),
        "--data.init_args.resize_size",
        "28",
        "--data.init_args.crop_size",
        "28",
        "--data.init_args.val_size",
        "2",
        "--data.init_args.num_workers",
        "0",
        "--data.init_args.eval_batch_size",
        "8",
        "--trainer.accelerator",
        "cpu",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.callbacks.init_args.translation_px_range",
        "3",
        "--trainer.callbacks.init_args.n_rotations",
        "3",
        "--trainer.callbacks.init_args.k",
        "3",
    ]
    cli = main(args)
    report = json.loads((Path(cli.trainer.log_dir) / "spatial_report.json").read_text())
    cli.datamodule.setup()
    x, y = zip(*(cli.datamodule.test_set[i] for i in range(8)))
    x, y = torch.stack(x), torch.as_tensor(y)
    params = grid_parameters(30.0, 3, 3.0, 5, "y")  # (15, 3): tx = 0
    correct = _brute_force(reference, x, y, params)
    assert report["n_images"] == 8 and report["grid"]["n_transforms"] == 15
    assert report["grid"]["translation_axes"] == "y"
    assert report["grid"]["translations_px"] == [-3.0, -1.5, 0.0, 1.5, 3.0]
    assert report["grid_acc"] == pytest.approx(correct.all(dim=1).double().mean().item(), abs=1e-12)
    assert report["per_transform_acc"] == pytest.approx(correct.double().mean().item(), abs=1e-12)
    assert len(report["per_transform_acc_grid"]) == 3 and len(report["per_transform_acc_grid"][0]) == 5
    assert report["first_order_acc"] is None and report["smoothness"]["gradient_mean"]["mean"] >= 0


IMAGENET_CONFIGS = ["eval_spatial_imagenet_resnet50.yaml", "eval_spatial_imagenet_resnet50_antialiased.yaml"]


@pytest.mark.parametrize("name", IMAGENET_CONFIGS)
def test_imagenet_eval_configs_instantiate(name, tmp_path, in_tmp):
    _write_image_folder(tmp_path / "folder", per_class=1)
    config = yaml.safe_load((REPO / "configs" / name).read_text())
    assert config["model"]["init_args"]["net"]["init_args"]["weights_path"].startswith("data/weights/")
    config["model"]["init_args"]["net"]["init_args"]["weights_path"] = None  # the ImageNet weights are not here
    (tmp_path / name).write_text(yaml.safe_dump(config))
    cli = main(
        [
            "--config",
            str(tmp_path / name),
            "--data.init_args.root",
            str(tmp_path / "folder"),
            "--data.init_args.val_size",
            "1",
        ],
        run=False,
    )
    (callback,) = [c for c in cli.trainer.callbacks if isinstance(c, SpatialEvaluation)]
    assert callback.params.shape == (31 * 5, 3) and callback.translation_px_range == 24.0
    assert isinstance(cli.model.net, TorchvisionResNet)
    assert (name.endswith("antialiased.yaml")) == any("BlurPool" in type(m).__name__ for m in cli.model.net.modules())


def test_mnist_eval_config_instantiates_the_default_grid(in_tmp):
    cli = main(["--config", EVAL_MNIST], run=False)
    (callback,) = [c for c in cli.trainer.callbacks if isinstance(c, SpatialEvaluation)]
    assert callback.params.shape == (775, 3) and callback.k == 10 and callback.first_order_steps == 200


def test_translation_larger_than_the_image_raises_before_testing(checkpoint, in_tmp):
    args = [
        "test",
        "--config",
        EVAL_MNIST,
        "--ckpt_path",
        str(checkpoint),
        "--trainer.callbacks.init_args.translation_px_range",
        "30",
    ]
    with pytest.raises(ValueError, match="translation_px_range=30.0 is larger than"):
        main([*args, "--debug"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rotation_deg_range": -30.0}, "rotation_deg_range=-30.0"),
        ({"translation_px_range": -1.0}, "translation_px_range=-1.0"),
        ({"n_rotations": 0}, "n_rotations=0"),
        ({"n_translations": 0}, "n_translations=0"),
        ({"chunk_size": 0}, "chunk_size=0"),
        ({"k": 0}, "k=0"),
        ({"selection_rule": "worst"}, "selection_rule='worst'"),
        ({"translation_axes": "z"}, "translation_axes='z'"),
        ({"translation_axes": "x"}, "first_order_steps=200"),
        ({"max_images": 0}, "max_images=0"),
        ({"first_order_steps": -1}, "first_order_steps=-1"),
        ({"report_name": "../report.json"}, "report_name"),
    ],
)
def test_bad_arguments_raise_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SpatialEvaluation(**kwargs)
