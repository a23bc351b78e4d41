"""Parallel-in-time Elman on this machine: the scan, Newton's iterations, step time, memory.

Four parts, printed side by side in one run (``--parts`` picks some):

scan        the three ways to write the associative scan -- rnnbench.pit.scan's
            odd-even (Blelloch) reduction, Hillis-Steele doubling, and
            torch._higher_order_ops.associative_scan run eagerly -- taking turns
            on the same dense (A, b), one thread; checked against each other.
iterations  Newton iterations to convergence for deer and quasi_deer at
            tau = 65536, H = 32, spectral radius 0.9, float64, inputs N(0, 1)
            (published: DEER 6, quasi-DEER ~30 on a tanh RNN of this size), at
            the default tol and at tol = 1e-6; then the same W driven harder
            (pre-activations N(0, s^2), s = 1 and 3): quasi-DEER's count
            depends on how saturated the units are.
step        forward + backward time of scan_bptt, deer, quasi_deer over bptt's,
            B = 1, float32, default init: each pair runs bptt then the strategy, in
            one process, taking turns; the ratio is per pair (median of the pairs
            shown, with the absolute bptt time).  Fewer pairs at large sizes.
memory      bytes saved for backward and the allocator's peak over one step
            (torch profiler) against the tau B H^2 Jacobians of one dense scan.

    .venv/bin/python benchmarks/bench_parallel_time.py                  # everything
    .venv/bin/python benchmarks/bench_parallel_time.py --parts step --taus 1024
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch

from rnnbench.core import models, strategies
from rnnbench.harness import allocator, memory
from rnnbench.pit import diagnostics
from rnnbench.pit.scan import linear_scan

STRATS = ("scan_bptt", "deer", "quasi_deer")


def _problem(tau, hidden, rho=None, dtype=torch.float32, n_in=8, seed=0):
    torch.manual_seed(seed)
    m = models.build("elman", n_in, hidden, n_in, rho).to(dtype)
    x = torch.randn(tau, 1, n_in, dtype=dtype)
    y = torch.randint(0, n_in, (tau, 1))
    return m, x, y


def _load() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


# --------------------------------------------------------------------------- scan


def _hillis_steele(A, b):
    s, n = 1, b.shape[0]
    while s < n:
        b = torch.cat([b[:s], torch.matmul(A[s:], b[:-s].unsqueeze(-1)).squeeze(-1) + b[s:]])
        A = torch.cat([A[:s], torch.matmul(A[s:], A[:-s])])
        s *= 2
    return b


def _hop(A, b):
    from torch._higher_order_ops import associative_scan

    def combine(first, later):
        (A1, b1), (A2, b2) = first, later
        return A2 @ A1, (A2 @ b1.unsqueeze(-1)).squeeze(-1) + b2

    return associative_scan(combine, (A, b), dim=0, combine_mode="generic")[1]


def part_scan(args):
    torch.set_num_threads(1)
    print(
        f"\n== scan: ms per dense scan, float64, 1 thread, median of {args.pairs} turns ({_load()})"
    )
    impls = {"blelloch (kept)": linear_scan, "hillis_steele": _hillis_steele, "torch_hop": _hop}
    print(f"{'tau':>6} {'H':>4} " + " ".join(f"{k:>16}" for k in impls) + "   max |diff|")
    for tau, H in ((1024, 8), (1024, 32), (16384, 8)):
        g = torch.Generator().manual_seed(0)
        A = torch.randn(tau, 1, H, H, dtype=torch.float64, generator=g) * 0.9 / math.sqrt(H)
        b = torch.randn(tau, 1, H, dtype=torch.float64, generator=g)
        ref = linear_scan(A, b)
        diff = max(float((f(A, b) - ref).abs().max()) for f in impls.values())
        times = {k: [] for k in impls}
        for _ in range(args.pairs):
            for k, f in impls.items():
                t = time.perf_counter()
                f(A, b)
                times[k].append(time.perf_counter() - t)
        print(
            f"{tau:>6} {H:>4} "
            + " ".join(f"{1e3 * statistics.median(v):>16.2f}" for v in times.values())
            + f"   {diff:.1e}"
        )


# --------------------------------------------------------------------------- iterations


def part_iterations(args):
    torch.set_num_threads(args.threads[-1])
    tau, H = args.iter_tau, 32
    print(
        f"\n== iterations: tau={tau}, H={H}, rho=0.9, float64, threads={args.threads[-1]} "
        f"({_load()})"
    )
    m, x, _ = _problem(tau, H, rho=0.9, dtype=torch.float64)
    with torch.no_grad():
        ux = m.input_term(x)
        t = time.perf_counter()
        from rnnbench.pit.newton import elman_states

        ref = elman_states(ux, m.W)
        print(f"sequential: {time.perf_counter() - t:.2f} s")
        for method in ("newton", "quasi"):
            for tol in (None, 1e-6):
                with diagnostics.recording() as rec:
                    t = time.perf_counter()
                    h = elman_states(ux, m.W, method, tol=tol)
                    wall = time.perf_counter() - t
                name = "deer" if method == "newton" else "quasi_deer"
                print(
                    f"{name:<11} tol={tol or 'default':<8} iterations={rec.iterations:<4} "
                    f"converged={rec.converged} residual={rec.residual:.1e} "
                    f"max|h - sequential|={float((h - ref).abs().max()):.1e} {wall:.2f} s"
                )
        # How driven the units are decides quasi-DEER's count: the task's inputs through U
        # give pre-activations of std ~0.3 (units near linear, diag(J) a poor stand-in for
        # J); saturated units (1 - h^2 small) make J nearly diagonal-dominated and small.
        print(
            f"pre-activation b + U x: std {float(ux.std()):.2f}; the same W driven harder "
            "(b + U x replaced by N(0, s^2), default tol):"
        )
        gen = torch.Generator().manual_seed(1)
        for s in (1.0, 3.0):
            drive = s * torch.randn(ux.shape, generator=gen, dtype=ux.dtype)
            counts = []
            for method in ("newton", "quasi"):
                with diagnostics.recording() as rec:
                    elman_states(drive, m.W, method)
                counts.append(
                    f"{'deer' if method == 'newton' else 'quasi_deer'} "
                    f"{rec.iterations}{'' if rec.converged else ' (not converged)'}"
                )
            print(f"  s = {s:g}: " + ", ".join(counts))


# --------------------------------------------------------------------------- step


def _step(m, x, y, strategy):
    t = time.perf_counter()
    strategies.loss(m, x, y, strategy).backward()
    return time.perf_counter() - t


def part_step(args):
    print(
        f"\n== step: forward+backward time over bptt's (median of per-pair ratios), "
        f"B=1, float32 ({_load()})"
    )
    print(
        f"{'thr':>3} {'tau':>6} {'H':>4} {'bptt ms':>9} "
        + " ".join(f"{s:>11}" for s in STRATS)
        + "  pairs  load"
    )
    for threads in args.threads:
        torch.set_num_threads(threads)
        for tau in args.taus:
            for H in args.hiddens:
                m, x, y = _problem(tau, H)
                with diagnostics.recording():
                    first = {s: _step(m, x, y, s) for s in ("bptt", *STRATS)}  # warm-up
                pairs = 3 if max(first.values()) < args.big_s else 1
                ratios = {s: [] for s in STRATS}
                base = []
                with diagnostics.recording():
                    for _ in range(pairs):
                        for s in STRATS:
                            b = _step(m, x, y, "bptt")
                            ratios[s].append(_step(m, x, y, s) / b)
                            base.append(b)
                print(
                    f"{threads:>3} {tau:>6} {H:>4} {1e3 * statistics.median(base):>9.1f} "
                    + " ".join(f"{statistics.median(ratios[s]):>10.2f}x" for s in STRATS)
                    + f"  {pairs:>5}  {os.getloadavg()[0]:.1f}",
                    flush=True,
                )


# --------------------------------------------------------------------------- memory


def part_memory(args):
    torch.set_num_threads(1)
    tau = 2048
    print(
        f"\n== memory: tau={tau}, B=1, float32; MB saved for backward / peak over one "
        f"step, against tau B H^2 Jacobians ({_load()})"
    )
    print(f"{'H':>4} {'jacobians':>10} " + " ".join(f"{s:>19}" for s in ("bptt", *STRATS)))
    for H in (16, 64, 128):
        m, x, y = _problem(tau, H)
        cells = []
        for s in ("bptt", *STRATS):
            with diagnostics.recording():
                saved = memory.saved_bytes(
                    lambda: strategies.loss(m, x, y, s), keep=[*m.parameters(), x, y]
                )
                peak, _ = memory.peak_bytes(lambda: strategies.loss(m, x, y, s).backward())
            cells.append(f"{saved / 1e6:>8.2f} / {peak / 1e6:>8.1f}")
        jac = tau * H * H * 4
        print(f"{H:>4} {jac / 1e6:>10.1f} " + " ".join(f"{c:>19}" for c in cells), flush=True)


PARTS = {"scan": part_scan, "iterations": part_iterations, "step": part_step, "memory": part_memory}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)}")
    p.add_argument("--taus", type=int, nargs="+", default=[1024, 16384])
    p.add_argument("--hiddens", type=int, nargs="+", default=[4, 8, 16, 32, 64, 128])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--iter-tau", type=int, default=65536)
    p.add_argument("--pairs", type=int, default=5, help="turns per scan implementation")
    p.add_argument(
        "--big-s",
        type=float,
        default=2.0,
        help="one pair instead of three when a warm-up step takes longer (s)",
    )
    args = p.parse_args()
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, {_load()}; "
        f"allocator: {allocator.steady()} (as every rnnbench cell)"
    )
    for name in args.parts.split(","):
        PARTS[name](args)


if __name__ == "__main__":
    main()
