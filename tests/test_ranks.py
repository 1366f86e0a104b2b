"""robustrain.core.ranks: each DDP rank's share of a fixed number of evaluation images."""

import pytest

from robustrain.core.ranks import rank_share


@pytest.mark.parametrize(("total", "world", "share"), [(100, 1, 100), (100, 2, 50), (100, 3, 34), (1, 4, 1), (0, 2, 0)])
def test_rank_share_rounds_up_so_all_ranks_together_take_the_total(total, world, share):
    assert rank_share(total, world) == share
    assert rank_share(total, world) * world >= total > rank_share(total, world) * world - world
