"""Time-parallel training: speedup of 2 workers over 1, side by side (issue 5).

    python benchmarks/bench_timeparallel.py [--tau 65536] [--elman-tau 4096]
        [--workers 1 2] [--repeats 10] [--rounds 1] [--single]

One run on this machine, 1 thread per worker, embedded Ray with the machine's
CPUs:

- Jordan + teacher_forcing, B = 1, H = 128, text task (vocab 64), float32,
  tau = 65536: the sequence is split along time, so 2 workers should be close
  to 2x faster per step (target >= 1.7x);
- Elman + bptt, B = 1, H = 128, tau = 4096: only the batch can be split, one
  worker idles, so 2 workers give nothing (expected <= 1.1x).

Step times are measured inside the workers (slowest rank per step, median over
``repeats`` steps after warm-up); ``comm`` is the all-reduce's median; the CPU
time each rank's process used per step, against the step's wall time, shows
workers starved by other processes (and an idle rank's cost).  The
machine's load average is printed beside each cell: other processes on the
same cores make every figure slower and noisier.  ``--rounds`` repeats the
whole comparison; ``--single`` adds the one-process row from
rnnbench.measure (torch.utils.benchmark) for reference.
"""

from __future__ import annotations

import argparse
import os

import ray

from rnnbench import measure, timeparallel
from rnnbench.cell import Cell

BASE = dict(batch=1, hidden=128, task="text", task_options={"vocab": 64}, dtype="float32",
            threads=1, train_steps=0)


def run(model: str, strategy: str, tau: int, workers: int, repeats: int, single: bool) -> dict:
    c = Cell(model=model, strategy=strategy, tau=tau, workers=workers, repeats=repeats, **BASE)
    load, probe = os.getloadavg()[0], {}
    row = measure.run_cell(c) if single else timeparallel.run_cell(c, probe=probe)
    row["cpu"] = probe.get("cpu_ms_median_per_rank")
    if row["status"] != "ok":
        raise SystemExit(f"{model}+{strategy} workers={workers}: {row['status']}: {row['error']}")
    row["load"] = (load, os.getloadavg()[0])
    return row


def compare(name: str, model: str, strategy: str, tau: int, workers: list[int], repeats: int,
            single: bool, target: str) -> float:
    print(f"\n{name}: B=1 H=128 n_in=n_out=64 float32 tau={tau}, 1 thread per worker")
    print(f"{'':<22}{'step ms':>9} {'IQR':>7} {'fwd':>8} {'bwd':>8} {'comm':>6} "
          f"{'speedup':>8}  split  load(before→after)  CPU ms/step per rank")
    rows = {}
    if single:
        rows["1 process (measure)"] = run(model, strategy, tau, 1, repeats, True)
    for n in workers:
        rows[f"{n} worker{'s' if n > 1 else ''}"] = run(model, strategy, tau, n, repeats, False)
    base = rows[f"{workers[0]} worker{'s' if workers[0] > 1 else ''}"]["step_ms_median"]
    for label, r in rows.items():
        print(f"{label:<22}{r['step_ms_median']:>9.1f} {r['step_ms_iqr']:>7.1f} "
              f"{r['fwd_ms_median']:>8.1f} {r['bwd_ms_median']:>8.1f} "
              f"{r['comm_ms_median']:>6.2f} {base / r['step_ms_median']:>7.2f}x  "
              f"{r['split']:<6} {r['load'][0]:.1f}→{r['load'][1]:.1f}"
              + (f"  {' / '.join(f'{v:.0f}' for v in r['cpu'])}" if r["cpu"] else "")
              + (f"  [{r['error']}]" if r["error"] else ""))
    last = rows[f"{workers[-1]} workers"]["step_ms_median"]
    ratio = base / last
    print(f"  {workers[-1]} workers vs {workers[0]}: {ratio:.2f}x (target {target})")
    return ratio


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tau", type=int, default=65536, help="Jordan sequence length")
    p.add_argument("--elman-tau", type=int, default=4096, help="Elman sequence length")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--single", action="store_true", help="add the one-process measure row")
    args = p.parse_args()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    print(f"{os.cpu_count()} CPUs; load average at start {os.getloadavg()}")
    summary = []
    for r in range(args.rounds):
        print(f"\n=== round {r + 1} of {args.rounds}")
        tf = compare("Jordan + teacher_forcing (time split)", "jordan", "teacher_forcing",
                     args.tau, args.workers, args.repeats, args.single, ">= 1.7x")
        bp = compare("Elman + bptt (batch split only)", "elman", "bptt", args.elman_tau,
                     args.workers, args.repeats, args.single, "<= 1.1x")
        summary.append((tf, bp))
    print(f"\nsummary ({args.workers[-1]} workers vs {args.workers[0]}, per round):")
    for i, (tf, bp) in enumerate(summary, 1):
        print(f"  round {i}: teacher_forcing {tf:.2f}x, bptt {bp:.2f}x")
    ray.shutdown()


if __name__ == "__main__":
    main()
