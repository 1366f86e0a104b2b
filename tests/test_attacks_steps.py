"""robustrain.attacks.steps: the own FGSM and PGD loops equal torchattacks' results bit for bit under a fixed seed."""

import pytest
import torch

from robustrain.attacks import fgsm, pgd


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
