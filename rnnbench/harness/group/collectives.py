"""What the worker group's collectives cost: all-reduce and all-gather timed at a few
message sizes when the group starts, each fitted to t = latency + bytes / bandwidth.

Timed in each worker (:meth:`~.worker.Worker.collectives`) on the group's own process
group (gloo on CPU, NCCL on CUDA), after a barrier per sample so that every rank starts
together; the group keeps, per size, the slowest rank's median (a collective ends when
its last rank does).  ``bytes`` is the message one rank contributes: the all-reduced
tensor's size, or one rank's piece of an all-gather.  The fit is ordinary least squares
of seconds on bytes over the sizes; its intercept is the collective's latency and the
inverse of its slope its bandwidth, both at this group's number of ranks
(:mod:`rnnbench.report.scaling` turns them into a network's per-link latency and
bandwidth).
"""

from __future__ import annotations

import math

import numpy as np

# the bytes one rank contributes (float32 elements x 4): a scalar's pair, a small
# gradient, a summary matrix's size, a large one
SIZES = (8, 4096, 65536, 1048576)
REPEATS = 7  # samples per size and collective (after one untimed)
KINDS = ("allreduce", "allgather")


def fit(nbytes, seconds) -> tuple[float, float]:
    """(latency s, bandwidth bytes/s) of t = latency + bytes / bandwidth, least squares.

    The bandwidth is inf when the slope is not positive (time did not grow with size)
    and NaN with fewer than two distinct sizes; the latency is then the mean time."""
    x = np.asarray(nbytes, dtype=float)
    y = np.asarray(seconds, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(np.unique(x)) < 2:
        return (float(y.mean()) if len(y) else math.nan), math.nan
    slope, intercept = np.polyfit(x, y, 1)
    return float(intercept), (float(1.0 / slope) if slope > 0 else math.inf)


def row_fields(per_rank: list[dict[str, list[float]]], sizes=SIZES) -> dict:
    """The row's collective fields from every rank's medians (seconds per size):
    the slowest rank's per size, and each collective's fit."""
    out: dict = {"coll_bytes": [float(s) for s in sizes]}
    for kind in KINDS:
        slowest = [max(r[kind][i] for r in per_rank) for i in range(len(sizes))]
        out[f"{kind}_s"] = slowest
        out[f"{kind}_latency_s"], out[f"{kind}_bandwidth_Bps"] = fit(sizes, slowest)
    return out


def time_collectives(dist, now, device: str, sizes=SIZES, repeats: int = REPEATS) -> dict:
    """This rank's median seconds of each collective at each size (``dist``: an
    initialised torch.distributed; ``now``: the clock, synchronising on CUDA)."""
    import torch

    world = dist.get_world_size()
    out: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for nbytes in sizes:
        t = torch.zeros(max(1, nbytes // 4), dtype=torch.float32, device=device)
        pieces = [torch.empty_like(t) for _ in range(world)]
        for kind in KINDS:
            samples = []
            for i in range(repeats + 1):
                dist.barrier()
                t0 = now()
                if kind == "allreduce":
                    dist.all_reduce(t)
                else:
                    dist.all_gather(pieces, t)
                if i:
                    samples.append(now() - t0)
            out[kind].append(float(np.median(samples)))
    return out
