"""Shift consistency (Zhang 2019): how often two random integer shifts of an image get the same top-1 class."""

import torch
from torch import Tensor, nn

from robustrain.spatial.transforms import rotate_translate


def shift_consistency(model: nn.Module, x: Tensor, max_shift_px: int, pairs: int, mask: Tensor, generator) -> Tensor:
    """Per image, the number of `pairs` pairs of random integer shifts with the same top-1 class; (B,) long.

    Each shift (tx, ty) is uniform over the integers in [-max_shift_px, max_shift_px] on the axes `mask` keeps.
    """
    batch_size = x.shape[0]
    shifts = torch.randint(
        -max_shift_px, max_shift_px + 1, (2, batch_size * pairs, 2), generator=generator, device=x.device
    ).to(x.dtype) * mask[1:].to(x)  # (2, B*P, 2)
    images = x.repeat_interleave(pairs, dim=0)  # (B, C, H, W) -> (B*P, C, H, W)
    no_rotation = x.new_zeros(batch_size * pairs)
    with torch.no_grad():
        first = model(rotate_translate(images, no_rotation, shifts[0])).argmax(dim=1)  # (B*P,)
        second = model(rotate_translate(images, no_rotation, shifts[1])).argmax(dim=1)  # (B*P,)
    return (first == second).view(batch_size, pairs).sum(dim=1)  # (B*P,) -> (B,)
