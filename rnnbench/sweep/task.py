"""The body of one cell's Ray task, in a module of its own: a worker imports the module of
the function it runs, so this one imports only what a cell needs (the driver's store,
pandas and scipy cost a fresh process about a second of start-up)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rnnbench import raysession
from rnnbench.facts import FAILED
from rnnbench.harness.row import failure_row
from rnnbench.job.cell import Cell
from rnnbench.sweep import registry as reg


def execute(runner: Callable, cell: Cell, registry: Any) -> dict:
    """Run ``cell`` with ``runner`` on this worker: torch on the task's CPUs, the node's
    registry told when it starts and ends (its attempt and its neighbours), and where it
    ran."""
    import ray
    import torch

    ctx = ray.get_runtime_context()
    cpus = ctx.get_assigned_resources().get("CPU", 0)
    torch.set_num_threads(max(1, int(cpus)))  # Ray reuses workers: set it every time
    reg.ask(registry.enter.remote(cell.cell_id, ctx.get_node_id()), None)
    start = time.perf_counter()
    try:
        row = runner(cell)
    finally:
        attempt, neighbours = reg.ask(registry.leave.remote(cell.cell_id), (None, None))
    if not isinstance(row, dict):
        row = failure_row(cell, FAILED, f"runner returned {type(row).__name__}, not a row")
    row = dict(row)
    row.setdefault("wall_s", time.perf_counter() - start)
    row.update(cell_id=cell.cell_id, attempt=attempt, neighbours=neighbours)
    # where it ran (a worker-group cell's runner already named its rank 0's node)
    if not row.get("node_id"):
        row.update(node_id=ctx.get_node_id(), node_ip=raysession.node_ip())
    return row
