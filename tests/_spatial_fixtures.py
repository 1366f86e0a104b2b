"""A tiny counting network for the spatial tests (robustrain.spatial.grid and first_order)."""

import torch
from torch import nn


class CountingNet(nn.Module):
    """Tiny conv net on (N, 3, 8, 8) images, 5 classes, counting the images it is given."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(2)
            self.layers = nn.Sequential(
                nn.Conv2d(3, 6, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(6, 6, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.Flatten(),
                nn.Linear(6 * 4 * 4, 5),
            )
        self.images_seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images_seen += x.shape[0]
        return self.layers(x)
