"""L-inf attacks: eps-ball and image range, stronger than clean, explicit modes, bf16, bad input."""

import importlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustrain.attacks import fgsm, pgd
from robustrain.models import PreActResNet18, SmallCNN
from robustrain.train_eval_modes import batchnorm_mode, eval_mode, preserved_modes
from robustrain.training import FGSMTraining, PGDTraining

ATTACKS = {
    "fgsm_random_clipped": lambda m, x, y, eps: fgsm(m, x, y, eps, 1.25 * eps, "random_clipped"),
    "fgsm_random_unclipped": lambda m, x, y, eps: fgsm(m, x, y, eps, 1.25 * eps, "random_unclipped"),
    "fgsm_zero": lambda m, x, y, eps: fgsm(m, x, y, eps, eps, "zero"),
    "pgd": lambda m, x, y, eps: pgd(m, x, y, eps, eps / 4, steps=5),
    "pgd_restarts": lambda m, x, y, eps: pgd(m, x, y, eps, eps / 4, steps=3, restarts=3),
}


@pytest.fixture(scope="module")
def trained_cnn(mnist_batch):
    """A SmallCNN fitted for a few steps on real digits, so its loss surface is not flat."""
    torch.manual_seed(0)
    net = SmallCNN()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x, y = mnist_batch
    for _ in range(30):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


@pytest.mark.parametrize("name", ATTACKS)
@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_attack_stays_in_eps_ball_and_image_range(trained_cnn, mnist_batch, name, eps):
    x, y = mnist_batch
    adv = ATTACKS[name](trained_cnn, x, y, eps)
    assert adv.shape == x.shape and adv.dtype == x.dtype
    assert (adv - x).abs().max() <= eps + 1e-6
    assert adv.min() >= 0.0 and adv.max() <= 1.0


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_raises_loss_over_clean(trained_cnn, mnist_batch, name):
    x, y = mnist_batch
    adv = ATTACKS[name](trained_cnn, x, y, 0.2)
    with torch.no_grad():
        assert F.cross_entropy(trained_cnn(adv), y) > F.cross_entropy(trained_cnn(x), y) + 0.5


def test_pgd_is_at_least_as_strong_as_fgsm(trained_cnn, mnist_batch):
    x, y = mnist_batch
    with torch.no_grad():
        acc_fgsm = (trained_cnn(fgsm(trained_cnn, x, y, 0.2, 0.2, "zero")).argmax(1) == y).float().mean()
        acc_pgd = (trained_cnn(pgd(trained_cnn, x, y, 0.2, 0.02, steps=20)).argmax(1) == y).float().mean()
    assert acc_pgd <= acc_fgsm


def test_eps_zero_returns_clean_images(trained_cnn, mnist_batch):
    x, y = mnist_batch
    assert torch.equal(pgd(trained_cnn, x, y, 0.0, 0.01, steps=3), x)


def test_attack_in_inference_mode_raises_with_a_fix(trained_cnn, mnist_batch):
    x, y = mnist_batch
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode=False"):
        pgd(trained_cnn, x, y, 0.1, 0.01, steps=1)


def test_attack_under_no_grad_still_computes_gradients(trained_cnn, mnist_batch):
    x, y = mnist_batch
    with torch.no_grad():
        adv = fgsm(trained_cnn, x, y, 0.3, 0.3, "zero")
    assert (adv - x).abs().max() > 0.29


@pytest.mark.parametrize(
    "call,kwargs,match",
    [
        (fgsm, {"eps": 1.5, "alpha": 0.1}, "eps=1.5"),
        (fgsm, {"eps": -0.1, "alpha": 0.1}, "eps=-0.1"),
        (fgsm, {"eps": 0.1, "alpha": -0.1}, "alpha=-0.1"),
        (fgsm, {"eps": float("nan"), "alpha": 0.1}, "eps=nan"),
        (fgsm, {"eps": 0.1, "alpha": float("nan")}, "alpha=nan"),
        (fgsm, {"eps": 0.1, "alpha": 0.1, "init": "gaussian"}, "init='gaussian'"),
        (pgd, {"eps": 0.1, "alpha": 0.1, "steps": 0}, "steps=0"),
        (pgd, {"eps": 0.1, "alpha": 0.1, "steps": 2, "restarts": 0}, "restarts=0"),
    ],
)
def test_bad_attack_parameters_raise_naming_the_value(trained_cnn, mnist_batch, call, kwargs, match):
    x, y = mnist_batch
    with pytest.raises(ValueError, match=match):
        call(trained_cnn, x[:2], y[:2], **kwargs)


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


