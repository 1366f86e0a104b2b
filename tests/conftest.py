"""Shared test set-up: fast CPU tests by default; `slow` runs only with --runslow, `gpu` only with CUDA; the models
and digits that several test modules share (built once per module)."""

import contextlib
import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))  # the runs; configs/base/ holds what they share
FAST_AA = {"steps": 3, "square_queries": 10, "n_target_classes": 2}  # AutoAttack settings for quick tests


def resolved_config(*args: str) -> dict:
    """The config the CLI would run with `args` (`--config` files and overrides), fully merged: `--print_config`."""
    from robustrain.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main([*args, "--print_config"], run=False)
    return yaml.safe_load(out.getvalue())


@contextlib.contextmanager
def lightning_messages() -> Iterator[list[str]]:
    """The messages logged to Lightning's logger while the block runs (rank_zero_info goes there; that logger does not
    propagate to the root, so caplog does not see it)."""

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    messages: list[str] = []
    handler, logger = Collect(), logging.getLogger("lightning.pytorch")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def lightning_log() -> Iterator[list[str]]:
    """The messages of Lightning's logger during the test (see lightning_messages)."""
    with lightning_messages() as messages:
        yield messages


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    skip_slow = pytest.mark.skip(reason="slow: use --runslow")
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


# one torch thread per pytest-xdist worker (the workers already share the cores), two without xdist
THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    torch.set_num_threads(THREADS)


@pytest.fixture(scope="session")
def mnist_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """64 real MNIST5k training digits (un-augmented), the same every run."""
    from robustrain.data import MNIST5k

    return MNIST5k().probe_set(64, seed=0)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Runs the test inside tmp_path, so configs' relative `runs/` paths land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def trained_cnn(mnist_batch):
    """A SmallCNN fitted for a few steps on real digits, so its loss surface is not flat."""
    from robustrain.models import SmallCNN

    torch.manual_seed(0)
    net = SmallCNN()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x, y = mnist_batch
    for _ in range(30):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def tiny(mnist_batch) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A tiny SmallCNN fitted to 32 digits (accurate on most of them), left in train mode, and those digits."""
    from robustrain.models import SmallCNN

    torch.manual_seed(0)
    images, labels = mnist_batch[0][:32], mnist_batch[1][:32]
    model = SmallCNN(channels=(4, 8), hidden=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = F.cross_entropy(model(images), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, images, labels


@pytest.fixture
def cnet():
    """A counting net: a tiny conv net on (N, 3, 8, 8) images, 5 classes, counting the images it is given."""
    from _spatial_fixtures import CountingNet

    return CountingNet()


@pytest.fixture
def cbatch(cnet) -> tuple[torch.Tensor, torch.Tensor]:
    """8 random (3, 8, 8) images and cnet's own predictions as labels (clean accuracy 100%)."""
    x = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = cnet(x).argmax(dim=1)
    return x, y


@pytest.fixture
def tiny_cnn():
    """An untrained SmallCNN with 4 / 8 channels and 16 hidden units (seed 0)."""
    from robustrain.models import SmallCNN

    torch.manual_seed(0)
    return SmallCNN(channels=(4, 8), hidden=16)
