"""Tests of robustrain.spatial.surface: numpy.gradient parity, analytic planes, total variation, plots."""

import math

import numpy as np
import pytest
import torch

from robustrain.spatial import loss_surfaces, plot_heatmap, plot_surfaces, surface_gradients, surface_smoothness


@pytest.mark.parametrize("shape", [(3, 5, 7), (2, 2, 2), (1, 31, 25)])
def test_gradients_match_numpy_gradient(shape):
    z = torch.rand(*shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grad_0, grad_1 = surface_gradients(z)
    for i in range(shape[0]):
        expected_0, expected_1 = np.gradient(z[i].numpy())
        np.testing.assert_allclose(grad_0[i].numpy(), expected_0, rtol=0, atol=1e-15)
        np.testing.assert_allclose(grad_1[i].numpy(), expected_1, rtol=0, atol=1e-15)


def test_smoothness_matches_the_blog_numpy_formulas():
    z = torch.rand(4, 31, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    result = surface_smoothness(z)
    for i in range(4):
        gy, gx = np.gradient(z[i].numpy())
        magnitude = np.sqrt(gx**2 + gy**2)
        total_variation = np.abs(np.diff(z[i].numpy(), axis=0)).sum() + np.abs(np.diff(z[i].numpy(), axis=1)).sum()
        assert result.gradient_mean[i].item() == pytest.approx(magnitude.mean(), abs=1e-12)
        assert result.gradient_std[i].item() == pytest.approx(magnitude.std(), abs=1e-12)
        assert result.total_variation[i].item() == pytest.approx(total_variation, abs=1e-12)


def test_plane_has_constant_gradient_magnitude():
    rows = torch.arange(6, dtype=torch.float64).view(-1, 1)
    columns = torch.arange(4, dtype=torch.float64).view(1, -1)
    plane = (0.5 * rows - 2.0 * columns + 3.0).unsqueeze(0)  # (1, 6, 4)
    result = surface_smoothness(plane)
    assert result.gradient_mean.item() == pytest.approx(math.sqrt(0.5**2 + 2.0**2), abs=1e-12)
    assert result.gradient_std.item() == pytest.approx(0.0, abs=1e-12)
    assert result.total_variation.item() == pytest.approx(0.5 * 5 * 4 + 2.0 * 3 * 6, abs=1e-12)  # 10 + 36


def test_total_variation_of_hand_array():
    z = torch.tensor([[[0.0, 1.0, 3.0], [2.0, 2.0, 0.0]]])
    # axis 0: |2| + |1| + |-3| = 6; axis 1: |1| + |2| + |0| + |-2| = 5.
    assert surface_smoothness(z).total_variation.item() == 11.0


def test_surface_needs_two_values_per_axis():
    with pytest.raises(ValueError, match="at least 2"):
        surface_smoothness(torch.zeros(1, 1, 5))


def test_loss_surfaces_put_rotations_on_rows():
    loss = torch.arange(2 * 31 * 25, dtype=torch.float32).view(2, 775)
    z = loss_surfaces(loss, n_rotations=31)
    assert z.shape == (2, 31, 25)
    assert z[1, 3, 7].item() == 775 + 3 * 25 + 7
    with pytest.raises(ValueError, match="n_rotations=30"):
        loss_surfaces(loss, n_rotations=30)


def test_plot_surfaces_draws_one_image_per_surface():
    figure = plot_surfaces(torch.rand(3, 31, 5), titles=["a", "b", "c"], rotation_deg=torch.linspace(-30, 30, 31))
    images = [ax.images[0].get_array().shape for ax in figure.axes if ax.images]
    assert images == [(31, 5)] * 3
    assert figure.axes[1].get_title() == "b"
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert labels[0] == "-30" and labels[-1] == "30"  # rows labelled in degrees


def test_plot_surfaces_with_both_translation_axes_draws_a_panel_per_ty_in_pixels():
    t = torch.tensor([-3.0, -1.5, 0.0, 1.5, 3.0])
    figure = plot_surfaces(
        torch.rand(2, 31, 25), titles=["a", "b"], rotation_deg=torch.linspace(-30, 30, 31), translations_px=t
    )
    panels = [ax for ax in figure.axes if ax.images]
    assert len(panels) == 2 * 5 and panels[0].images[0].get_array().shape == (31, 5)
    assert panels[1].get_title() == "a, ty = -1.5 px"
    assert [x.get_text() for x in panels[0].get_xticklabels()] == ["-3", "-1.5", "0", "1.5", "3"]
    assert panels[0].get_xlabel() == "tx (px)" and panels[0].get_ylabel() == "rotation (deg)"


def test_plot_heatmap_has_a_panel_per_ty_with_tx_in_pixels_and_rotation_in_degrees():
    acc = torch.rand(31, 5, 5)  # [rotation, tx, ty]
    t = torch.tensor([-3.0, -1.5, 0.0, 1.5, 3.0])
    figure = plot_heatmap(acc, torch.linspace(-30, 30, 31), translations_px=t)
    panels = [ax for ax in figure.axes if ax.images]
    assert len(panels) == 5 and [ax.get_title() for ax in panels][2] == "ty = 0 px"
    # panel for ty index 3 shows acc[:, :, 3]: rotations down the rows, tx across
    assert torch.allclose(torch.tensor(panels[3].images[0].get_array().data), acc[:, :, 3])
    assert [x.get_text() for x in panels[0].get_xticklabels()] == ["-3", "-1.5", "0", "1.5", "3"]
    assert panels[0].get_ylabel() == "rotation (deg)"


def test_plot_heatmap_without_translations_keeps_the_flat_index():
    figure = plot_heatmap(torch.rand(31, 5, 5))
    assert figure.axes[0].images[0].get_array().shape == (31, 25)