def test_mode_context_managers_restore_after_an_exception():
    net = PreActResNet18(num_classes=2, in_channels=1)
    net.layer3.eval()
    before = [m.training for m in net.modules()]
    for ctx in (eval_mode(net), batchnorm_mode(net, "train"), preserved_modes(net)):
        with pytest.raises(KeyError), ctx:
            net.train()
            raise KeyError("boom")
        assert [m.training for m in net.modules()] == before


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


def _hand_fgsm_rs(model, x, y, eps, alpha, clip_start, seed):
    """FGSM-RS written out by hand, as fast_adversarial does (MNIST: clip_start=False; CIFAR-10: clip_start=True)."""
    torch.manual_seed(seed)
    if clip_start:  # torchattacks.FFGSM draws randn_like(x) and overwrites it with uniform_: the RNG advances twice
        torch.randn_like(x)
    delta = torch.empty_like(x).uniform_(-eps, eps)
    start = (x + delta).clamp(0, 1) if clip_start else x + delta
    start = start.detach().requires_grad_(True)
    grad = torch.autograd.grad(F.cross_entropy(model(start), y), start)[0]
    step = (start.detach() + alpha * grad.sign() - x).clamp(-eps, eps)
    return (x + step).clamp(0, 1)


@pytest.mark.parametrize("init,clip_start", [("random_unclipped", False), ("random_clipped", True)])
def test_fgsm_random_starts_match_a_step_computed_by_hand(trained_cnn, mnist_batch, init, clip_start):
    x, y = mnist_batch
    expected = _hand_fgsm_rs(trained_cnn, x, y, 0.3, 0.375, clip_start, seed=7)
    torch.manual_seed(7)
    adv = fgsm(trained_cnn, x, y, 0.3, 0.375, init)
    torch.testing.assert_close(adv, expected, atol=1e-6, rtol=0)


def test_fgsm_unclipped_start_differs_from_the_clipped_one_on_black_background(trained_cnn, mnist_batch):
    """On MNIST's zero background, clipping the start throws away the negative half of delta before the gradient."""
    x, y = mnist_batch
    torch.manual_seed(3)
    unclipped = fgsm(trained_cnn, x, y, 0.3, 0.375, "random_unclipped")
    torch.manual_seed(3)
    clipped = fgsm(trained_cnn, x, y, 0.3, 0.375, "random_clipped")
    assert (unclipped - clipped).abs().max() > 0.1


def test_fgsm_with_zero_step_returns_the_projected_start(trained_cnn, mnist_batch):
    x, y = mnist_batch
    adv = fgsm(trained_cnn, x, y, 0.3, 0.0, "zero")
    torch.testing.assert_close(adv, x)


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

    def scripted_pgd(model, images, labels, eps, alpha, steps, random_start):
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


def _torchattacks_result(name, model, *args, images, labels):
    import torchattacks

    return getattr(torchattacks, name)(model, *args).forward(images, labels)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (lambda m, x, y: fgsm(m, x, y, 0.3, 0.375, "random_clipped"), ("FFGSM", 0.3, 0.375)),
        (lambda m, x, y: fgsm(m, x, y, 0.2, 0.2, "zero"), ("PGD", 0.2, 0.2, 1, False)),
        (lambda m, x, y: pgd(m, x, y, 0.3, 0.075, 7), ("PGD", 0.3, 0.075, 7, True)),
        (lambda m, x, y: pgd(m, x, y, 0.1, 0.01, 3, random_start=False), ("PGD", 0.1, 0.01, 3, False)),
    ],
)
def test_attacks_equal_torchattacks_bit_for_bit_under_a_fixed_seed(trained_cnn, mnist_batch, ours, theirs):
    x, y = mnist_batch
    clean = x.clone()
    torch.manual_seed(7)
    expected = _torchattacks_result(theirs[0], trained_cnn, *theirs[1:], images=x, labels=y)
    rng_after = torch.get_rng_state()
    torch.manual_seed(7)
    adv = ours(trained_cnn, x, y)
    assert torch.equal(adv, expected)
    assert torch.equal(torch.get_rng_state(), rng_after)  # the same random numbers drawn: later batches agree too
    assert torch.equal(x, clean)  # the caller's images are never written to


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["fgsm_random_clipped", "fgsm_random_unclipped", "fgsm_zero", "pgd"])
def test_attack_moves_inputs_to_the_model_device_read_at_call_time(trained_cnn, mnist_batch, name):
    x, y = mnist_batch
    model = SmallCNN().cuda()
    adv = ATTACKS[name](model, x, y, 0.1)
    assert adv.device == next(model.parameters()).device
