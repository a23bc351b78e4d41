"""How a cell's one batch is shared out over the ranks of a worker group: time slices
or batch shards (:class:`Shard`), and each rank's loss pieces.

- ``time`` (teacher forcing): N contiguous time slices.  A slice needs nothing from its
  neighbours but y^(s-1), which is data, so each worker computes its slice's loss and
  gradient alone (:func:`rnnbench.core.strategies.teacher_forcing_slice`);
  ``time`` (Elman with ``scan_bptt``, ``deer``, ``quasi_deer``): each worker scans its
  slice and the workers all-gather one summary per scan (:mod:`rnnbench.pit.distributed`);
  every worker needs at least one step;
- ``batch`` (every other strategy: the hidden-to-hidden recurrence cannot be cut along
  time): with fewer sequences than workers the extra workers idle (an empty shard; they
  only join the all-reduce) and the row's ``error`` carries a ``note:``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from rnnbench.core import strategies
from rnnbench.core.models import Recurrent
from rnnbench.errors import UsageError
from rnnbench.facts import TIME_SPLIT_SOLVERS
from rnnbench.harness import training
from rnnbench.job.cell import Cell
from rnnbench.pit.distributed import DistComm


def split_kind(cell: Cell) -> str:
    """How the cell's strategy is shared out: ``time`` slices or ``batch`` shards."""
    return strategies.get(cell.strategy).split


@dataclass(frozen=True)
class Shard:
    """Rank ``rank``'s share of the batch: the tensors it needs and what to compute.

    Time split: steps [s, e) of the sequence, held as x[lo:e], y[lo:e] with
    lo = max(s - 1, 0) (one step of overlap for y^(s-1)); ``start``/``end`` are local
    indices.  Batch split: the sequences [b0, b1), the whole sequence (start 0, end tau).
    """

    kind: str  # "time" | "batch"
    x: torch.Tensor
    y: torch.Tensor
    rank: int
    start: int
    end: int
    empty: bool  # nothing to compute (an idle worker: it only joins the all-reduce)

    def to(self, device: torch.device | str) -> Shard:
        return dataclasses.replace(self, x=self.x.to(device), y=self.y.to(device))


def shard(cell: Cell, x: torch.Tensor, y: torch.Tensor, rank: int) -> Shard:
    """Rank ``rank``'s :class:`Shard` of the batch (x, y), cut as the strategy says."""
    kind = split_kind(cell)
    if kind == "time":
        s, e = strategies.partition(x.shape[0], cell.workers)[rank]
        if e == s and cell.strategy in TIME_SPLIT_SOLVERS:
            raise UsageError(
                f"workers: {cell.strategy} split along time needs tau >= workers, "
                f"got tau {x.shape[0]} over {cell.workers} workers"
            )
        lo = max(s - 1, 0)
        # SingleOutput's y is one target per sequence: every slice gets all of it
        return Shard(
            kind,
            x[lo:e].clone(),
            (y if y.dim() == 1 else y[lo:e]).clone(),
            rank,
            s - lo,
            e - lo,
            e == s,
        )
    b0, b1 = strategies.partition(x.shape[1], cell.workers)[rank]
    return Shard(kind, x[:, b0:b1].clone(), y[..., b0:b1].clone(), rank, 0, x.shape[0], b1 == b0)


def active_workers(cell: Cell) -> int:
    """How many of the cell's workers get a non-empty shard."""
    n = cell.tau if split_kind(cell) == "time" else cell.batch
    return min(n, cell.workers)


def local_losses(
    model: Recurrent, cell: Cell, part: Shard, step: int | None = None
) -> Iterator[torch.Tensor]:
    """Yield the loss pieces of one shard; backward each piece as it comes.

    Teacher forcing with a ``chunk`` option gives one piece per chunk (memory
    O(chunk)); otherwise one piece.  ``step`` is the training step, for
    scheduled sampling's schedule (:func:`rnnbench.harness.training.strategy_options`).
    """
    options = training.strategy_options(cell, step, part.rank)
    if part.kind == "time" and cell.strategy in TIME_SPLIT_SOLVERS:
        s, e, y = part.start, part.end, part.y
        yield strategies.elman_time_shard(
            model, part.x[s:e], y if y.dim() == 1 else y[s:e], cell.strategy, DistComm(), **options
        )
    elif part.kind == "time":
        chunk = options.get("chunk") or (part.end - part.start)
        for s in range(part.start, part.end, chunk):
            yield strategies.teacher_forcing_slice(
                model,
                part.x,
                part.y,
                s,
                min(s + chunk, part.end),
                options.get("impl", strategies.TF_IMPLS[0]),
            )
    else:
        yield strategies.loss(model, part.x, part.y, cell.strategy, **options)


def idle_note(cell: Cell) -> str | None:
    """The row's note when some workers get nothing to do (status stays ok)."""
    active = active_workers(cell)
    if active == cell.workers:
        return None
    kind = split_kind(cell)
    what = "tau" if kind == "time" else "batch"
    why = "tau < workers" if kind == "time" else "BPTT cannot be split along time"
    return (
        f"note: {cell.workers - active} of {cell.workers} workers idle "
        f"({what} {getattr(cell, what)} split {kind}-wise; {why})"
    )


def fair_baseline(cell: Cell, base: Cell) -> Cell:
    """The baseline under the allocator conditions of the cell's workers.

    Split along time over N workers, each worker's tensors are 1/N of the
    sequence; one process holding all of them can cross glibc's mmap threshold
    (blocks of 32 MiB or more are mapped fresh on every allocation and unmapped
    on free, so every step pays page faults the workers never see).  So a
    teacher-forcing baseline with fewer workers, given no strategy options of
    its own, runs in chunks of the workers' slice (``chunk = ceil(tau / N)``):
    the same arithmetic and gradient, the same tensor sizes per piece as a worker.
    A strategy that cannot run in chunks (the Newton solvers) keeps its baseline.
    """
    if (
        split_kind(cell) != "time"
        or split_kind(base) != "time"
        or "chunk" not in strategies.get(base.strategy).options
        or base.workers >= cell.workers
        or "strategy_options" in dict(cell.baseline)
        or base.strategy_options
    ):
        return base
    return dataclasses.replace(base, strategy_options={"chunk": -(-base.tau // cell.workers)})
