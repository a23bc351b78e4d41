"""The worker-group harness: one cell trained across Ray workers (docs/design.md, "Harnesses").

A cell with ``workers = N`` runs as one group of N Ray actors, reserved together
in one placement group (all or nothing), joined with ``torch.distributed``
(gloo on CPU, NCCL on CUDA).  Every actor holds a replica of the model and a
shard of the cell's one batch, cut as the strategy's record says (``split``):

- ``time`` (teacher forcing): N contiguous time slices.  A slice needs nothing
  from its neighbours but y^(s-1), which is data, so each worker computes its
  slice's loss and gradient alone (:func:`rnnbench.core.strategies.teacher_forcing_slice`);
  ``time`` (Elman with ``scan_bptt``, ``deer``, ``quasi_deer``): each worker scans
  its slice and the workers all-gather one summary per scan
  (:mod:`rnnbench.pit.distributed`); every worker needs at least one step;
- ``batch`` (every other strategy: the hidden-to-hidden recurrence cannot be
  cut along time): with fewer sequences than workers the extra workers idle
  (an empty shard; they only join the all-reduce) and the row's ``error``
  carries a ``note:`` saying how many (status stays ``ok``).

Each step: local loss (forward), backward, one all-reduce (SUM) of the
flattened gradients with the loss piggy-backed, the same Adam step on every
replica: the single-process gradient of the summed loss (tested to 1e-10 in
float64).  Rendezvous is race-free: rank 0 opens a ``TCPStore`` on port 0 and
keeps the kernel-chosen port bound; the others connect to it.

Timing is done inside the workers (``torch.utils.benchmark`` cannot line up
the N ranks' steps): per step the slowest rank's time counts, then a
``benchmark.Measurement`` over ``repeats`` steps after ``WARMUP``.
``comm_ms_median``: per step the *smallest* time any rank spent in the
all-reduce (the last rank to arrive waits only for the transfer itself).
``minor_faults_per_step``: the ranks' minor page faults per timed step,
summed over the ranks; ``peak_rss_bytes``: the largest rank's peak RSS over
the steps (:mod:`rnnbench.harness.procstat`).

With a ``baseline`` (e.g. ``{workers: 1}``) its group is started beside the
cell's, each actor asking for a share of the CPUs so both fit where the larger
one would; both warm up, then they take turns one step at a time
(:func:`rnnbench.harness.paired.alternate`, A B B A ...), every rank moved to the next
CPUs between pairs.  A teacher-forcing baseline with fewer workers runs in
chunks of the workers' slice (:func:`fair_baseline`).

Whatever happens, every actor is killed and the placement group removed
before :func:`run_cell` returns.  If the process running it is killed (the
sweep force-cancels a timed-out cell), Ray keeps the placement group until the
job ends: :func:`release` removes it (it is named after the cell).  Every
removal goes through :func:`remove_group` (Ray 2.60 leaks the CPUs of a group
removed while it is being placed).  On CUDA each worker takes one GPU (written,
not tested here); the trained replica is evaluated on the caller's CPU.
"""

from __future__ import annotations

from rnnbench.harness.group.placement import (
    DIST_TIMEOUT_S,
    PLACE_TIMEOUT_S,
    Group,
    pg_name,
    release,
    remove_group,
)
from rnnbench.harness.group.run import BaselineFailed, reported, run_cell, summarise
from rnnbench.harness.group.shard import (
    Shard,
    active_workers,
    fair_baseline,
    idle_note,
    local_losses,
    shard,
    split_kind,
)
from rnnbench.harness.group.worker import Worker

__all__ = [
    "DIST_TIMEOUT_S",
    "PLACE_TIMEOUT_S",
    "BaselineFailed",
    "Group",
    "Shard",
    "Worker",
    "active_workers",
    "fair_baseline",
    "idle_note",
    "local_losses",
    "pg_name",
    "release",
    "remove_group",
    "reported",
    "run_cell",
    "shard",
    "split_kind",
    "summarise",
]
