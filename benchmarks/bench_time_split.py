"""Elman deer split along time over N Ray workers against the same harness with one.

Both sides run in the worker-group harness (``harness="group"``: the same actors,
process group, in-worker timing), one cell after the other, taking turns
(1, N, 1, N, ...); the ratio is per pair (1-worker step time over N-worker step
time, > 1: the split is faster).  Each cell starts its own actors, so the pairs
are minutes apart: state the machine's load with the figures.

    .venv/bin/python benchmarks/bench_time_split.py                    # tau 16384, H 8, B 1
    .venv/bin/python benchmarks/bench_time_split.py --workers 3 --pairs 2
"""

from __future__ import annotations

import argparse
import os
import statistics

from rnnbench.harness import group
from rnnbench.job.cell import Cell


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strategy", default="deer")
    ap.add_argument("--tau", type=int, default=16384)
    ap.add_argument("--hidden", type=int, default=8)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dtype", default="float64")
    args = ap.parse_args()
    ratios = []
    print(
        f"{args.strategy} elman tau={args.tau} H={args.hidden} B={args.batch} {args.dtype}, "
        f"1 thread per worker; load {os.getloadavg()[0]:.1f}"
    )
    for pair in range(args.pairs):
        ms = {}
        for workers in (1, args.workers):
            cell = Cell(
                model="elman",
                strategy=args.strategy,
                task="text",
                tau=args.tau,
                batch=args.batch,
                hidden=args.hidden,
                dtype=args.dtype,
                threads=1,
                workers=workers,
                repeats=args.repeats,
                harness="group",
            )
            row = group.run_cell(cell, cpus_per_worker=1)
            if row["status"] != "ok":
                raise SystemExit(f"workers {workers}: {row['status']}: {row['error']}")
            ms[workers] = row["step_ms_median"]
            print(
                f"pair {pair} workers {workers}: step {row['step_ms_median']:.1f} ms "
                f"(comm {row['comm_ms_median']:.1f} ms), iterations {row['iterations']}, "
                f"converged {row['converged']}, residual {row['residual']:.2g}"
            )
        ratios.append(ms[1] / ms[args.workers])
        print(f"pair {pair}: 1-worker / {args.workers}-worker step time = {ratios[-1]:.2f}")
    print(
        f"median ratio {statistics.median(ratios):.2f} over {len(ratios)} pairs "
        f"{[round(r, 2) for r in ratios]}; load {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
