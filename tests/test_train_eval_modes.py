"""robustrain.core.train_eval_modes: every submodule's mode restored, also after an exception."""

import pytest

from robustrain.core.train_eval_modes import batchnorm_mode, eval_mode, preserved_modes
from robustrain.models import PreActResNet18


def test_mode_context_managers_restore_after_an_exception():
    net = PreActResNet18(num_classes=2, in_channels=1)
    net.layer3.eval()
    before = [m.training for m in net.modules()]
    for ctx in (eval_mode(net), batchnorm_mode(net, "train"), preserved_modes(net)):
        with pytest.raises(KeyError), ctx:
            net.train()
            raise KeyError("boom")
        assert [m.training for m in net.modules()] == before


def test_batch_statistics_normalise_each_batch_and_leave_the_running_statistics_alone():
    import torch
    from torch import nn

    from robustrain.core.train_eval_modes import batch_statistics, probe_mode

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Dropout(0.5))
    net.train()
    net(torch.randn(8, 1, 6, 6))  # some running statistics
    bn = net[1]
    buffers = {k: v.clone() for k, v in bn.state_dict().items()}
    x = torch.randn(5, 1, 6, 6) * 3 + 2
    with batch_statistics(net):
        assert bn.training and not net[2].training  # dropout stays off
        out = net(x)
    feature = net[0](x)
    expected = (feature - feature.mean((0, 2, 3), keepdim=True)) / torch.sqrt(
        feature.var((0, 2, 3), unbiased=False, keepdim=True) + bn.eps
    )
    expected = expected * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
    assert torch.allclose(out, expected, atol=1e-5)
    assert all(torch.equal(bn.state_dict()[k], v) for k, v in buffers.items())
    assert bn.track_running_stats and all(m.training for m in net.modules())
    with probe_mode(net, "eval"):
        assert not bn.training
    with pytest.raises(ValueError, match="batchnorm='both'"):
        with probe_mode(net, "both"):
            pass
