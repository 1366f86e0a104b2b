"""Tests of robustrain.spatial.transforms: rotate_translate against known answers, parameter grids, validation."""

import pytest
import torch
import torchvision.transforms.functional as TF

from robustrain.spatial import grid_parameters, random_parameters, rotate_translate


def _gaussian_blob(height: int, width: int, centre_x: float, centre_y: float, sigma: float = 1.2) -> torch.Tensor:
    rows = torch.arange(height, dtype=torch.float64).view(-1, 1)
    columns = torch.arange(width, dtype=torch.float64).view(1, -1)
    blob = torch.exp(-((columns - centre_x) ** 2 + (rows - centre_y) ** 2) / (2 * sigma**2))
    return blob.view(1, 1, height, width)  # (1, 1, H, W)


def _centroid(image: torch.Tensor) -> tuple[float, float]:
    height, width = image.shape[-2:]
    mass = image.sum()
    x = (image.sum(dim=-2).flatten() * torch.arange(width, dtype=image.dtype)).sum() / mass
    y = (image.sum(dim=-1).flatten() * torch.arange(height, dtype=image.dtype)).sum() / mass
    return float(x), float(y)


def _transform(x: torch.Tensor, rotation_deg: float, tx_px: float = 0.0, ty_px: float = 0.0) -> torch.Tensor:
    batch_size = x.shape[0]
    rotation = torch.full((batch_size,), rotation_deg, dtype=x.dtype)
    translation = torch.tensor([[tx_px, ty_px]], dtype=x.dtype).expand(batch_size, 2)
    return rotate_translate(x, rotation, translation)


@pytest.mark.parametrize("size", [(9, 9), (8, 8), (7, 12)])
def test_zero_transform_is_identity(size):
    x = torch.rand(3, 2, *size, generator=torch.Generator().manual_seed(0))
    assert (_transform(x, 0.0) - x).abs().max() <= 1e-6


def test_integer_translation_is_pixel_shift_with_zero_fill():
    x = torch.rand(2, 3, 8, 10, generator=torch.Generator().manual_seed(1))
    translation_px = torch.tensor([[2.0, 1.0], [-1.0, -3.0]])
    out = rotate_translate(x, torch.zeros(2), translation_px)
    expected = torch.zeros_like(x)
    expected[0, :, 1:, 2:] = x[0, :, :-1, :-2]  # content moves right 2, down 1
    expected[1, :, :-3, :-1] = x[1, :, 3:, 1:]  # content moves left 1, up 3
    assert (out - expected).abs().max() <= 1e-6


@pytest.mark.parametrize("size", [9, 8])
def test_plus_90_deg_equals_rot90_counter_clockwise(size):
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    inner = (..., slice(1, -1), slice(1, -1))  # borders may blend with the zero fill by float rounding
    plus = _transform(x, 90.0)
    minus = _transform(x, -90.0)
    assert (plus - torch.rot90(x, 1, dims=(-2, -1)))[inner].abs().max() <= 1e-5
    assert (minus - torch.rot90(x, -1, dims=(-2, -1)))[inner].abs().max() <= 1e-5


@pytest.mark.parametrize("rotation_deg", [7.0, -17.0, 30.0])
@pytest.mark.parametrize("translate_px", [(0, 0), (2, -1)])
def test_matches_torchvision_affine_with_opposite_angle_sign(rotation_deg, translate_px):
    # torchvision's positive angle is clockwise; ours is counter-clockwise. Measured gap ~1e-6.
    x = torch.rand(2, 3, 10, 10, generator=torch.Generator().manual_seed(3))
    ours = _transform(x, rotation_deg, *translate_px)
    theirs = TF.affine(
        x,
        angle=-rotation_deg,
        translate=list(translate_px),
        scale=1.0,
        shear=[0.0, 0.0],
        interpolation=TF.InterpolationMode.BILINEAR,
    )
    assert (ours - theirs).abs().max() <= 1e-5


@pytest.mark.parametrize("translate_px", [(1.5, -2.25), (0.3, 0.7), (-3.0, 2.0)])
def test_blob_centroid_moves_by_requested_translation(translate_px):
    blob = _gaussian_blob(24, 26, centre_x=12.3, centre_y=11.6)  # tails < 1e-12 at the borders
    moved = _transform(blob, 0.0, *translate_px)
    x_before, y_before = _centroid(blob)
    x_after, y_after = _centroid(moved)
    assert x_after - x_before == pytest.approx(translate_px[0], abs=1e-6)
    assert y_after - y_before == pytest.approx(translate_px[1], abs=1e-6)


