"""Does a cell's fixed-count sampling time a step as torch's blocked_autorange does?

    python benchmarks/bench_sampling.py [--rounds 6] [--repeats 10] [--tau 256]

rnnbench.harness.single.sample takes exactly ``repeats`` samples per statement, each
the per-run mean of a block of ``block_size`` runs; torch.utils.benchmark's
``Timer.blocked_autorange`` picks its own block size and so its own sample
count.  Both time the same training step (zero_grad + loss + backward + Adam,
1 thread) of Elman + bptt and Jordan + teacher forcing, taking turns round by
round in one process (which goes first alternates), so drift and the vCPU it
runs on hit both alike.
Prints, per case: each method's median step time, its number of samples, and
the ratio of the medians (1.00 = the same figure).
"""

from __future__ import annotations

import argparse
import timeit

import numpy as np
import torch
from torch.utils import benchmark

from rnnbench.core import models, strategies
from rnnbench.harness import single, training
from rnnbench.job.cell import Cell


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=10, help="samples per round, fixed-count")
    ap.add_argument("--tau", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"{'case':32} {'autorange ms':>12} {'n':>4} {'fixed ms':>9} {'n':>4} {'ratio':>6}")
    for model, strategy in (("elman", "bptt"), ("jordan", "teacher_forcing")):
        cell = Cell(model=model, strategy=strategy, tau=args.tau, threads=1, repeats=args.repeats)
        task = cell.make_task()
        net = models.build(model, task.n_in, cell.hidden, task.n_out)
        x, y = task.batch(cell.tau, cell.batch, seed=0, dtype=torch.float32)
        opt = torch.optim.Adam(net.parameters(), lr=cell.lr)

        def step():
            opt.zero_grad(set_to_none=True)
            strategies.loss(net, x, y, strategy=strategy).backward()
            opt.step()

        for _ in range(training.WARMUP):
            step()
        auto, fixed = [], []
        for r in range(args.rounds):
            one = timeit.Timer("step()", globals={"step": step}).timeit(1)

            def autorange():  # as rnnbench called it before: about `repeats` blocks' time
                m = benchmark.Timer("step()", globals={"step": step}, num_threads=1)
                budget = args.repeats * single.block_size(one) * one
                auto.extend(m.blocked_autorange(min_run_time=budget).times)

            def fixed_count():  # what a cell does now
                fixed.extend(single.sample("step()", "pass", {"step": step}, cell).times)

            for method in (autorange, fixed_count)[:: 1 if r % 2 else -1]:  # each goes first
                method()
        a, f = np.median(auto) * 1e3, np.median(fixed) * 1e3
        print(
            f"{model + ' + ' + strategy + f' tau={args.tau}':32} {a:12.3f} {len(auto):4d} "
            f"{f:9.3f} {len(fixed):4d} {f / a:6.2f}"
        )


if __name__ == "__main__":
    main()
