"""The sequential chain's gain over its control's, its blocks settled or not.

    python benchmarks/bench_settle.py [--processes 8] [--rounds 20]

Each process builds the quick job's chain cell (Elman, ``bptt_compiled``, text, B = 32,
H = 128, τ = 512, all cores against one thread) and times its four sides - the chain
and its control, on all cores and on one thread - in rounds, as
:func:`rnnbench.harness.single.time_chain` does (:func:`rnnbench.harness.sides.rounds`).
Half of the processes time every block settled (one untimed run of its own side first,
the product's way), half unsettled (the block timed straight after the side before it);
the two kinds alternate, so a drift of the machine favours neither.  Per process the
figure is the rule's: the median over rounds of the chain's speedup over its
control's; per kind, the t-interval of the mean log over processes.  Unsettled, a
one-thread block pinned right after an all-cores block shares its CPU with OpenMP's
still-spinning worker, which slows the chain's one-thread side more often than its
control's (the round order decides which follows an all-cores block).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys

CHILD = "--child"


def child(settled: bool, rounds: int) -> None:
    """One process: the cell's chain fields as the product times them
    (:func:`rnnbench.harness.single.time_chain`), with its blocks unsettled if asked."""
    from rnnbench.harness import sides, single
    from rnnbench.job.cell import Cell

    if not settled:
        timed = sides.Side.block

        def unsettled(self, clock, settle=False):
            return timed(self, clock)

        sides.Side.block = unsettled  # type: ignore[method-assign]
    cell = Cell(
        model="elman",
        strategy="bptt_compiled",
        task="text",
        batch=32,
        hidden=128,
        tau=512,
        threads="all",
        baseline={"threads": 1},
        repeats=rounds,
    )
    out = single.time_chain(cell, math.inf)
    chain, ops = out["chain_speedup_samples"], out["op_speedup_samples"]
    print(
        json.dumps(
            {
                "beyond": statistics.median(c / o for c, o in zip(chain, ops)),
                "chain": statistics.median(chain),
                "control": statistics.median(ops),
            }
        )
    )


def main() -> None:
    from rnnbench import stats

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=8, help="processes of each kind")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    found: dict[str, list[dict]] = {"settled": [], "unsettled": []}
    for _ in range(args.processes):
        for kind in found:
            out = subprocess.run(
                [sys.executable, __file__, CHILD, kind, str(args.rounds)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            found[kind].append(json.loads(out.strip().splitlines()[-1]))
    print(f"chain cell: B=32, H=128, tau=512, all cores vs 1 thread, {args.rounds} rounds")
    for kind, rows in found.items():
        print(f"{kind:9s} ({len(rows)} processes, 95% t-interval over them)")
        for what in ("beyond", "chain", "control"):
            values = [r[what] for r in rows]
            ci = stats.ratio_ci(values)
            each = " ".join(f"{v:.3f}" for v in values)
            print(f"  {what:8s} {ci.text('{:.3f}') if ci else 'n/a'}  each: {each}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == CHILD:
        child(sys.argv[2] == "settled", int(sys.argv[3]))
    else:
        main()
