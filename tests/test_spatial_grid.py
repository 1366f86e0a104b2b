"""robustrain.spatial.grid: batched grid, random and worst-of-k evaluation on a tiny net, against brute-force loops."""

import pytest
import torch
import torch.nn.functional as F
from _spatial_fixtures import CountingNet

from robustrain.spatial import (
    evaluate_transforms,
    grid_accuracy,
    grid_parameters,
    per_transform_accuracy,
    random_accuracy,
    random_parameters,
    rotate_translate,
    select_worst,
    worst_of_k,
    worst_of_k_accuracy,
)

SMALL_GRID = grid_parameters(rotation_deg_range=30.0, n_rotations=7, translation_px_range=2.0, n_translations=3)


def _brute_force(cnet, x, y, params):
    loss = torch.zeros(x.shape[0], params.shape[0])
    correct = torch.zeros(x.shape[0], params.shape[0], dtype=torch.bool)
    with torch.no_grad():
        for i in range(x.shape[0]):
            for t in range(params.shape[0]):
                image = rotate_translate(x[i : i + 1], params[t : t + 1, 0], params[t : t + 1, 1:])
                logits = cnet(image)
                loss[i, t] = F.cross_entropy(logits, y[i : i + 1])
                correct[i, t] = logits.argmax(dim=1).item() == y[i].item()
    return loss, correct


def test_grid_evaluation_equals_brute_force_loop(cnet, cbatch):
    x, y = cbatch
    result = evaluate_transforms(cnet, x, y, SMALL_GRID, chunk_size=10)
    loss, correct = _brute_force(cnet, x, y, SMALL_GRID)
    assert torch.equal(result.correct, correct)
    assert torch.allclose(result.loss, loss, atol=1e-5)
    assert torch.equal(result.robust_correct, correct.all(dim=1))
    assert grid_accuracy(cnet, x, y, SMALL_GRID).item() == pytest.approx(0.625)  # 5 of 8, fixed seed
    assert 0.0 < correct.float().mean().item() < 1.0


@pytest.mark.parametrize("chunk_size", [1, 7, 63, 1000])
def test_grid_results_do_not_depend_on_chunk_or_batch_size(cnet, cbatch, chunk_size):
    x, y = cbatch
    reference = evaluate_transforms(cnet, x, y, SMALL_GRID, chunk_size=10)
    whole = evaluate_transforms(cnet, x, y, SMALL_GRID, chunk_size=chunk_size)
    halves = [evaluate_transforms(cnet, x[s], y[s], SMALL_GRID, chunk_size) for s in (slice(0, 3), slice(3, 8))]
    assert torch.equal(whole.correct, reference.correct)
    assert torch.equal(torch.cat([h.correct for h in halves]), reference.correct)
    assert torch.allclose(torch.cat([h.loss for h in halves]), reference.loss, atol=1e-5)


def test_chunk_bounds_images_per_forward(cbatch):
    x, y = cbatch
    sizes = []
    net = CountingNet()
    net.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    evaluate_transforms(net, x, y, SMALL_GRID, chunk_size=10)
    assert max(sizes) == 8 * 10
    assert sum(sizes) == 8 * 63


def test_early_exit_gives_same_grid_accuracy_with_fewer_forwards(cnet, cbatch):
    x, y = cbatch
    full = evaluate_transforms(cnet, x, y, SMALL_GRID, chunk_size=5)
    cnet.images_seen = 0
    early = evaluate_transforms(cnet, x, y, SMALL_GRID, chunk_size=5, early_exit=True)
    assert torch.equal(early.robust_correct, full.robust_correct)
    assert early.loss is None and early.correct is None
    assert cnet.images_seen < 8 * 63  # fooled images were dropped
    early_accuracy = grid_accuracy(cnet, x, y, SMALL_GRID, early_exit=True)
    assert early_accuracy == grid_accuracy(cnet, x, y, SMALL_GRID, early_exit=False)


def test_per_transform_accuracy_is_mean_over_copies(cnet, cbatch):
    x, y = cbatch
    mean, accuracy = per_transform_accuracy(cnet, x, y, 30.0, 7, 2.0, 3, chunk_size=16)
    _, correct = _brute_force(cnet, x, y, SMALL_GRID)
    assert accuracy.shape == (7, 3, 3)
    assert torch.allclose(accuracy.flatten(), correct.float().mean(dim=0))
    assert mean.item() == pytest.approx(correct.float().mean().item())
    assert accuracy[3, 1, 1].item() == 1.0  # identity: the labels are the clean predictions


