"""robustrain.spatial.shift_consistency: one for a shift-invariant model."""

import torch
import torch.nn.functional as F


def test_shift_consistency_is_one_for_a_shift_invariant_model():
    from robustrain.evaluation import shift_consistency

    class GlobalSum(torch.nn.Module):  # the class is the argmax of per-channel sums: integer shifts within zero fill
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # of a centred blob do not change it
            return F.pad(x.sum(dim=(2, 3)), (0, 2))

    x = torch.zeros(4, 3, 16, 16)
    x[:, :, 6:10, 6:10] = torch.rand(4, 3, 1, 1)
    consistent = shift_consistency(GlobalSum(), x, 3, pairs=5, mask=torch.ones(3), generator=torch.Generator())
    assert consistent.tolist() == [5, 5, 5, 5]
