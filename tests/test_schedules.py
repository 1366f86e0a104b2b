"""Learning-rate schedules against hand-computed values."""

import pytest

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
