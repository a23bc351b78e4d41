"""The sweep driver's own cost per cell, with and without ``--cell-timeout``.

Runs N trivial cells (default 10,000; the runner returns its row at once)
through the real driver (:func:`rnnbench.sweep.driver.run_sweep`: Ray task, registry
calls, row written with temp + fsync + rename, progress bookkeeping) on an
embedded Ray with 2 CPUs, once without a time-out and once with one that never
fires (3600 s), taking turns (A B A B ...) for ``--rounds`` pairs.  Prints, per
run, the wall time per cell (the whole sweep's wall time / N), and per pair the
ratio with / without.  The driver's work per cell must not grow with N: with
the time-out it used to scan every pending cell after each result.

    .venv/bin/python benchmarks/bench_driver.py [--cells 10000] [--rounds 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import ray
from ray import cloudpickle

from rnnbench.job.cell import Cell
from rnnbench.sweep import driver

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def trivial(cell: Cell) -> dict:
    """A cell that does nothing: its row only (the keys a stored row must have)."""
    return {**cell.config(), "cell_id": cell.cell_id, "status": "ok", "error": None}


def cells(n: int, offset: int) -> list[Cell]:
    return [
        Cell(model="elman", strategy="bptt", tau=8, hidden=8, seed=offset + i) for i in range(n)
    ]


def one(n: int, offset: int, timeout: float | None) -> float:
    """Seconds per cell of one sweep of ``n`` fresh trivial cells."""
    todo = cells(n, offset)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        result = driver.run_sweep(todo, out, runner=trivial, cell_timeout=timeout, progress=False)
        wall = time.perf_counter() - t0
    assert result.counts == {"ok": n}, result.counts
    return wall / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()[0]:.1f}")
    from rnnbench import raysession

    raysession.start(num_cpus=2)  # embedded, loopback only
    one(20, 10**9, None)  # warm-up: workers started, registry actor up
    ratios = []
    for r in range(args.rounds):
        base = 2 * r * args.cells
        a = one(args.cells, base, None)
        b = one(args.cells, base + args.cells, 3600.0)
        ratios.append(b / a)
        print(
            f"round {r + 1}: {args.cells} trivial cells: without --cell-timeout "
            f"{a * 1e3:.2f} ms/cell, with {b * 1e3:.2f} ms/cell, ratio {b / a:.2f} "
            f"(load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    ray.shutdown()
    print(
        f"ratio with/without time-out, median over {len(ratios)} pair(s): "
        f"{statistics.median(ratios):.2f}"
    )


if __name__ == "__main__":
    main()
