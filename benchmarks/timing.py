"""The one timer of the benchmarks: wall seconds of a call, with CUDA work finished before and after it."""

import time
from collections.abc import Callable

import torch


def now(device: torch.device) -> float:
    """perf_counter once the work queued on `device` has finished (CUDA synchronised; a CPU has no queue)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds `fn()` takes on `device` (CUDA synchronised on both sides, so queued kernels are counted)."""
    start = now(device)
    fn()
    return now(device) - start
