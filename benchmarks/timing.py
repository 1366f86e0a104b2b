"""The one timer of the benchmarks: wall seconds of a call, with CUDA work finished before and after it."""

import time
from collections.abc import Callable

import torch


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds `fn()` takes on `device` (CUDA synchronised on both sides, so queued kernels are counted)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start
