"""robustrain.signals.gradient_alignment: Andriushchenko & Flammarion's cosine, against known answers."""

import torch
import torch.nn.functional as F
from torch import nn

from robustrain.signals import cosine_per_example, gradient_alignment, input_gradients


def test_cosine_of_known_vectors_and_zero_rows():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [2.0, 0.0]])
    b = torch.tensor([[0.0, 1.0], [2.0, 2.0], [1.0, 0.0], [-1.0, 0.0]])
    assert torch.allclose(cosine_per_example(a, b), torch.tensor([0.0, 1.0, 1.0, -1.0]))


def test_a_linear_two_class_model_is_perfectly_aligned():
    # logits (w.x, 0): grad_x CE = (p_0 - 1[y = 0]) w, always a multiple of w with the same sign for a given label
    torch.manual_seed(0)
    w = torch.randn(1, 1, 4, 4)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([w.flatten(), torch.zeros(16)]))
    images, labels = torch.rand(8, 1, 4, 4), torch.randint(0, 2, (8,))
    cos = gradient_alignment(model, images, labels, eps=0.3, box=(-10.0, 10.0))
    assert torch.allclose(cos, torch.ones(8), atol=1e-6)


def test_matches_a_per_example_autograd_loop():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 10))
    images, labels = torch.rand(5, 1, 4, 4), torch.randint(0, 10, (5,))
    torch.manual_seed(7)
    cos = gradient_alignment(model, images, labels, eps=0.2)
    torch.manual_seed(7)
    noise = torch.empty_like(images).uniform_(-0.2, 0.2)
    for i in range(5):
        grads = []
        for point in (images[i : i + 1], (images[i : i + 1] + noise[i : i + 1]).clamp(0, 1)):
            x = point.clone().requires_grad_(True)
            F.cross_entropy(model(x), labels[i : i + 1]).backward()
            grads.append(x.grad.flatten())
        expected = F.cosine_similarity(grads[0], grads[1], dim=0)
        assert abs(cos[i].item() - expected.item()) < 1e-5


def test_per_example_gradients_do_not_depend_on_the_batch():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(9, 10))
    images, labels = torch.rand(6, 1, 3, 3), torch.randint(0, 10, (6,))
    together = input_gradients(model, images, labels)
    alone = torch.cat([input_gradients(model, images[i : i + 1], labels[i : i + 1]) for i in range(6)])
    assert torch.allclose(together, alone, atol=1e-7)


def test_no_noise_means_full_alignment_and_noise_stays_in_the_box():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(9, 16), nn.ReLU(), nn.Linear(16, 10))
    images, labels = torch.rand(4, 1, 3, 3), torch.randint(0, 10, (4,))
    assert torch.allclose(gradient_alignment(model, images, labels, eps=0.0), torch.ones(4), atol=1e-6)
    with torch.no_grad():  # works inside no_grad code (a monitor under validation)
        cos = gradient_alignment(model, images, labels, eps=0.5)
    assert cos.shape == (4,) and bool(((cos >= -1.0001) & (cos <= 1.0001)).all())
