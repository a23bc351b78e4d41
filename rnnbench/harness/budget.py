"""A cell's memory, estimated before anything is allocated, against the node's.

A cell far too large for the node (τ = 10⁸, say) must not allocate its way into the
kernel's OOM killer or Ray's memory monitor — four times, with retries — before it
gives a row.  So it is refused first: its estimate is the strategy's bytes kept for
backward (:attr:`rnnbench.core.strategies.Strategy.saved_bytes`, the analytic figure the
tests check against the measured one) twice over (the forward's transients and the
backward's gradients of the same size), the inputs, a scan's τ·B·H² Jacobians (three
live at once in its levels), the parameters with their gradient and Adam's two moments,
and a fixed allowance for the runtime.  A figure for refusing the hopeless, not for
packing a node tight.
"""

from __future__ import annotations

import os

from rnnbench.core import strategies
from rnnbench.facts import TIME_SPLIT_SOLVERS
from rnnbench.job.cell import Cell

RUNTIME_BYTES = 512 * 2**20  # torch, the interpreter, Ray's worker: what any cell costs


def estimate_bytes(cell: Cell) -> int:
    """The cell's peak memory, estimated from its configuration alone (bytes)."""
    task = cell.make_task()
    item = 8 if cell.dtype == "float64" else 4
    T, B, H, n_out, n_in = cell.tau, cell.batch, cell.hidden, task.n_out, task.n_in
    n_rec = n_out if cell.model == "jordan" else H
    P = H * n_in + H * n_rec + n_out * H + H + n_out
    s = strategies.get(cell.strategy)
    saved = s.saved_bytes(cell.model, dict(cell.strategy_options), T, B, H, n_out, P, item)
    inputs = T * B * (n_in * item + 8)  # x in the model's dtype, y as int64
    jacobians = 3 * T * B * H * H * item if cell.strategy in TIME_SPLIT_SOLVERS else 0
    per_worker = (2 * saved + inputs + jacobians) // max(1, cell.workers)
    return int(per_worker + 4 * P * item + RUNTIME_BYTES)


def node_bytes() -> int | None:
    """This node's memory: physical memory, or the cgroup's limit when that is lower
    (None where neither can be read)."""
    limits = []
    try:
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit():
            limits.append(int(text))
    return min(limits) if limits else None


def too_large(cell: Cell) -> str | None:
    """Why the cell cannot fit this node's memory (None when it may): the estimate and
    the node's memory, in one line."""
    need, have = estimate_bytes(cell), node_bytes()
    if have is None or need <= have:
        return None
    return (
        f"memory: the cell needs about {need / 2**30:.1f} GiB (estimated from its "
        f"strategy's saved bytes, inputs and optimizer state), the node has "
        f"{have / 2**30:.1f} GiB; refused before allocating"
    )
