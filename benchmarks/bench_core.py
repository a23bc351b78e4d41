"""Forward+backward time of the core strategies, side by side in one run (issue 2).

    python benchmarks/bench_core.py [--threads 1 2] [--rounds 3] [--min-run-time 0.5]

float32, H = 128, n_in = n_out = 64, random one-hot inputs (the text task's
shape).  For B in {1, 32} and tau in {256, 1024}: ``bptt`` (explicit Python
loop) against ``bptt_fused`` (torch.nn.RNN's kernel) on the same Elman
network -- target: loop / fused <= 1.25.  At B = 1, tau = 1024:
``teacher_forcing`` (Jordan, all steps in one batched computation) against
``bptt_fused`` -- target: fused / teacher_forcing >= 15.

Timed with torch.utils.benchmark.Timer (blocked_autorange: median and IQR over
measurement blocks), one statement = zero_grad + loss + backward.  (A sweep's
cells take a fixed number of samples instead -- rnnbench.harness.single; here the
figures are ratios of cases timed alike, side by side.)  Cases are
interleaved round by round so that machine noise (other users of the CPU) hits
every case alike; the figure per case is the median over rounds of each
round's median.  With one thread, each case is timed on two clocks: wall time
(perf_counter) and this process's CPU time (process_time), which leaves out
the time other processes hold the cores -- on a shared machine the steadier of
the two.  Prints the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
from torch.utils import benchmark

from rnnbench.core import models, strategies

H, N_IN, N_OUT = 128, 64, 64


def data(tau: int, batch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, N_IN, (tau, batch), generator=g)
    x = torch.nn.functional.one_hot(idx, N_IN).float()
    y = torch.randint(0, N_OUT, (tau, batch), generator=g)
    return x, y


def step_fn(cls, strategy, tau, batch):
    torch.manual_seed(0)
    model = cls(N_IN, H, N_OUT)
    x, y = data(tau, batch)

    def step():
        model.zero_grad(set_to_none=True)
        strategies.loss(model, x, y, strategy).backward()

    step()  # warm-up (and any lazy initialisation)
    return step


def load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def measure(cases: dict, threads: int, min_run_time: float, rounds: int, clocks: dict) -> dict:
    """cases: name -> step callable; clocks: clock name -> timer function.

    Returns (name, clock) -> (median over rounds of the round medians, median IQR,
    the round medians)."""
    rows = {(n, c): ([], []) for n in cases for c in clocks}
    for _ in range(rounds):
        for name, fn in cases.items():
            for clock, timer in clocks.items():
                m = benchmark.Timer(
                    stmt="fn()", globals={"fn": fn}, num_threads=threads, timer=timer
                ).blocked_autorange(min_run_time=min_run_time)
                rows[(name, clock)][0].append(m.median)
                rows[(name, clock)][1].append(m.iqr)
    return {
        k: (statistics.median(meds), statistics.median(iqrs), meds)
        for k, (meds, iqrs) in rows.items()
    }


def ms(s: float) -> str:
    return f"{s * 1e3:.2f}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument(
        "--min-run-time", type=float, default=0.5, help="seconds per Timer.blocked_autorange call"
    )
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per case")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--taus", type=int, nargs="+", default=[256, 1024])
    args = ap.parse_args(argv)

    print(
        f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} CPUs; "
        f"float32, H={H}, n_in=n_out={N_IN}; forward+backward per step, ms"
    )
    print(f"load average before: {load()}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        # CPU time of this process excludes the time other processes hold the cores;
        # with one thread it is the step's own cost.  With several threads it sums
        # them, so only wall time is reported there.
        clocks = {"wall": time.perf_counter}
        if threads == 1:
            clocks["cpu"] = time.process_time
        cases = {}
        for batch in args.batches:
            for tau in args.taus:
                for strategy in ("bptt", "bptt_fused"):
                    cases[(strategy, batch, tau)] = step_fn(models.Elman, strategy, tau, batch)
        tf_key = ("teacher_forcing", 1, max(args.taus))
        cases[tf_key] = step_fn(models.Jordan, "teacher_forcing", tf_key[2], 1)
        res = measure(cases, threads, args.min_run_time, args.rounds, clocks)

        print(
            f"\n## torch threads = {threads} (median over {args.rounds} interleaved rounds of "
            f"Timer.blocked_autorange medians; IQR: median of the rounds' IQRs)"
        )
        head = "| B | tau |"
        rule = "|--:|----:|"
        for c in clocks:
            head += f" bptt {c} (IQR) | fused {c} (IQR) | loop/fused {c} |"
            rule += "---:|---:|---:|"
        print(head + " target <= 1.25 |")
        print(rule + "---|")
        for batch in args.batches:
            for tau in args.taus:
                line, verdict = f"| {batch} | {tau} |", []
                for c in clocks:
                    lo, fu = res[(("bptt", batch, tau), c)], res[(("bptt_fused", batch, tau), c)]
                    line += (
                        f" {ms(lo[0])} ({ms(lo[1])}) | {ms(fu[0])} ({ms(fu[1])}) |"
                        f" {lo[0] / fu[0]:.2f} |"
                    )
                    verdict.append(f"{c} {'ok' if lo[0] / fu[0] <= 1.25 else 'MISSED'}")
                print(line + " " + ", ".join(verdict) + " |")
        if ("bptt_fused", 1, tf_key[2]) in cases:
            for c in clocks:
                tf, fu = res[(tf_key, c)], res[(("bptt_fused", 1, tf_key[2]), c)]
                speedup = fu[0] / tf[0]
                print(
                    f"\nB=1, tau={tf_key[2]} ({c}): teacher_forcing {ms(tf[0])} ms "
                    f"(IQR {ms(tf[1])}) vs bptt_fused {ms(fu[0])} ms: "
                    f"{speedup:.1f}x faster (target >= 15: {'ok' if speedup >= 15 else 'MISSED'})"
                )
        print("\nper-round medians, ms:")
        for (name, c), (_, _, meds) in res.items():
            print(
                f"  {name[0]:>15} B={name[1]:<2} tau={name[2]:<4} {c:>4}: "
                + ", ".join(ms(v) for v in meds)
            )
    print(f"\nload average after: {load()}")


if __name__ == "__main__":
    main()
