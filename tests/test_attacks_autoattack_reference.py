"""robustrain.attacks.autoattack_reference: Croce & Hein's own AutoAttack agrees with the torchattacks assembly on which
images are robust, and runs as robustrain's attacks run (RNG, console, box). Skipped without the `.[reference]` extra,
which CI installs."""

import logging

import pytest
import torch

from robustrain.attacks import autoattack
from robustrain.attacks import autoattack_reference as reference
from robustrain.evaluation import RobustnessEvaluation

needs_reference = pytest.mark.skipif(not reference.reference_available(), reason="pip install -e '.[reference]'")
SETTINGS = {"steps": 10, "square_queries": 100, "n_target_classes": 3}  # small, so the test takes seconds
EPS = 0.1
# Per-image disagreement allowed between the two implementations on these 32 digits: at most 2 images (6%). Both run
# the same components with the same settings, but torchattacks' ports differ in details (its APGD-T and FAB-T
# restart and target loops, float operation order), so a borderline image may fall to one and not the other.
MAX_DISAGREEMENT = 2


def robust(model, images, labels, implementation: str, **kwargs) -> torch.Tensor:
    adv = autoattack(model, images, labels, EPS, **SETTINGS, implementation=implementation, **kwargs)
    with torch.no_grad():
        return model(adv).argmax(1) == labels


@needs_reference
def test_both_implementations_agree_on_which_images_are_robust(tiny) -> None:
    model, images, labels = tiny
    model.eval()
    ours, theirs = (robust(model, images, labels, impl) for impl in ("torchattacks", "reference"))
    with torch.no_grad():
        clean = model(images).argmax(1) == labels
    assert 0 < int(theirs.sum()) < int(clean.sum())  # the attack breaks some images and not others: a real test
    assert int((ours != theirs).sum()) <= MAX_DISAGREEMENT
    assert not (theirs & ~clean).any()  # an image wrong before the attack is never counted robust


@needs_reference
def test_the_reference_leaves_the_global_rng_and_the_console_alone(tiny, capfd, caplog) -> None:
    model, images, labels = tiny
    model.eval()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    with caplog.at_level(logging.DEBUG):
        robust(model, images[:8], labels[:8], "reference")
    assert torch.equal(torch.rand(3), expected)  # it calls torch.manual_seed(seed) in every component
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert not [r for r in caplog.records if r.name == reference.REFERENCE_LOGGER]
    assert not logging.getLogger(reference.REFERENCE_LOGGER).handlers


@needs_reference
def test_the_reference_keeps_its_images_in_the_box_and_the_eps_ball(tiny) -> None:
    model, images, labels = tiny
    model.eval()
    box = (-0.1, 1.1)
    shifted = images[:8] * 1.2 - 0.1  # images that fill the box
    adv = autoattack(model, shifted, labels[:8], EPS, **SETTINGS, box=box, implementation="reference")
    assert adv.min() >= box[0] - 1e-6 and adv.max() <= box[1] + 1e-6
    assert (adv - shifted).abs().max() <= EPS + 1e-5


def test_without_the_extra_the_reference_is_refused_naming_the_install(monkeypatch, tiny) -> None:
    model, images, labels = tiny
    monkeypatch.setattr(reference, "reference_available", lambda: False)
    with pytest.raises(ValueError, match=r"pip install -e '\.\[reference\]'"):
        autoattack(model.eval(), images[:2], labels[:2], EPS, implementation="reference")
    with pytest.raises(ValueError, match=r"pip install -e '\.\[reference\]'"):
        RobustnessEvaluation(eps=EPS, autoattack_impl="reference")


def test_an_unknown_implementation_is_refused_naming_the_choices() -> None:
    with pytest.raises(ValueError, match="autoattack_impl"):
        RobustnessEvaluation(eps=EPS, autoattack_impl="foolbox")
