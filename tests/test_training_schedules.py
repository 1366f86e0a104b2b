"""Learning-rate schedules against hand-computed values."""

import pytest
import torch

from robustrain.training import lr_factor


def test_cyclic_rises_to_one_at_the_peak_and_falls_back_to_zero():
    total = 100
    factors = [lr_factor("cyclic", s, total, cyclic_peak=0.4) for s in range(total)]
    assert factors[0] == pytest.approx(1 / 40)  # fast_adversarial evaluates at (step + 1) / total
    assert factors[39] == pytest.approx(1.0) and max(factors) == pytest.approx(1.0)
    assert factors[69] == pytest.approx(0.5)
    assert factors[-1] == pytest.approx(0.0)


def test_piecewise_divides_by_ten_at_half_and_three_quarters():
    assert [lr_factor("piecewise", s, 100) for s in (0, 49, 50, 74, 75, 99)] == [1, 1, 0.1, 0.1, 0.01, 0.01]


def test_cosine_and_constant():
    assert lr_factor("cosine", 0, 10) == 1.0 and lr_factor("cosine", 5, 10) == pytest.approx(0.5)
    assert lr_factor("constant", 7, 10) == 1.0


@pytest.mark.parametrize(
    "args,match",
    [
        (("step", 0, 10), "lr_schedule='step'"),
        (("cyclic", 0, 0), "total_steps=0"),
        (("cyclic", 0, 10, 1.0), "cyclic_peak=1.0"),
    ],
)
def test_bad_schedule_arguments_raise(args, match):
    with pytest.raises(ValueError, match=match):
        lr_factor(*args)


def test_eps_warmup_ramps_linearly_then_holds():
    from robustrain.training.schedules import warmup_factor

    assert [warmup_factor(p, 5) for p in (0, 2.5, 5, 9)] == [0.0, 0.5, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0
    with pytest.raises(ValueError, match="eps_warmup_epochs=-1"):
        warmup_factor(0, -1)


def test_training_module_rejects_negative_eps_warmup():
    from robustrain.models import SmallCNN
    from robustrain.training import PGDTraining

    with pytest.raises(ValueError, match="eps_warmup_epochs=-2"):
        PGDTraining(net=SmallCNN(), eps_warmup_epochs=-2)


class _Progress:
    """The two trainer attributes EpsWarmup reads."""

    def __init__(self, global_step: int, num_training_batches: float) -> None:
        self.global_step, self.num_training_batches = global_step, num_training_batches


def _module_at(step: int, batches: float = 10, warmup: float = 2.0):
    from robustrain.models import SmallCNN
    from robustrain.training import FGSMTraining

    module = FGSMTraining(net=SmallCNN(), eps=0.3, alpha=0.375, eps_warmup_epochs=warmup)
    module._trainer = _Progress(step, batches)  # what Trainer.fit attaches
    return module


@pytest.mark.parametrize(("step", "scale"), [(0, 0.0), (5, 0.25), (10, 0.5), (15, 0.75), (20, 1.0), (35, 1.0)])
def test_eps_warmup_grows_eps_linearly_over_its_epochs(step, scale):
    assert _module_at(step).eps_scale() == pytest.approx(scale)  # 10 batches per epoch, 2 warm-up epochs


def test_eps_warmup_is_off_without_warmup_a_trainer_or_a_known_epoch_length():
    assert _module_at(0, warmup=0.0).eps_scale() == 1.0
    assert _module_at(0, batches=float("inf")).eps_scale() == 1.0  # an iterable dataset of unknown length
    module = _module_at(0)
    module._trainer = None
    assert module.eps_scale() == 1.0


def test_fgsm_training_at_the_start_of_the_warmup_does_not_perturb(mnist_batch):
    images, labels = mnist_batch
    module = _module_at(0)
    assert torch.equal(module.perturb(images[:8], labels[:8]), images[:8])
    module = _module_at(10)  # half-way: eps 0.15
    delta = module.perturb(images[:8], labels[:8]) - images[:8]
    assert delta.abs().max() <= 0.15 + 1e-6 and delta.abs().max() > 0.1
