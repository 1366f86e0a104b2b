"""robustrain.attacks.pgd: stronger than FGSM, right under bf16, the any-restart-fools rule."""

import importlib

import torch
import torch.nn.functional as F
from torch import nn

from robustrain.attacks import fgsm, pgd


def test_pgd_is_at_least_as_strong_as_fgsm(trained_cnn, mnist_batch):
    x, y = mnist_batch
    with torch.no_grad():
        acc_fgsm = (trained_cnn(fgsm(trained_cnn, x, y, 0.2, 0.2, "zero")).argmax(1) == y).float().mean()
        acc_pgd = (trained_cnn(pgd(trained_cnn, x, y, 0.2, 0.02, steps=20)).argmax(1) == y).float().mean()
    assert acc_pgd <= acc_fgsm


def test_pgd_direction_is_right_under_bf16_autocast(trained_cnn, mnist_batch):
    x, y = mnist_batch
    torch.manual_seed(0)
    ref = fgsm(trained_cnn, x, y, 0.2, 0.2, "zero")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        adv = fgsm(trained_cnn, x, y, 0.2, 0.2, "zero")
        adv_pgd = pgd(trained_cnn, x, y, 0.2, 0.05, steps=5)
    assert adv.dtype == torch.float32
    moved = (ref - x).abs() > 0
    agree = ((adv - x).sign() == (ref - x).sign())[moved].float().mean()
    assert agree > 0.95, f"bf16 FGSM agrees with fp32 on only {agree:.1%} of the moved pixels"
    assert (adv_pgd - x).abs().max() <= 0.2 + 1e-6
    with torch.no_grad():
        assert F.cross_entropy(trained_cnn(adv_pgd), y) > F.cross_entropy(trained_cnn(x), y) + 0.5


def test_pgd_restarts_count_an_example_broken_if_any_restart_fools_it(monkeypatch):
    """Restart 1 fools example 0 at a low loss: it must count as broken and restart 2 must not attack it again (the
    highest-loss rule would keep a later, higher-loss correct point and call it robust). Example 1 is never fooled:
    its highest-loss point wins."""
    pgd_module = importlib.import_module("robustrain.attacks.pgd")  # the module: the package's `pgd` is the function

    fooled_low_loss = torch.tensor([0.45, 0.55, 0.0]).log()  # class 1 wins; CE for label 0 = 0.80
    correct_high_loss = torch.tensor([0.40, 0.30, 0.30]).log()  # class 0 wins; CE = 0.92
    correct_low_loss = torch.tensor([0.90, 0.05, 0.05]).log()
    outputs = iter(
        [
            torch.stack([fooled_low_loss, correct_low_loss]),
            torch.stack([correct_high_loss]),
        ]
    )
    attacked = []

    def scripted_pgd(model, images, labels, eps, alpha, steps, random_start, box):
        attacked.append(len(images))
        return next(outputs).clamp(min=-30)[:, None, None, :]  # "images" whose pixels are the logits

    monkeypatch.setattr(pgd_module, "_pgd_plain", scripted_pgd)
    logits_net = nn.Sequential(nn.Flatten(), nn.Identity())
    logits_net.register_parameter("unused", nn.Parameter(torch.zeros(())))  # so the attack can find a device
    x = torch.zeros(2, 1, 1, 3)
    y = torch.zeros(2, dtype=torch.long)
    adv = pgd(logits_net, x, y, eps=0.1, alpha=0.05, steps=1, restarts=2)
    torch.testing.assert_close(adv[0, 0, 0], fooled_low_loss.clamp(min=-30))
    torch.testing.assert_close(adv[1, 0, 0], correct_high_loss)
    assert attacked == [2, 1]
