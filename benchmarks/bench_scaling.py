"""The scaling model against the measured speedup at N = 2 (issue 23, point 6).

    python benchmarks/bench_scaling.py [--replicates 3] [--repeats 5]
        [--tf-tau 8192 16384] [--deer-tau 256 512] [--hidden 32]

For teacher forcing split in time (Jordan, text task, B = 1, H = 128) and DEER split
in time (Elman, text task, B = 1, H = ``--hidden``), on this machine, 1 thread per
worker, embedded Ray:

- 1-worker group cells at each tau (``replicates`` each, every one a fresh group): the
  per-shard compute against shard length the model is calibrated on;
- 2-worker group cells at the largest tau (``replicates`` each), which also time the
  group's all-reduce and all-gather (the loopback network).

Then :mod:`rnnbench.report.scaling` on those rows prints, per strategy, the measured
speedup at N = 2 (geomean of 1-worker steps / geomean of 2-worker steps, 95% interval
over replicates), the predicted one, their ratio (predicted / measured) with its
interval, and the N at which each stops gaining on loopback and on the datacentre
example.  Nothing is written.
"""

from __future__ import annotations

import argparse
import os

import pandas as pd
import ray

from rnnbench.harness import group
from rnnbench.job.cell import Cell
from rnnbench.report import scaling as sc
from rnnbench.report import tidy


def cells(args) -> list[Cell]:
    common = dict(task="text", batch=1, threads=1, repeats=args.repeats, harness="group")
    tf = dict(common, model="jordan", strategy="teacher_forcing", hidden=128)
    deer = dict(common, model="elman", strategy="deer", hidden=args.hidden)
    out = []
    for kind, taus in ((tf, args.tf_tau), (deer, args.deer_tau)):
        for rep in range(args.replicates):
            for tau in taus:
                out.append(Cell(workers=1, tau=tau, replicate=rep, **kind))
            out.append(Cell(workers=2, tau=max(taus), replicate=rep, **kind))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicates", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--tf-tau", type=int, nargs="+", default=[8192, 16384])
    p.add_argument("--deer-tau", type=int, nargs="+", default=[256, 512])
    p.add_argument("--hidden", type=int, default=32, help="DEER's H (default 32)")
    args = p.parse_args()
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False)
    rows = []
    for c in cells(args):
        row = group.run_cell(c, cpus_per_worker=min(1.0, (os.cpu_count() or 2) / 2))
        print(
            f"{c.model} {c.strategy} tau {c.tau} N {c.workers} rep {c.replicate}: "
            f"{row['status']} step {row['step_ms_median']:.3g} ms",
            flush=True,
        )
        rows.append(row)
    s = sc.scaling(tidy.tidy(pd.DataFrame(rows), "bench_scaling"))
    net = s.networks[0]
    print(
        f"\nloopback: alpha {net.alpha * 1e6:.3g} us, beta {net.beta / 1e9:.3g} GB/s "
        f"({net.points} timings); {sc.DATACENTRE.name}"
    )
    pd.set_option("display.width", 200)
    print("\nmeasured vs predicted at N = 2 (error = predicted / measured):")
    print(s.check.to_string(index=False, float_format="{:.3g}".format))
    print("\nwhere communication eats the gain:")
    print(s.limits.to_string(index=False, float_format="{:.3g}".format))


if __name__ == "__main__":
    main()
