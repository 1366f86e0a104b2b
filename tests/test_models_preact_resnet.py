"""robustrain.models.preact_resnet: the shortcut variants and a checked width."""

import pytest
import torch

from robustrain.models import PreActResNet18


def test_preact_shortcut_variant_changes_what_the_shortcut_sees():
    torch.manual_seed(0)
    raw = PreActResNet18(preact_shortcut=False).eval()
    pre = PreActResNet18(preact_shortcut=True).eval()
    pre.load_state_dict(raw.state_dict())
    x = torch.rand(2, 3, 32, 32)
    assert not torch.allclose(raw(x), pre(x))


@pytest.mark.parametrize("bad", [0, -8, 2.5, True])
def test_bad_preact_resnet_width_raises_naming_it(bad):
    from robustrain.models import PreActResNet18

    with pytest.raises(ValueError, match="width="):
        PreActResNet18(width=bad)