def test_rotation_is_isotropic_and_counter_clockwise_on_non_square_images():
    height, width = 16, 32
    centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
    blob = _gaussian_blob(height, width, centre_x + 6.0, centre_y)  # 6 px right of the centre
    x_after, y_after = _centroid(_transform(blob, 30.0))
    # Counter-clockwise as displayed with y down: (6, 0) -> (6 cos 30, -6 sin 30) = (5.196, -3.0).
    assert x_after - centre_x == pytest.approx(5.196, abs=0.05)
    assert y_after - centre_y == pytest.approx(-3.0, abs=0.05)


def test_half_pixel_translation_averages_neighbours():
    x = torch.rand(1, 1, 6, 7, generator=torch.Generator().manual_seed(4))
    right = _transform(x, 0.0, 0.5, 0.0)
    down = _transform(x, 0.0, 0.0, 0.5)
    assert (right[..., 1:] - (x[..., 1:] + x[..., :-1]) / 2).abs().max() <= 1e-6
    assert (down[..., 1:, :] - (x[..., 1:, :] + x[..., :-1, :]) / 2).abs().max() <= 1e-6
    assert (right[..., 0] - x[..., 0] / 2).abs().max() <= 1e-6  # half of the zero fill


def test_gradient_reaches_rotation_and_translation():
    x = _gaussian_blob(12, 12, 7.0, 4.0).float()
    rotation = torch.tensor([5.0], requires_grad=True)
    translation = torch.tensor([[0.4, -0.3]], requires_grad=True)
    weight = torch.linspace(0, 1, 144).view(1, 1, 12, 12)
    (rotate_translate(x, rotation, translation) * weight).sum().backward()
    assert rotation.grad.abs().item() > 1e-4
    assert (translation.grad.abs() > 1e-4).all()


def test_grid_parameters_cifar_defaults_are_the_engstrom_grid():
    params = grid_parameters()
    assert params.shape == (775, 3)
    grid = params.view(31, 5, 5, 3)
    assert torch.equal(grid[:, 0, 0, 0], torch.arange(-30.0, 31.0, 2.0))
    assert torch.equal(grid[0, :, 0, 1], torch.tensor([-3.0, -1.5, 0.0, 1.5, 3.0]))
    assert torch.equal(grid[0, 0, :, 2], torch.tensor([-3.0, -1.5, 0.0, 1.5, 3.0]))
    assert torch.equal(params[387], torch.zeros(3))  # identity, exactly


def test_grid_parameters_odd_counts_include_exact_identity():
    params = grid_parameters(rotation_deg_range=0.7, n_rotations=7, translation_px_range=0.1, n_translations=3)
    assert (params == 0).all(dim=1).sum() == 1
    single = grid_parameters(rotation_deg_range=30.0, n_rotations=1, translation_px_range=3.0, n_translations=1)
    assert torch.equal(single, torch.zeros(1, 3))


def test_random_parameters_are_uniform_in_box_and_reproducible():
    first = random_parameters(4000, 30.0, 3.0, torch.Generator().manual_seed(5))
    second = random_parameters(4000, 30.0, 3.0, torch.Generator().manual_seed(5))
    assert torch.equal(first, second)
    assert (first.abs() <= torch.tensor([30.0, 3.0, 3.0])).all()
    assert first.mean(0).abs().max() < 0.6  # uniform on [-r, r]: mean 0, std r / sqrt(3)
    assert first.std(0) == pytest.approx(torch.tensor([30.0, 3.0, 3.0]) / 3**0.5, rel=0.05)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"rotation_deg_range": -1.0}, "rotation_deg_range"),
        ({"translation_px_range": -0.5}, "translation_px_range"),
        ({"n_rotations": 0}, "n_rotations"),
        ({"n_translations": -2}, "n_translations"),
    ],
)
def test_grid_parameters_reject_bad_values(kwargs, name):
    with pytest.raises(ValueError, match=name):
        grid_parameters(**kwargs)


def test_random_parameters_reject_bad_values():
    with pytest.raises(ValueError, match="n=0"):
        random_parameters(0)
    with pytest.raises(ValueError, match="rotation_deg_range=-5"):
        random_parameters(3, rotation_deg_range=-5.0)


def test_translation_larger_than_image_raises():
    x = torch.zeros(2, 1, 8, 10)
    with pytest.raises(ValueError, match=r"width=10"):
        rotate_translate(x, torch.zeros(2), torch.tensor([[0.0, 0.0], [10.5, 0.0]]))
    with pytest.raises(ValueError, match=r"height=8"):
        rotate_translate(x, torch.zeros(2), torch.tensor([[0.0, -9.0], [0.0, 0.0]]))


def test_wrong_parameter_shapes_raise():
    with pytest.raises(ValueError, match="rotation_deg"):
        rotate_translate(torch.zeros(2, 1, 4, 4), torch.zeros(3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="translation_px"):
        rotate_translate(torch.zeros(2, 1, 4, 4), torch.zeros(2), torch.zeros(2, 3))
