"""robustrain.evaluation.robust_accuracy: robust accuracy, accuracy vs eps and perturbation spectra against known
answers."""

import pytest
import torch
from conftest import FAST_AA

from robustrain.evaluation import RobustnessEvaluation
from robustrain.evaluation.robust_accuracy import (
    AttackSpec,
    accuracy_vs_eps,
    attack_batch,
    curve_specs,
    perturbation_spectrum,
    robust_accuracy,
)


def _clean(model, images, labels) -> float:
    return robust_accuracy(model, [(images, labels)], [AttackSpec("clean")])["clean"]


@pytest.mark.parametrize("early_stop", [False, True])
def test_pgd_at_eps_zero_equals_clean_accuracy(tiny, early_stop) -> None:
    model, x, y = tiny
    spec = AttackSpec("pgd", 0.0, alpha=0.05, steps=5, restarts=2, early_stop=early_stop)
    adv, _ = attack_batch(model, x, y, spec)
    assert torch.equal(adv, x)
    assert robust_accuracy(model, [(x, y)], [spec])[spec.key] == _clean(model, x, y) > 0.8


def test_accuracy_never_increases_with_eps(tiny) -> None:
    model, x, y = tiny
    torch.manual_seed(0)
    accs = accuracy_vs_eps(model, [(x[:16], y[:16]), (x[16:], y[16:])], [0.0, 0.05, 0.1, 0.2, 0.3], steps=5)
    assert accs[0] == _clean(model, x, y)
    assert all(b <= a for a, b in zip(accs, accs[1:])), accs
    assert accs[-1] < accs[0]


def test_curve_steps_follow_ribeiro_schoen() -> None:
    specs = curve_specs([0.0, 0.1], steps=100, step_factor=2.5)
    assert specs[0].name == "clean"
    assert (specs[1].steps, specs[1].step_size) == (100, pytest.approx(2.5 * 0.1 / 100))


def test_early_stop_gives_same_or_lower_accuracy(tiny) -> None:
    model, x, y = tiny
    plain = AttackSpec("pgd", 0.1, alpha=0.02, steps=10, random_start=False)
    early = AttackSpec("pgd", 0.1, alpha=0.02, steps=10, random_start=False, early_stop=True)
    _, correct_plain = attack_batch(model, x, y, plain)
    _, correct_early = attack_batch(model, x, y, early)
    assert not (correct_early & ~correct_plain).any()  # every example early stop misses, plain PGD misses too
    assert correct_early.sum() <= correct_plain.sum() < len(y)


def test_restarts_only_lower_accuracy(tiny) -> None:
    model, x, y = tiny
    torch.manual_seed(1)
    one = robust_accuracy(model, [(x, y)], [AttackSpec("pgd", 0.1, alpha=0.02, steps=3, restarts=1)])
    torch.manual_seed(1)  # the first restart draws the same start
    three = robust_accuracy(model, [(x, y)], [AttackSpec("pgd", 0.1, alpha=0.02, steps=3, restarts=3)])
    assert three["pgd_3x3"] <= one["pgd_3x1"]


def test_autoattack_not_above_clean_and_components_only_lower(tiny) -> None:
    model, x, y = tiny
    first = robust_accuracy(model, [(x, y)], [AttackSpec("autoattack", 0.1, components=("apgd-ce",), **FAST_AA)])
    full = robust_accuracy(model, [(x, y)], [AttackSpec("autoattack", 0.1, **FAST_AA)])
    assert full["autoattack"] <= first["autoattack"] <= _clean(model, x, y)
    assert full["autoattack"] < _clean(model, x, y)


@pytest.mark.parametrize(
    "spec",
    [
        AttackSpec("fgsm", 0.1),
        AttackSpec("pgd", 0.1, steps=3, restarts=2),
        AttackSpec("pgd", 0.1, steps=3, early_stop=True),
        AttackSpec("autoattack", 0.1, **FAST_AA),
    ],
    ids=lambda s: s.key + ("_es" if s.early_stop else ""),
)
def test_attacks_stay_in_eps_ball_and_restore_modes(tiny, spec) -> None:
    model, x, y = tiny
    model.train()
    model.conv1.eval()  # a mixed state must come back exactly
    flags = [m.training for m in model.modules()]
    adv, correct = attack_batch(model, x, y, spec)
    assert (adv - x).abs().max() <= spec.eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    assert torch.equal(correct, model.eval()(adv).argmax(1) == y)
    model.train()
    model.conv1.eval()
    assert [m.training for m in model.modules()] == flags


def test_perturbation_spectrum_known_answers() -> None:
    eps = 0.25
    constant = torch.full((1, 1, 8, 8), eps)
    spectrum = perturbation_spectrum(constant)[0, 0]
    assert spectrum[4, 4] == pytest.approx(eps) and spectrum.sum() == pytest.approx(eps)  # DC only, in the centre
    i = torch.arange(8)
    checker = eps * (-1.0) ** (i[:, None] + i[None, :]).float()
    spectrum = perturbation_spectrum(checker[None, None])[0, 0]
    assert spectrum[0, 0] == pytest.approx(eps) and spectrum.sum() == pytest.approx(eps)  # Nyquist, fftshift corner


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: AttackSpec("pgd", -0.1, steps=5), "eps=-0.1"),
        (lambda: AttackSpec("pgd", 0.1, steps=0), "steps=0"),
        (lambda: AttackSpec("cw", 0.1), "'cw'"),
        (lambda: AttackSpec("autoattack", 0.1, components=("apgd-ce", "foo")), "foo"),
        (lambda: RobustnessEvaluation(attacks=["fgsm", "deepfool"]), "deepfool"),
        (lambda: RobustnessEvaluation(eps=-0.5), "eps=-0.5"),
        (lambda: RobustnessEvaluation(pgd=[(0, 1)]), "steps=0"),
        (lambda: RobustnessEvaluation(pgd=[(10, 1), (10, 1)]), "(steps, restarts)"),
        (lambda: RobustnessEvaluation(eps_curve=[0.1, -0.2]), "eps=-0.2"),
        (lambda: RobustnessEvaluation(max_images=0), "max_images=0"),
        (lambda: curve_specs([0.1], step_factor=0), "step_factor=0"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_value(make, message) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()
