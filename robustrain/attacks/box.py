"""The box the adversarial images stay in, and the affine map that lets [0, 1]-only attacks work in any box.

Images are in [0, 1] and so are their adversarial versions. Data can leave that range: injected features
(robustrain.data.injection) put pixels in [-beta, 1 + beta], and the attacks then keep the adversarial images in the
data's range (the datamodule's `input_range`). robustrain's own FGSM and PGD take the box as an argument. Attacks that
hard-code [0, 1] (torchattacks' APGD, FAB and Square, the reference AutoAttack) run on `UnitBoxModel`: the model seen
through x = low + z * (high - low), attacked in z in [0, 1] with radius eps / (high - low). The map is affine and the
same on every pixel, so an L-inf ball of radius eps around x is exactly the ball of radius eps / (high - low) around z,
and [0, 1] in z is exactly the box in x: the attack is unchanged, only its coordinates.
"""

import math

from torch import Tensor, nn

from robustrain.core.validation import check_that

UNIT_BOX = (0.0, 1.0)


def check_box(box: tuple[float, float]) -> None:
    """Raises ValueError naming `box` unless it is (low, high) with finite low < high."""
    ok = len(box) == 2 and all(isinstance(v, (int, float)) and math.isfinite(v) for v in box) and box[0] < box[1]
    check_that(ok, "box", tuple(box), "(low, high) with finite low < high, e.g. (0, 1) or a datamodule's input_range")


class UnitBoxModel(nn.Module):
    """`model` seen from [0, 1]: forward(z) = model(low + z * (high - low)).

    Args:
        model: The classifier on images in the box.
        box: (low, high) of its inputs.
    """

    def __init__(self, model: nn.Module, box: tuple[float, float]) -> None:
        super().__init__()
        check_box(box)
        self.model = model
        self.low, self.high = float(box[0]), float(box[1])

    @property
    def scale(self) -> float:
        return self.high - self.low

    def to_unit(self, images: Tensor) -> Tensor:
        """Images in the box -> [0, 1]."""
        return (images - self.low) / self.scale

    def from_unit(self, unit: Tensor) -> Tensor:
        """[0, 1] -> images in the box."""
        return unit * self.scale + self.low

    def forward(self, unit: Tensor) -> Tensor:
        return self.model(self.from_unit(unit))
