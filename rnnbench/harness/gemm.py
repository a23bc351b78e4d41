"""The node's measured GEMM rate: the speed a compute-bound step would run at.

``flops / (gemm_gflops * 1e9)`` seconds is the time a step's FLOPs would take
as one large matrix product; a step's time over it says how far the step is
from the hardware (per-step overhead, memory traffic, sequential depth).
"""

from __future__ import annotations

import time

import torch

SIZE = 1024  # square matrices: large enough for the BLAS's peak, small enough to be quick
REPEATS = 5

_RATES: dict[tuple, float] = {}


def gflops(dtype: str = "float32", device: str = "cpu") -> float:
    """GFLOP/s of a SIZE x SIZE ``torch.mm`` in ``dtype`` on ``device`` at torch's
    current thread count: the best of REPEATS runs after one warm-up, measured
    once per process for each (device, dtype, threads)."""
    key = (device, dtype, torch.get_num_threads())
    if key not in _RATES:
        _RATES[key] = _measure(getattr(torch, dtype), torch.device(device))
    return _RATES[key]


def _measure(dtype: torch.dtype, device: torch.device) -> float:
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.rand(SIZE, SIZE, generator=gen, dtype=dtype).to(device) for _ in range(2))
    out = torch.empty_like(a)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    best = float("inf")
    for i in range(REPEATS + 1):
        sync()
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        sync()
        if i:  # the first run is the warm-up
            best = min(best, time.perf_counter() - start)
    return 2 * SIZE**3 / best / 1e9
