"""Seeds that depend only on (run seed, epoch, rank, stream): the basis of reproducible, exactly resumable epochs."""

import os
import random

import numpy as np
import torch

from robustrain.core.validation import check_choice, check_int


def global_seed() -> int:
    """Lightning's global seed (set by `seed_everything`), or a fresh random one when none was set."""
    seed = os.environ.get("PL_GLOBAL_SEED")
    return int(seed) if seed is not None else int.from_bytes(os.urandom(4), "little")


STREAMS = {"module": 0, "data": 1, "workers": 2}


def epoch_seed(run_seed: int, epoch: int, rank: int = 0, stream: str = "module") -> int:
    """A 32-bit seed that depends only on (run_seed, epoch, rank, stream), well mixed for neighbouring inputs.

    Streams keep independent draws apart: "module" seeds the global RNGs, "data" the training order, "workers" the
    data loader's worker processes.
    """
    for name, value in (("run_seed", run_seed), ("epoch", epoch), ("rank", rank)):
        check_int(name, value, 0)
    check_choice("stream", stream, STREAMS)
    return int(np.random.SeedSequence([run_seed, epoch, rank, STREAMS[stream]]).generate_state(1)[0])


def seed_all(seed: int) -> None:
    """Seeds Python's, NumPy's and torch's (CPU and every CUDA device) global RNGs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
