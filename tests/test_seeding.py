"""robustrain.core.seeding: epoch seeds depend only on their inputs."""

import pytest

from robustrain.core.seeding import epoch_seed


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
