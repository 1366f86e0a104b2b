"""The pure pieces behind exact resume, safe loading and one-line errors (the end-to-end faults: test_faults.py)."""

import math

import pytest
import torch
from torch.utils.data import TensorDataset

from robustrain.checkpoints import latest_checkpoint, read_checkpoint, resolve_ckpt_path
from robustrain.data.image_datamodule import EpochShuffleSampler
from robustrain.errors import BadInputError, user_error_message
from robustrain.seeding import epoch_seed
from robustrain.training.safeguards import first_non_finite


def test_epoch_seeds_depend_only_on_their_inputs_and_differ_between_neighbours():
    assert epoch_seed(0, 3, 1) == epoch_seed(0, 3, 1)
    seeds = {
        epoch_seed(s, e, r, stream)
        for s in range(3)
        for e in range(3)
        for r in range(2)
        for stream in ("module", "data", "workers")
    }
    assert len(seeds) == 54  # no collisions, unlike seed + epoch (seed 0 epoch 1 == seed 1 epoch 0)
    with pytest.raises(ValueError, match="epoch=-1"):
        epoch_seed(0, -1)
    with pytest.raises(ValueError, match="stream='x'"):
        epoch_seed(0, 0, stream="x")


def test_the_sampler_order_is_a_function_of_seed_and_epoch_only():
    data = TensorDataset(torch.arange(10))
    fresh = EpochShuffleSampler(data, seed=5)
    orders = []
    for epoch in range(3):
        fresh.set_epoch(epoch)
        orders.append(list(fresh))
    assert sorted(orders[0]) == list(range(10)) and orders[0] != orders[1] != orders[2]
    resumed = EpochShuffleSampler(data, seed=5, epoch=2)  # built at the epoch a resumed run starts in
    assert list(resumed) == orders[2]
    assert list(EpochShuffleSampler(data, seed=6, epoch=2)) != orders[2]


def test_the_sampler_splits_an_epoch_over_ranks_without_overlap():
    data = TensorDataset(torch.arange(10))
    parts = [list(EpochShuffleSampler(data, seed=1, epoch=4, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(parts[0]) == len(parts[1]) == 5 and sorted(parts[0] + parts[1]) == list(range(10))
    assert (
        EpochShuffleSampler(data, 1, 4, 2, 0).generator.initial_seed()
        != EpochShuffleSampler(data, 1, 4, 2, 1).generator.initial_seed()
    )


def test_first_non_finite_names_the_tensor():
    assert first_non_finite([("a", torch.ones(2)), ("b", None), ("c", torch.tensor([1, 2]))]) is None
    assert first_non_finite([("a", torch.ones(2)), ("b", torch.tensor([0.0, math.inf]))]) == "b"
    assert first_non_finite([("a", torch.tensor([math.nan]))]) == "a"


def _make_run(root, versions):
    for n, with_ckpt in versions:
        folder = root / f"version_{n}" / "checkpoints"
        folder.mkdir(parents=True)
        if with_ckpt:
            torch.save({"epoch": n}, folder / "last.ckpt")


def test_last_is_the_newest_version_with_a_checkpoint(tmp_path):
    run = tmp_path / "runs" / "x"
    _make_run(run, [(0, True), (2, True), (10, True), (11, False)])  # version 11 failed before its first epoch
    assert latest_checkpoint(run) == (run / "version_10/checkpoints/last.ckpt", 10)  # 10 > 2: numbers, not text
    assert resolve_ckpt_path("last", run) == (run / "version_10/checkpoints/last.ckpt", 10)
    assert resolve_ckpt_path(str(run), None) == (run / "version_10/checkpoints/last.ckpt", 10)
    assert resolve_ckpt_path(str(run / "version_2"), None) == (run / "version_2/checkpoints/last.ckpt", 2)
    assert resolve_ckpt_path(str(run / "version_2/checkpoints/last.ckpt"), None)[1] == 2
    with pytest.raises(BadInputError, match="no run to resume"):
        resolve_ckpt_path("last", tmp_path / "runs" / "other")
    with pytest.raises(BadInputError, match="is a URL"):
        resolve_ckpt_path("s3://bucket/last.ckpt", run)


def test_read_checkpoint_refuses_pickled_objects_and_names_corrupt_files(tmp_path):
    torch.save({"epoch": 1, "w": torch.ones(2)}, tmp_path / "ok.ckpt")
    assert read_checkpoint(tmp_path / "ok.ckpt")["epoch"] == 1
    torch.save({"obj": torch.nn.Linear(1, 1)}, tmp_path / "module.ckpt")  # a whole module: needs full unpickling
    with pytest.raises(BadInputError, match="module.ckpt holds objects other than tensors"):
        read_checkpoint(tmp_path / "module.ckpt")
    (tmp_path / "cut.ckpt").write_bytes((tmp_path / "ok.ckpt").read_bytes()[:100])
    with pytest.raises(BadInputError, match="cut.ckpt is not a readable checkpoint"):
        read_checkpoint(tmp_path / "cut.ckpt")


def test_user_error_message_keeps_the_innermost_reason_and_its_key():
    try:
        try:
            try:
                raise ValueError("Expected a <class 'float'>. Got value: nan")
            except ValueError as inner:
                raise TypeError("Parser key \"eps\":\n  Expected a <class 'float'>. Got value: nan") from inner
        except TypeError as middle:
            raise ValueError("Problem with given class_path 'robustrain.training.FGSMTraining':\n  ...") from middle
    except ValueError as error:
        try:
            raise TypeError('Parser key "model":\n  Does not validate against any of the Union subtypes') from error
        except TypeError as outer:
            assert user_error_message(outer) == "model.init_args.eps: expected a float, got nan"
    own = ValueError("eps=2.0 must be in [0, 1]")
    assert user_error_message(own) == "eps=2.0 must be in [0, 1]"
    try:
        try:
            raise KeyError("hidden")
        except KeyError:
            raise BadInputError("x.ckpt is not a readable checkpoint") from None
    except BadInputError as error:
        assert user_error_message(error) == "x.ckpt is not a readable checkpoint"  # `from None` ends the chain
