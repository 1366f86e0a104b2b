"""Tests of WorstOfKSpatialTraining: what it trains on, its model modes, its effect on MNIST5k, its validation."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustrain.cli import main
from robustrain.models import SmallCNN
from robustrain.spatial import random_parameters, rotate_translate, worst_of_k
from robustrain.training import WorstOfKSpatialTraining

REPO = Path(__file__).resolve().parents[1]


def _module(net: nn.Module | None = None, **kwargs) -> WorstOfKSpatialTraining:
    return WorstOfKSpatialTraining(net=net or SmallCNN(), optimizer="adam", lr=1e-3, eval_size=0, **kwargs)


def _candidate_losses(net: nn.Module, x: torch.Tensor, y: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Brute force: loss of every image under each of its own candidates, one image and one transform at a time."""
    losses = torch.zeros(candidates.shape[:2])
    with torch.no_grad():
        for i in range(x.shape[0]):
            for j in range(candidates.shape[1]):
                image = rotate_translate(x[i : i + 1], candidates[i, j, :1], candidates[i, j, 1:].unsqueeze(0))
                losses[i, j] = F.cross_entropy(net(image), y[i : i + 1])
    return losses


def test_trains_on_each_examples_highest_loss_candidate(mnist_batch):
    x, y = mnist_batch[0][:6], mnist_batch[1][:6]
    module = _module(k=4, selection_rule="loss", rotation_deg_range=20.0, translation_px_range=2.0)
    torch.manual_seed(11)
    picked = module.perturb(x, y)
    torch.manual_seed(11)  # the same draws the module made: (B*k, 3) -> (B, k, 3)
    candidates = random_parameters(6 * 4, 20.0, 2.0).view(6, 4, 3)
    best = _candidate_losses(module.net.eval(), x, y, candidates).argmax(dim=1)  # (B,)
    chosen = candidates[torch.arange(6), best]  # (B, 3)
    expected = rotate_translate(x, chosen[:, 0], chosen[:, 1:])
    torch.testing.assert_close(picked, expected, atol=1e-5, rtol=0)
    assert picked.shape == x.shape and not torch.equal(picked, x)


def test_zero_ranges_train_on_the_untransformed_images(mnist_batch):
    x, y = mnist_batch[0][:4], mnist_batch[1][:4]
    module = _module(k=3, rotation_deg_range=0.0, translation_px_range=0.0, include_identity=True)
    torch.testing.assert_close(module.perturb(x, y), x, atol=1e-5, rtol=0)  # every candidate is the identity


class BatchNormNet(nn.Module):
    """A tiny conv net with BatchNorm and Dropout, on (N, 1, 28, 28) images, 10 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5))
        self.head = nn.Linear(4 * 13 * 13, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def test_search_uses_running_statistics_and_restores_every_mode(mnist_batch):
    x, y = mnist_batch
    module = _module(BatchNormNet())
    module.train()
    module.net.head.eval()  # a mixed state must come back exactly as it was
    flags = [m.training for m in module.modules()]
    batchnorm = module.net.features[1]
    mean_before = batchnorm.running_mean.clone()
    module.perturb(x, y)
    assert [m.training for m in module.modules()] == flags
    assert torch.equal(batchnorm.running_mean, mean_before)  # the search ran in eval mode: statistics untouched


def test_stacked_pgd_stays_in_the_eps_ball_around_the_picked_images(mnist_batch):
    x, y = mnist_batch[0][:8], mnist_batch[1][:8]
    plain = _module(k=2)
    stacked = _module(k=2, pgd_eps=0.1, pgd_alpha=0.05, pgd_steps=3)
    stacked.net.load_state_dict(plain.net.state_dict())
    torch.manual_seed(3)
    picked = plain.perturb(x, y)
    torch.manual_seed(3)
    attacked = stacked.perturb(x, y)
    distance = (attacked - picked).abs().amax()
    assert 0.05 <= distance <= 0.1 + 1e-6
    assert attacked.min() >= 0 and attacked.max() <= 1


def _worst_of_10_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Loss on each image's worst of 10 transforms, the same draws every call."""
    net.eval()
    params, _ = worst_of_k(net, x, y, k=10, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return F.cross_entropy(net(rotate_translate(x, params[:, 0], params[:, 1:])), y).item()


def test_worst_of_k_training_steps_lower_the_worst_of_10_loss_on_mnist5k(mnist_batch):
    x, y = mnist_batch  # 64 real digits, trained on repeatedly
    module = _module()
    optimizer = torch.optim.Adam(module.parameters(), lr=5e-3)
    before = _worst_of_10_loss(module.net, x, y)
    for _ in range(25):
        module.train()
        loss = F.cross_entropy(module(module.perturb(x, y)), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = _worst_of_10_loss(module.net, x, y)
    assert after < before - 0.25, (before, after)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "k=0"),
        ({"k": 2.5}, "k=2.5"),
        ({"rotation_deg_range": -1.0}, "rotation_deg_range=-1.0"),
        ({"translation_px_range": -3.0}, "translation_px_range=-3.0"),
        ({"translation_px_range": float("nan")}, "translation_px_range=nan"),
        ({"selection_rule": "max_loss"}, "misclassified_then_loss"),
        ({"chunk_size": 0}, "chunk_size=0"),
        ({"pgd_eps": 2.0}, "eps=2.0"),
        ({"pgd_eps": 0.1, "pgd_steps": 0}, "steps=0"),
    ],
)
def test_bad_arguments_raise_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _module(**kwargs)


def test_translation_larger_than_the_image_raises_before_training(in_tmp):
    args = [
        "fit",
        "--config",
        str(REPO / "configs/mnist5k_worst_of_10.yaml"),
        "--model.init_args.translation_px_range",
        "28",
        "--trainer.max_steps",
        "1",
    ]
    with pytest.raises(ValueError, match="translation_px_range=28.0 is larger than the 28x28 images"):
        main([*args, "--debug"])


@pytest.mark.parametrize("name", ["mnist5k_worst_of_10.yaml", "cifar10_worst_of_10.yaml"])
def test_worst_of_10_configs_instantiate(name, in_tmp):
    args = ["--config", str(REPO / "configs" / name)]
    if name.startswith("cifar10"):  # CIFAR-10 is not on this machine: the model and trainer are what is checked
        args += ["--data", "robustrain.data.MNIST5k"]
    cli = main(args, run=False)
    assert isinstance(cli.model, WorstOfKSpatialTraining)
    assert cli.model.hparams.k == 10 and cli.model.hparams.selection_rule == "misclassified_then_loss"
    assert (cli.model.hparams.rotation_deg_range, cli.model.hparams.translation_px_range) == (30.0, 3.0)
