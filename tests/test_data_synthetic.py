"""SyntheticImages: seeded CIFAR-10- and ImageNet-shaped images whose classes can be learned, served in batches."""

from pathlib import Path

import pytest
import torch

from robustrain.data import SyntheticImages
from robustrain.data.synthetic import Batch, synthetic_images


def _data(**kwargs) -> SyntheticImages:
    data = SyntheticImages(**{"train_size": 300, "test_size": 100, "val_size": 50, "batch_size": 32, **kwargs})
    data.setup("fit")
    return data


@pytest.mark.parametrize("shape,image_shape,classes", [("cifar10", (3, 32, 32), 10), ("imagenet", (3, 224, 224), 1000)])
def test_images_have_the_datasets_shape_range_and_classes(shape, image_shape, classes):
    data = _data(shape=shape)
    assert data.image_shape == image_shape and data.num_classes == classes
    assert (len(data.train_set), len(data.val_set), len(data.test_set)) == (250, 50, 100)
    image, label = data.train_set[0]
    assert image.shape == image_shape and image.dtype == torch.float32 and label.dtype == torch.int64
    assert 0 <= image.min() and image.max() <= 1 and 0 <= label < classes


def test_the_default_sizes_are_the_datasets():
    data = SyntheticImages()
    assert (data.train_size, data.test_size) == (50000, 10000)


def test_the_same_seed_gives_the_same_images_and_splits_share_only_their_classes():
    a, labels_a = synthetic_images(40, 10, (3, 8, 8), seed=3)
    b, labels_b = synthetic_images(40, 10, (3, 8, 8), seed=3)
    assert torch.equal(a, b) and torch.equal(labels_a, labels_b)
    assert not torch.equal(a, synthetic_images(40, 10, (3, 8, 8), seed=4)[0])
    assert not torch.equal(a, synthetic_images(40, 10, (3, 8, 8), seed=3, split=1)[0])
    assert torch.equal(torch.bincount(labels_a), torch.full((10,), 4))  # balanced


def test_a_nearest_class_mean_rule_learned_on_training_images_classifies_the_test_images():
    data = _data()
    train_x, train_y = next(iter(torch.utils.data.DataLoader(data.train_set, batch_size=250, collate_fn=lambda b: b)))
    means = torch.stack([train_x[train_y == c].mean(0) for c in range(10)]).flatten(1)
    test_x, test_y = data.test_set.__getitems__(list(range(100)))
    predicted = torch.cdist(test_x.flatten(1), means).argmin(1)
    assert (predicted == test_y).float().mean() > 0.9  # the classes are learnable; chance is 0.1


def test_the_loaders_serve_whole_batches_equal_to_the_single_images():
    data = _data()
    assert isinstance(data.val_set.__getitems__([0, 1]), Batch)  # one indexing operation a batch, through the Subset
    images, labels = next(iter(data.val_dataloader()))
    assert images.shape == (32, 3, 32, 32) and labels.shape == (32,)
    singles = [data.val_set[i] for i in range(32)]
    assert torch.equal(images, torch.stack([x for x, _ in singles]))
    assert torch.equal(labels, torch.stack([y for _, y in singles]))
    probes, probe_labels = data.probe_set(16, seed=0)
    assert probes.shape == (16, 3, 32, 32) and probe_labels.shape == (16,)


def test_injected_features_work_through_the_per_image_path():
    data = _data(inject_beta=0.1)
    images, _ = next(iter(data.train_dataloader()))
    assert images.shape == (32, 3, 32, 32) and images.min() < 0  # the injected carriers leave [0, 1]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"shape": "cifar100"}, "shape='cifar100'"),
        ({"train_size": 1}, "train_size=1"),
        ({"train_size": 100, "val_size": 100}, "val_size=100 leaves no training images"),
        ({"on_device": True, "num_workers": 2}, "num_workers=2 is not valid with on_device=true"),
    ],
)
def test_bad_settings_are_refused_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticImages(**kwargs)


def test_wongs_recipe_on_synthetic_images_runs_from_its_config(in_tmp):
    from robustrain.cli import main

    small = ["--model.init_args.net", "robustrain.models.SmallCNN", "--model.init_args.net.in_channels", "3"]
    small += ["--model.init_args.net.image_size", "32", "--model.init_args.net.normalization", "cifar10"]
    sizes = ["--data.init_args.train_size", "600", "--data.init_args.test_size", "100", "--data.init_args.val_size"]
    sizes += ["100", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches"]
    sizes += ["1", "--model.init_args.eval_size", "20", "--trainer.enable_progress_bar", "false"]
    config = str(Path(__file__).resolve().parents[1] / "configs/cifar10_fgsm_synthetic.yaml")
    cli = main(["fit", "--config", config, *small, *sizes])
    assert type(cli.datamodule).__name__ == "SyntheticImages" and cli.datamodule.on_device
    assert cli.trainer.global_step == 3 and torch.isfinite(cli.trainer.callback_metrics["train/loss"])
    assert (in_tmp / "runs/cifar10_fgsm_synthetic/version_0/checkpoints/last.ckpt").is_file()
