"""robustrain.train_eval_modes: every submodule's mode restored, also after an exception."""

import pytest

from robustrain.models import PreActResNet18
from robustrain.train_eval_modes import batchnorm_mode, eval_mode, preserved_modes


def test_mode_context_managers_restore_after_an_exception():
    net = PreActResNet18(num_classes=2, in_channels=1)
    net.layer3.eval()
    before = [m.training for m in net.modules()]
    for ctx in (eval_mode(net), batchnorm_mode(net, "train"), preserved_modes(net)):
        with pytest.raises(KeyError), ctx:
            net.train()
            raise KeyError("boom")
        assert [m.training for m in net.modules()] == before
