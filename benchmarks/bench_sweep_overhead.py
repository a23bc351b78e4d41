"""Ray's overhead per cell beyond the cell's own time.

Runs 40 trivial cells one at a time through the real sweep driver
(:func:`rnnbench.sweep.driver.run_sweep`: Ray task, registry calls, thread setup,
row written with temp + rename) and reports, per cell, the time from submit to
the row being stored minus the time the cell's own function took.  Target:
median <= 30 ms.

    .venv/bin/python benchmarks/bench_sweep_overhead.py [--cells 40]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import ray

from rnnbench.job.cell import Cell
from rnnbench.results import store
from rnnbench.sweep import driver


def trivial(cell: Cell) -> dict:
    """A cell that does nothing: its row only (the keys a stored row must have)."""
    return {**cell.config(), "cell_id": cell.cell_id, "status": "ok", "error": None}


def cells(n: int, offset: int) -> list[Cell]:
    return [
        Cell(model="elman", strategy="bptt", tau=8, hidden=8, seed=offset + i) for i in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=40)
    args = parser.parse_args()
    t0 = time.perf_counter()
    from rnnbench import raysession

    raysession.start(num_cpus=2)  # embedded, loopback only
    print(f"ray.init: {time.perf_counter() - t0:.1f} s")
    with tempfile.TemporaryDirectory() as out:
        # warm-up: worker processes started, torch imported, registry actor up
        driver.run_sweep(cells(4, 10_000), out, runner=trivial, progress=False)
        result = driver.run_sweep(
            cells(args.cells, 0), out, runner=trivial, max_in_flight=1, progress=False
        )
        wall = dict(zip(*(store.load(out)[k] for k in ("cell_id", "wall_s"))))
    ray.shutdown()
    over = sorted((result.latency_s[c] - wall[c]) * 1e3 for c in result.latency_s)
    q = statistics.quantiles(over, n=10)
    print(
        f"{len(over)} trivial cells, one at a time: Ray overhead per cell beyond the cell's "
        f"own time: median {statistics.median(over):.1f} ms, p10 {q[0]:.1f} ms, "
        f"p90 {q[-1]:.1f} ms, max {over[-1]:.1f} ms (target: median <= 30 ms)"
    )


if __name__ == "__main__":
    main()
