"""Paired comparisons inside a cell, three runs each, in one Ray session.

    python benchmarks/bench_paired.py [--runs 3] [--repeats 8] [--only NAME ...]

Each comparison is one cell with a ``baseline``, run exactly as ``rnnbench bench
... --baseline ...`` runs it (:func:`rnnbench.harness.runner.run_cell`): both sides built
and warmed in the cell's task, then timed in alternating blocks (A B B A ...),
the CPUs rotated between pairs; the speedup is baseline / cell per pair.  Ray is
started once for all runs (on a loaded machine a fresh ``ray.init`` per run can
time out).  Printed per run: the per-pair speedup median [Q1, Q3], both sides'
median step, minor page faults per step of each side, the baseline as run, and
the load average before and after.

- ``tf_workers``:   Jordan + teacher forcing, tau 65536, B 1, 2 workers against
                    the fair 1-worker baseline (chunked to the workers' slice);
- ``bptt_workers``: Elman + bptt, tau 4096, B 1, 2 workers against 1;
- ``tf_best_bptt``: Jordan + teacher forcing against Elman's best BPTT, B 32,
                    tau 4096, every core (``threads: all``).
"""

from __future__ import annotations

import argparse
import json
import os

from rnnbench.harness import runner
from rnnbench.job.cell import Cell

COMPARISONS = {
    "tf_workers": dict(
        model="jordan",
        strategy="teacher_forcing",
        tau=65536,
        batch=1,
        workers=2,
        baseline={"workers": 1},
    ),
    "bptt_workers": dict(
        model="elman", strategy="bptt", tau=4096, batch=1, workers=2, baseline={"workers": 1}
    ),
    "tf_best_bptt": dict(
        model="jordan",
        strategy="teacher_forcing",
        tau=4096,
        batch=32,
        threads="all",
        baseline={"model": "elman", "strategy": "best_bptt"},
    ),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=8, help="block pairs per run")
    p.add_argument("--only", nargs="+", choices=list(COMPARISONS), default=list(COMPARISONS))
    args = p.parse_args()
    import ray

    for _ in range(5):  # Ray gives its raylet 30 s to start: a loaded machine may need more
        try:
            from rnnbench import raysession

            raysession.start(num_cpus=os.cpu_count())  # embedded, loopback only
            break
        except Exception as exc:
            print(f"ray.init failed ({exc}); load {os.getloadavg()[0]:.1f}; trying again")
            ray.shutdown()
    else:
        raise SystemExit("ray.init failed five times")
    print(f"{os.cpu_count()} CPUs; load average at start {os.getloadavg()}")
    for name in args.only:
        cell = Cell(repeats=args.repeats, **COMPARISONS[name])
        print(f"\n{name}: {json.dumps(cell.config(), sort_keys=True)}")
        for run in range(1, args.runs + 1):
            before = os.getloadavg()[0]
            r = runner.run_cell(cell)
            after = os.getloadavg()[0]
            if r["status"] != "ok" or r["baseline_error"]:
                print(f"  run {run}: {r['status']} {r['error'] or ''} {r['baseline_error'] or ''}")
                continue
            print(
                f"  run {run}: speedup {r['speedup_median']:.2f}x "
                f"[Q1 {r['speedup_q1']:.2f}, Q3 {r['speedup_q3']:.2f}] over "
                f"{len(r['speedup_samples'])} pairs; cell {r['step_ms_median']:.0f} ms "
                f"({r['minor_faults_per_step']:.0f} faults/step), baseline "
                f"{r['baseline_step_ms_median']:.0f} ms "
                f"({r['baseline_minor_faults_per_step']:.0f} faults/step); threads "
                f"{r['threads']}; baseline as run {r['baseline_config']}"
                + (f" of {r['baseline_candidates_ms']} ms" if r["baseline_candidates_ms"] else "")
                + f"; load {before:.1f} -> {after:.1f}"
            )
    ray.shutdown()


if __name__ == "__main__":
    main()
