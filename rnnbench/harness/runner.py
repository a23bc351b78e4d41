"""One cell -> one row: the single-process or the worker-group harness (docs/design.md).

The sweep's default runner.  A cell that asks for workers (``workers > 1``, or
``harness: group``) is timed by :mod:`rnnbench.harness.group`, any other by
:mod:`rnnbench.harness.single`; neither harness knows the other.
"""

from __future__ import annotations

from rnnbench.harness import allocator
from rnnbench.job.cell import Cell


def run_cell(cell: Cell, timeout_s: float | None = None) -> dict:
    """The cell's row; never raises for a failure of the cell itself.  Timed under
    :func:`rnnbench.harness.allocator.steady` (every step reuses its pages)."""
    allocator.steady()
    allocator.release()  # the heap earlier cells left behind: this cell's peak RSS is its own
    if cell.grouped:
        from rnnbench.harness import group

        return group.run_cell(cell, timeout_s=timeout_s)
    from rnnbench.harness import single

    return single.run_cell(cell, timeout_s=timeout_s)
