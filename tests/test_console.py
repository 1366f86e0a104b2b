"""robustrain.cli.console: real `train.py` runs print none of the notices known to be irrelevant, still print every
other warning, and print everything with --debug."""

import logging
import os
import subprocess
import sys
import warnings

import pytest
from conftest import REPO

from robustrain.cli.console import WEIGHTS_ONLY_NOTICES, quiet_console

TINY = [
    "--trainer.max_epochs", "1",
    "--trainer.limit_train_batches", "2",
    "--trainer.limit_val_batches", "1",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--model.init_args.eval_size", "10",
    "--model.init_args.eval_steps", "1",
]  # fmt: skip
TIPS = ("💡 Tip", "litlogger", "litmodels")
PYTREE = "`isinstance(treespec, LeafSpec)` is deprecated"
CKPT_NOTICES = ("Be aware that when using `ckpt_path`", "The dirpath has changed")


def train(workdir, *args: str, debug: bool = False) -> str:
    """stdout + stderr of `python train.py <args>` run in workdir (tiny, one thread); asserts it succeeded."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}
    env.pop("ROBUSTRAIN_DEBUG", None)
    cmd = [sys.executable, str(REPO / "train.py"), *args, *(["--debug"] if debug else [])]
    result = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A tiny main-job fit (its console output) and the folder holding its run."""
    workdir = tmp_path_factory.mktemp("quiet")
    return train(workdir, "fit", "--config", str(REPO / "configs/mnist5k_fgsm_aliasing.yaml"), *TINY), workdir


def test_fit_prints_no_tip_and_no_pytree_deprecation_but_other_warnings_and_the_summary(fitted) -> None:
    out, _ = fitted
    for noise in (*TIPS, PYTREE):
        assert noise not in out
    # another of Lightning's warnings, about this run's settings, still shows
    assert "is smaller than the logging interval Trainer(log_every_n_steps=10)" in out
    assert "robustrain: fit finished; run folder runs/mnist5k_fgsm_aliasing/version_0" in out


def test_test_with_a_checkpoint_prints_no_checkpoint_notices_unless_debugging(fitted) -> None:
    _, workdir = fitted
    args = [
        "test",
        "--config",
        str(REPO / "configs/mnist5k_standard.yaml"),
        "--ckpt_path",
        "runs/mnist5k_fgsm_aliasing",
        "--trainer.limit_test_batches",
        "1",
        "--trainer.enable_progress_bar",
        "false",
        "--model.init_args.eval_size",
        "0",
    ]
    quiet = train(workdir, *args)
    for noise in (*TIPS, PYTREE, *CKPT_NOTICES):
        assert noise not in quiet
    loud = train(workdir, *args, debug=True)  # the same run shows them all: the filters are what removed them
    for noise in ("💡 Tip", PYTREE, *CKPT_NOTICES):
        assert noise in loud


def test_the_filters_are_narrow_and_undone_on_exit() -> None:
    """A warning with the same words from another module, or another warning from the same module, still shows."""
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    filters_before = list(logger.filters)
    checkpoint_module = WEIGHTS_ONLY_NOTICES[1].module
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_console("test"):
            warnings.warn_explicit(PYTREE, FutureWarning, "elsewhere.py", 1, module="my_module")
            warnings.warn_explicit("something else", UserWarning, "model_checkpoint.py", 1, module=checkpoint_module)
            warnings.warn_explicit(
                WEIGHTS_ONLY_NOTICES[1].start + "a to b", UserWarning, "x.py", 1, module=checkpoint_module
            )
        warnings.warn_explicit(
            WEIGHTS_ONLY_NOTICES[1].start + "c to d", UserWarning, "x.py", 1, module=checkpoint_module
        )
    assert [str(w.message) for w in caught] == [PYTREE, "something else", WEIGHTS_ONLY_NOTICES[1].start + "c to d"]
    assert logger.filters == filters_before


def test_fit_keeps_the_checkpoint_notices() -> None:
    """Resuming a fit without a callback that wrote the checkpoint matters: only evaluations filter those notices."""
    notice = WEIGHTS_ONLY_NOTICES[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_console("fit"):
            warnings.warn_explicit(notice.start + ". Please add", UserWarning, "call.py", 1, module=notice.module)
        with quiet_console("test"):
            warnings.warn_explicit(notice.start + ". Please add", UserWarning, "call.py", 1, module=notice.module)
    assert len(caught) == 1
