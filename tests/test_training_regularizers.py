"""robustrain.training.regularizers: GradAlign and ELLE(-A) against brute-force computations on a tiny model."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustrain.training import ELLE, GradAlign
from robustrain.training.regularizers import MIN_GRADIENT_NORM, elle_a_update, grad_align_penalty, local_linearity_error


def _grad(model, point, label, create_graph=False):
    point = point.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(point[None]), label[None])
    return torch.autograd.grad(loss, point, create_graph=create_graph)[0]


def test_grad_align_penalty_equals_a_per_example_loop(tiny):
    model, x, y = tiny
    x, y = x[:8], y[:8]
    torch.manual_seed(5)
    value = grad_align_penalty(model, x, y, 0.1)
    torch.manual_seed(5)
    noise = torch.empty_like(x).uniform_(-0.1, 0.1)
    cosines = []
    for i in range(len(x)):
        a, b = _grad(model, x[i], y[i]), _grad(model, x[i] + noise[i], y[i])
        if min(a.norm(), b.norm()) > MIN_GRADIENT_NORM:  # vanishing gradients are left out
            cosines.append(torch.dot(a.flatten(), b.flatten()) / (a.norm() * b.norm()))
    assert 0 < len(cosines) < len(x)  # the fitted digits include confident ones, whose gradient vanishes
    assert value.item() == pytest.approx(1 - torch.stack(cosines).mean().item(), abs=1e-5)


def test_grad_align_penalty_gradient_flows_through_the_noisy_gradient_only(tiny):
    model, x, y = tiny
    x, y = x[:8], y[:8]
    params = [p for p in model.parameters()]
    torch.manual_seed(5)
    (ours,) = torch.autograd.grad(grad_align_penalty(model, x, y, 0.1), params[:1])
    # brute force: the same penalty with the clean gradient a constant and the noisy one differentiated per example
    torch.manual_seed(5)
    noise = torch.empty_like(x).uniform_(-0.1, 0.1)
    terms = []
    for i in range(len(x)):
        a = _grad(model, x[i], y[i]).detach()
        b = _grad(model, x[i] + noise[i], y[i], create_graph=True)
        if min(a.norm(), b.norm()) > MIN_GRADIENT_NORM:
            terms.append(1 - torch.dot(a.flatten(), b.flatten()) / (a.norm() * b.norm()))
    total = torch.stack(terms).mean()
    (expected,) = torch.autograd.grad(total, params[:1])
    assert torch.allclose(ours, expected, atol=1e-4, rtol=1e-3)  # float32 double backprop, summed in other orders


def test_grad_align_penalty_leaves_out_zero_gradients_and_keeps_its_gradient_finite():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    with torch.no_grad():
        model[1].bias.fill_(-100.0)  # every ReLU off for the first image's neighbourhood: its input gradient is 0
        model[1].weight.mul_(0.01)
    x, y = torch.rand(4, 1, 4, 4), torch.randint(0, 3, (4,))
    with torch.no_grad():
        model[1].bias[:4] = 0.0  # ... but on for the others through the first four units
        model[1].weight[:4] *= 100 * (torch.rand(4, 16) > 0.5)
    x[0] = 0.0
    value = grad_align_penalty(model, x, y, 0.0)  # no noise: the first image's gradients are 0 at both points
    grads = torch.autograd.grad(value, list(model.parameters()))
    assert torch.isfinite(value) and all(torch.isfinite(g).all() for g in grads)
    dead = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3, bias=True))
    with torch.no_grad():
        dead[1].weight.zero_()  # no input gradient anywhere: the penalty is 0 (the reference: NaN)
    assert grad_align_penalty(dead, x, y, 0.1).item() == 0.0


def test_local_linearity_error_equals_a_brute_force_loop(tiny):
    model, x, y = tiny
    x, y = x[:8], y[:8]
    model.eval()  # per-example forwards equal the batched one only without batch statistics (SmallCNN has none)
    torch.manual_seed(9)
    value = local_linearity_error(model, x, y, 0.1)
    torch.manual_seed(9)
    ab = x.repeat(2, 1, 1, 1)
    ab = ab + 0.1 * (2 * torch.rand(ab.shape) - 1)
    t = torch.rand(len(x))
    errors = []
    for i in range(len(x)):
        xa, xb = ab[i], ab[len(x) + i]
        xc = (1 - t[i]) * xa + t[i] * xb
        la, lb, lc = (F.cross_entropy(model(p[None]), y[i : i + 1]) for p in (xa, xb, xc))
        errors.append((lc - (1 - t[i]) * la - t[i] * lb) ** 2)
    model.train()
    assert value.item() == pytest.approx(torch.stack(errors).mean().item(), rel=1e-4, abs=1e-7)


def test_local_linearity_error_of_a_linear_loss_is_zero():
    # a loss linear in the input: the logits' class-0 score with a constant cross-entropy slope does not exist, so use
    # a model whose output makes CE linear: two classes whose logit difference is tiny keeps CE ~ linear
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    with torch.no_grad():
        model[1].weight.mul_(1e-3)
    x, y = torch.rand(6, 1, 4, 4), torch.randint(0, 2, (6,))
    assert local_linearity_error(model, x, y, 0.1).item() < 1e-12


def _reference_elle_a(errors, weight, decay, sensitivity):
    """LIONS-EPFL/ELLE's onoff schedule, as their train loop runs it: the weight each step's loss used."""
    lin_reg, values, used = 0.0, [], []
    for e in errors:
        used.append(lin_reg)
        if len(values) > 2 and e > np.mean(values) + sensitivity * np.std(values):
            lin_reg = weight
        else:
            lin_reg *= decay
        values.append(e)
    return used


def test_elle_a_schedule_equals_the_reference_loop():
    rng = np.random.default_rng(0)
    errors = list(rng.uniform(0, 1, 50) ** 4) + [5.0] + list(rng.uniform(0, 1, 30)) + [9.0, 0.1]
    reg = ELLE(weight=40.0, adaptive=True, decay=0.9, sensitivity=2.0)
    used = []
    for e in errors:
        used.append(float(reg.current_weight()))
        reg.after_step(torch.tensor(e, dtype=torch.float32))
    expected = _reference_elle_a([float(np.float32(e)) for e in errors], 40.0, 0.9, 2.0)
    assert used == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert max(used) == 40.0  # it switched on at least once


def test_elle_a_state_is_a_buffer_saved_in_the_state_dict():
    reg = ELLE(weight=10.0, adaptive=True)
    for e in (1.0, 1.0, 1.0, 50.0):
        reg.after_step(torch.tensor(e))
    restored = ELLE(weight=10.0, adaptive=True)
    restored.load_state_dict(reg.state_dict())
    assert float(restored.current_weight()) == float(reg.current_weight()) == 10.0


def test_elle_a_update_keeps_welford_statistics():
    state = torch.zeros(4, dtype=torch.float64)
    values = [0.5, 2.0, 1.5, 3.0]
    for v in values:
        state = elle_a_update(state, torch.tensor(v), 1.0, 0.99, 2.0)
    assert state[1].item() == 4
    assert state[2].item() == pytest.approx(np.mean(values))
    assert (state[3].item() / 4) ** 0.5 == pytest.approx(np.std(values))


def test_the_training_loss_uses_elle_a_weight_from_before_its_update(tiny):
    from robustrain.training import NFGSMTraining

    model, x, y = tiny
    reg = ELLE(weight=7.0, adaptive=True, sensitivity=0.0)
    reg.adaptive_state.copy_(torch.tensor([3.0, 5.0, 0.0, 0.0], dtype=torch.float64))  # a jump: 7 after this step
    module = NFGSMTraining(net=model, eps=0.1, regularizer=reg, eval_size=0)
    torch.manual_seed(1)
    extra = module.regularization(x[:8], y[:8])
    torch.manual_seed(1)
    penalty = local_linearity_error(model, x[:8], y[:8], 0.1)
    assert extra.dtype == torch.float32
    assert extra.item() == pytest.approx(3.0 * penalty.item(), rel=1e-6)
    assert float(reg.current_weight()) == 7.0


def test_elle_runs_in_float32_under_autocast(tiny):
    model, x, y = tiny
    torch.manual_seed(2)
    exact = local_linearity_error(model, x[:8], y[:8], 0.2)
    torch.manual_seed(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = local_linearity_error(model, x[:8], y[:8], 0.2)
    assert mixed.dtype == torch.float32 and mixed.item() == pytest.approx(exact.item(), rel=1e-6)


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: GradAlign(weight=-1.0), "weight"),
        (lambda: ELLE(decay=1.5), "decay"),
        (lambda: ELLE(sensitivity=-1), "sensitivity"),
    ],
)
def test_regularizers_refuse_bad_settings_by_name(make, name):
    with pytest.raises(ValueError, match=name):
        make()
