"""Shared test set-up: fast CPU tests by default; `slow` runs only with --runslow, `gpu` only with CUDA."""

import contextlib
import io
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))  # the runs; configs/base/ holds what they share


def resolved_config(*args: str) -> dict:
    """The config the CLI would run with `args` (`--config` files and overrides), fully merged: `--print_config`."""
    from robustrain.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main([*args, "--print_config"], run=False)
    return yaml.safe_load(out.getvalue())


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


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    torch.set_num_threads(2)


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
