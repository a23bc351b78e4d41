"""Side-by-side figures for one benchmark cell's measures (issue 3).

    python benchmarks/bench_measure.py [--taus 64 256 1024 4096] [--repeats 10]

Prints, from one run on this machine: step time and saved bytes for bptt,
bptt_fused, checkpointed_bptt and teacher_forcing over tau, with the speedup of
teacher forcing over the fused kernel; checkpointing's memory/time trade at
tau = 1024 with 32 segments; and the harness check (the cell's median against
a bare time.perf_counter loop around the same training step).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rnnbench.core import strategies
from rnnbench.harness import single
from rnnbench.job.cell import Cell

BASE = dict(batch=1, hidden=128, task="text", dtype="float32", threads=1, train_steps=0)


def cell(model: str, strategy: str, tau: int, repeats: int, **options) -> dict:
    row = single.run_cell(
        Cell(
            model=model,
            strategy=strategy,
            tau=tau,
            repeats=repeats,
            strategy_options=options,
            **BASE,
        )
    )
    if row["status"] != "ok":
        raise SystemExit(f"{strategy} tau={tau}: {row['status']}: {row['error']}")
    return row


def scaling(taus: list[int], repeats: int) -> None:
    runs = [
        ("elman", "bptt", {}),
        ("elman", "bptt_fused", {}),
        ("elman", "checkpointed_bptt", {}),
        ("jordan", "teacher_forcing", {}),
    ]
    print(
        f"\nB=1 H=128 n_in=n_out=64 float32, {torch.get_num_threads()} torch threads available,"
        " 1 used per cell"
    )
    print(f"{'tau':>6} {'strategy':<18} {'step ms':>9} {'IQR':>7} {'saved KiB':>10}")
    for tau in taus:
        rows = {s: cell(m, s, tau, repeats, **o) for m, s, o in runs}
        for s, r in rows.items():
            print(
                f"{tau:>6} {s:<18} {r['step_ms_median']:>9.3f} {r['step_ms_iqr']:>7.3f} "
                f"{r['saved_bytes'] / 1024:>10.1f}"
            )
        tf, fused, loop = (
            rows[k]["step_ms_median"] for k in ("teacher_forcing", "bptt_fused", "bptt")
        )
        print(
            f"{tau:>6} ratios: bptt_fused / teacher_forcing = {fused / tf:.1f}x, "
            f"bptt / bptt_fused = {loop / fused:.2f}x"
        )


def checkpointing(repeats: int) -> None:
    plain = cell("elman", "bptt", 1024, repeats)
    print("\ncheckpointed_bptt (32 segments) vs bptt at tau=1024, B=1, H=128:")
    for impl in ("segment", "torch"):
        ckpt = cell("elman", "checkpointed_bptt", 1024, repeats, segments=32, impl=impl)
        print(f"  impl={impl}:")
        print(
            f"    saved bytes: {ckpt['saved_bytes']} / {plain['saved_bytes']} = "
            f"{ckpt['saved_bytes'] / plain['saved_bytes']:.1%} (target <= 15%)"
        )
        print(
            f"    step time:   {ckpt['step_ms_median']:.2f} / {plain['step_ms_median']:.2f} ms = "
            f"{ckpt['step_ms_median'] / plain['step_ms_median']:.2f}x (target <= 1.5x)"
        )
        print(
            f"    peak bytes:  {ckpt['peak_bytes']} / {plain['peak_bytes']} = "
            f"{ckpt['peak_bytes'] / plain['peak_bytes']:.1%}"
        )


def fidelity(repeats: int, rounds: int = 3) -> None:
    """The harness's median against a bare perf_counter loop around the same step,
    interleaved over ``rounds`` so drift on a shared machine touches both alike."""
    print(
        f"\nharness fidelity (cell median vs bare time.perf_counter loop, same step; "
        f"median of {rounds} interleaved rounds):"
    )
    for model, strategy, tau in (("elman", "bptt", 256), ("jordan", "teacher_forcing", 1024)):
        c = Cell(model=model, strategy=strategy, tau=tau, repeats=repeats, **BASE)
        cells, bares = [], []
        for _ in range(rounds):
            cells.append(single.run_cell(c)["step_ms_median"])
            _, net, x, y = single._setup(c)
            opt = torch.optim.Adam(net.parameters(), lr=c.lr)
            torch.set_num_threads(c.threads)
            times = []
            for i in range(max(20, repeats) + 2):
                t0 = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                strategies.loss(net, x, y, strategy).backward()
                opt.step()
                if i >= 2:
                    times.append((time.perf_counter() - t0) * 1e3)
            bares.append(statistics.median(times))
        cell_ms, bare_ms = statistics.median(cells), statistics.median(bares)
        print(
            f"  {model}+{strategy} tau={tau}: cell {cell_ms:.3f} ms, bare {bare_ms:.3f} ms, "
            f"ratio {cell_ms / bare_ms:.3f} (target 0.85..1.15); rounds: cell "
            f"{', '.join(f'{v:.2f}' for v in cells)} / bare {', '.join(f'{v:.2f}' for v in bares)}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--taus", type=int, nargs="+", default=[64, 256, 1024, 4096])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--only-fidelity", action="store_true", help="just the harness check")
    args = p.parse_args()
    if not args.only_fidelity:
        scaling(args.taus, args.repeats)
        checkpointing(args.repeats)
    fidelity(args.repeats)


if __name__ == "__main__":
    main()