def test_random_accuracy_uses_one_transform_per_image(cnet, cbatch):
    x, y = cbatch
    accuracy = random_accuracy(cnet, x, y, 30.0, 2.0, torch.Generator().manual_seed(7))
    params = random_parameters(8, 30.0, 2.0, torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = (cnet(rotate_translate(x, params[:, 0], params[:, 1:])).argmax(1) == y).float().mean()
    assert accuracy.item() == pytest.approx(expected.item())


def test_evaluation_leaves_model_mode_alone(cnet, cbatch):
    x, y = cbatch
    cnet.train()
    grid_accuracy(cnet, x, y, SMALL_GRID)
    worst_of_k_accuracy(cnet, x, y, k=3)
    assert cnet.training
    cnet.eval()
    grid_accuracy(cnet, x, y, SMALL_GRID)
    assert not cnet.training


def test_select_worst_prefers_misclassified_then_highest_loss():
    loss = torch.tensor([[0.1, 0.9, 0.5, 0.7], [0.2, 0.8, 0.3, 0.8], [0.4, 0.4, 0.1, 0.0]])
    correct = torch.tensor([[True, True, False, False], [True, True, True, True], [True, True, True, False]])
    assert select_worst(loss, correct, "misclassified_then_loss").tolist() == [3, 1, 3]
    assert select_worst(loss, correct, "loss").tolist() == [1, 1, 0]  # ties go to the first


def test_select_worst_rejects_unknown_rule():
    with pytest.raises(ValueError, match=r"rule='max'.*misclassified_then_loss.*'loss'"):
        select_worst(torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool), "max")


def test_worst_of_k_rejects_k_below_one(cnet, cbatch):
    x, y = cbatch
    with pytest.raises(ValueError, match="k=0"):
        worst_of_k(cnet, x, y, k=0)


@pytest.mark.parametrize("rule", ["misclassified_then_loss", "loss"])
@pytest.mark.parametrize("include_identity", [False, True])
def test_worst_of_k_picks_the_brute_force_worst_candidate(cnet, cbatch, rule, include_identity):
    x, y = cbatch
    k = 6
    params, correct = worst_of_k(
        cnet, x, y, k, 30.0, 2.0, rule, include_identity, torch.Generator().manual_seed(3), chunk_size=4
    )
    candidates = random_parameters(8 * k, 30.0, 2.0, torch.Generator().manual_seed(3)).view(8, k, 3)
    if include_identity:
        candidates = torch.cat([torch.zeros(8, 1, 3), candidates], dim=1)
    losses, corrects = zip(*(_brute_force(cnet, x[i : i + 1], y[i : i + 1], candidates[i]) for i in range(8)))
    index = select_worst(torch.cat(losses), torch.cat(corrects), rule)
    assert torch.equal(params, candidates[torch.arange(8), index])
    assert torch.equal(correct, torch.cat(corrects)[torch.arange(8), index])
    accuracy = worst_of_k_accuracy(cnet, x, y, k, 30.0, 2.0, rule, include_identity, torch.Generator().manual_seed(3))
    assert accuracy.item() == pytest.approx(correct.float().mean().item())
    assert accuracy.item() <= 1.0 - 1 / 8  # at least one image is fooled by its worst draw (fixed seed)


@pytest.mark.parametrize("axes", ["x", "y"])
def test_one_axis_grid_is_the_full_grid_at_zero_on_the_other_axis(axes):
    from robustrain.spatial import grid_shape

    full = grid_parameters(30.0, 3, 2.0, 5).view(*grid_shape(3, 5), 3)  # (R, Ntx, Nty, 3)
    one = grid_parameters(30.0, 3, 2.0, 5, translation_axes=axes).view(*grid_shape(3, 5, axes), 3)  # (R, N, 3)
    expected = full[:, :, 2] if axes == "x" else full[:, 2, :]
    assert torch.equal(one, expected)
    assert (one[..., 2 if axes == "x" else 1] == 0).all()


def test_evaluate_transforms_refuses_a_translation_larger_than_the_image_before_any_forward(cnet, cbatch):
    x, y = cbatch
    params = torch.tensor([[0.0, 0.0, 0.0], [10.0, 9.0, 0.0]])  # tx = 9 px on 8 px wide images
    with pytest.raises(ValueError, match=r"translation_px=\[9.0, 0.0\].*larger than the image"):
        evaluate_transforms(cnet, x, y, params, chunk_size=1)
    assert cnet.images_seen == 8  # only the fixture's clean forward


def test_shared_transforms_give_the_same_results_as_the_same_transforms_per_example(cnet, cbatch):
    x, y = cbatch
    shared = evaluate_transforms(cnet, x, y, SMALL_GRID, chunk_size=7)
    per_example = evaluate_transforms(cnet, x, y, SMALL_GRID.expand(len(x), -1, -1), chunk_size=7)
    torch.testing.assert_close(shared.loss, per_example.loss, rtol=1e-6, atol=1e-6)
    assert torch.equal(shared.correct, per_example.correct)
