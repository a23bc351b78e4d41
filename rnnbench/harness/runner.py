"""One cell -> one row: the single-process or the worker-group harness (docs/design.md).

The sweep's default runner.  A cell that asks for workers (``workers > 1``, or
``harness: group``) is timed by :mod:`rnnbench.harness.group`, any other by
:mod:`rnnbench.harness.single`; neither harness knows the other.  Either way the row
records how much of the machine the cell got (:func:`rnnbench.harness.procstat.contention`).
"""

from __future__ import annotations

from rnnbench.facts import FAILED, node_cpus
from rnnbench.harness import allocator, budget, procstat
from rnnbench.harness.row import failure_row
from rnnbench.job.cell import Cell
from rnnbench.results.rows import Row


def run_cell(cell: Cell, timeout_s: float | None = None) -> Row:
    """The cell's row; never raises for a failure of the cell itself.  Timed under
    :func:`rnnbench.harness.allocator.steady` (every step reuses its pages)."""
    allocator.steady()
    allocator.release()  # the heap earlier cells left behind: this cell's peak RSS is its own
    if (why := budget.too_large(cell)) is not None:
        return failure_row(cell, FAILED, why)  # before anything is allocated
    before = procstat.Snapshot.now()
    if cell.grouped:
        from rnnbench.harness import group

        row = group.run_cell(cell, timeout_s=timeout_s)
    else:
        from rnnbench.harness import single

        row = single.run_cell(cell, timeout_s=timeout_s)
    row.update(procstat.contention(before, procstat.Snapshot.now(), node_cpus()))
    return row
