"""A rough wall-time guess for a cell, for ``rnnbench run --dry-run``."""

from __future__ import annotations

import dataclasses

from rnnbench.facts import BEST_CHOICES, scan_depth
from rnnbench.job.cell import Cell


def estimate_seconds(cell: Cell) -> float:
    """A rough wall-time guess for one cell (seconds), for ``--dry-run``.

    A fixed start-up cost, then per timed step (repeats, forward/backward
    apart, the memory pass) a per-time-step cost on the sequential depth plus
    the FLOPs, and per training step a cost linear in tau (training and the
    free-running evaluation step through time) plus the FLOPs.  The per-cell and
    per-step constants are a least-squares fit to ``jobs/quick.yaml`` rows on a
    2-core CPU; the FLOP rate (10 GFLOP/s per thread) is assumed, not fitted.
    A baseline adds its warm-up and its blocks, a law cell those of every τ; sides that
    take turns run one untimed settle run a block.  A guide, not a promise.
    """
    flops_s, step_s = step_seconds(cell)
    timed = (cell.repeats * 3 + 6) * step_s
    train = cell.train_steps * (cell.tau * 410e-6 + flops_s)
    base = cell.baseline_cell()
    turns = 2 * cell.repeats + 2  # a side's settled blocks and its warm-up
    if base is not None or cell.law_taus:
        timed += cell.repeats * step_s  # the cell's own settle runs
    if base is not None:  # the baseline's warm-up and blocks; best_bptt warms every candidate
        best = dict(cell.baseline).get("strategy") in BEST_CHOICES
        timed += (turns + (3 * (3 + 2 * 3) if best else 0)) * step_seconds(base)[1]
    for tau in cell.law_taus:  # a law cell: every τ's warm-up and blocks beside its own
        timed += turns * step_seconds(dataclasses.replace(cell, tau=tau, law_taus=()))[1]
    return 1.2 + timed + train


def step_seconds(cell: Cell) -> tuple[float, float]:
    """(seconds of FLOPs, seconds of one timed step) as :func:`estimate_seconds` guesses."""
    task = cell.make_task()
    h, n_in, n_out = cell.hidden, task.n_in, task.n_out
    depth = cell.depth  # the Strategy record's depth at this tau and these options
    if depth is None:  # measured only (Newton iterations): the worst case, max_iter scans
        opts = dict(cell.strategy_options)
        depth = (opts.get("max_iter") or cell.tau) * scan_depth(cell.tau)
    flops_s = 6.0 * cell.tau * cell.batch * h * (n_in + h + n_out) / (1e10 * cell.n_threads)
    return flops_s, depth * 225e-6 + flops_s
