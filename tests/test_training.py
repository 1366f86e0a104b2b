"""The training modes together: each lowers its own training loss, records its attack in hparams, checks its arguments
and restores every mode after its attack."""

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustrain.attacks import fgsm, pgd
from robustrain.core.train_eval_modes import eval_mode
from robustrain.data import MNIST5k
from robustrain.models import PreActResNet18, SmallCNN
from robustrain.training import FGSMTraining, PGDTraining, StandardTraining


@pytest.mark.parametrize(
    "cls,kwargs",
    [
        (FGSMTraining, {"eps": 2.0}),
        (FGSMTraining, {"init": "none"}),
        (PGDTraining, {"steps": 0}),
        (PGDTraining, {"alpha": -1.0}),
        (FGSMTraining, {"attack_bn_mode": "frozen"}),
    ],
)
def test_bad_training_arguments_raise_at_construction(cls, kwargs):
    with pytest.raises(ValueError, match=str(list(kwargs.values())[0])):
        cls(net=SmallCNN(), **kwargs)


class _ModeRecorder(nn.Module):
    """Records the BatchNorm modes seen during forward passes."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.seen = net, []

    def forward(self, x):
        self.seen.append(tuple(m.training for m in self.net.modules() if isinstance(m, nn.BatchNorm2d)))
        return self.net(x)


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
@pytest.mark.parametrize("cls", [FGSMTraining, PGDTraining])
def test_training_attack_uses_bn_policy_and_restores_every_mode(bn_mode, cls):
    net = _ModeRecorder(PreActResNet18(num_classes=4, in_channels=1, normalization="mnist"))
    module = cls(net=net, eps=0.1, alpha=0.05, attack_bn_mode=bn_mode)
    module.train()
    net.net.layer2.eval()  # a user-frozen block must stay frozen, the rest must stay in train mode
    before = {name: m.training for name, m in module.named_modules()}
    module.perturb(torch.rand(4, 1, 32, 32), torch.tensor([0, 1, 2, 3]))
    assert {name: m.training for name, m in module.named_modules()} == before
    layer2_bns = {
        i
        for i, (name, m) in enumerate((n, m) for n, m in net.net.named_modules() if isinstance(m, nn.BatchNorm2d))
        if name.startswith("layer2")
    }
    for modes in net.seen:  # every attack forward saw the requested policy
        assert all(t == (bn_mode == "train") for i, t in enumerate(modes) if i not in layer2_bns or bn_mode == "eval")


MODULES = {
    "standard": (StandardTraining, {}, lambda net, x, y: x),
    "fgsm": (FGSMTraining, {"eps": 0.1, "alpha": 0.125}, lambda net, x, y: fgsm(net, x, y, 0.1, 0.125, "zero")),
    "pgd": (PGDTraining, {"eps": 0.1, "alpha": 0.04, "steps": 3}, lambda net, x, y: pgd(net, x, y, 0.1, 0.04, 3)),
}


def _fit(module, steps: int, tmp_path):
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=steps,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        inference_mode=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, MNIST5k(batch_size=50, eval_batch_size=100))
    return trainer


@pytest.mark.parametrize("name", MODULES)
def test_training_lowers_the_loss_it_trains_on(name, mnist_batch, tmp_path):
    cls, kwargs, inputs = MODULES[name]
    module = cls(
        net=SmallCNN(),
        optimizer="adam",
        lr=3e-3,
        lr_schedule="constant",
        weight_decay=0.0,
        eval_size=20,
        eval_eps=0.1,
        eval_alpha=0.05,
        eval_steps=2,
        **kwargs,
    )
    x, y = mnist_batch

    def loss():
        with eval_mode(module.net), torch.no_grad():
            return F.cross_entropy(module.net(inputs(module.net, x, y)), y).item()

    before = loss()
    trainer = _fit(module, 40, tmp_path)
    after = loss()
    assert after < 0.8 * before, f"{name}: loss {before:.3f} -> {after:.3f}"
    metrics = trainer.callback_metrics
    for key in ("train/loss", "train/acc", "val/loss", "val/acc", "val/acc_pgd"):
        assert key in metrics and torch.isfinite(metrics[key])
    assert metrics["val/acc_pgd"] <= metrics["val/acc"] + 1e-6


def test_hparams_include_the_attack_and_optimiser():
    module = FGSMTraining(net=SmallCNN(), eps=0.3, alpha=0.375, init="random_unclipped", optimizer="adam", lr=5e-3)
    assert {k: module.hparams[k] for k in ("eps", "alpha", "init", "optimizer", "lr")} == {
        "eps": 0.3,
        "alpha": 0.375,
        "init": "random_unclipped",
        "optimizer": "adam",
        "lr": 5e-3,
    }


def test_pgd_training_counts_abnormal_examples_on_the_same_adversarial_images(mnist_batch):
    x, y = mnist_batch
    module = PGDTraining(net=SmallCNN(), eps=0.2, alpha=0.05, steps=3)
    torch.manual_seed(4)
    expected = pgd(module.net, x, y, 0.2, 0.05, 3)  # the evaluation's attack, one restart
    torch.manual_seed(4)
    adv, start_loss = module.perturb_with_start_loss(x, y)
    assert torch.equal(adv, expected)
    torch.manual_seed(4)
    assert torch.equal(module.perturb(x, y), expected)
    assert start_loss.shape == (len(y),) and torch.isfinite(start_loss).all()
