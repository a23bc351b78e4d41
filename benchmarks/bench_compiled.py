"""The compiled BPTT loop against the framework loop, cuDNN-style fused RNN and teacher forcing.

    python benchmarks/bench_compiled.py [--rounds 9] [--threads 1 2] [--setting B TAU ...]

One training step's forward + backward (gradients set to None first, no
optimiser) of Elman + ``bptt``, + ``bptt_fused``, + ``bptt_compiled`` and
Jordan + ``teacher_forcing``, H = 128, n_in = n_out = 64 (the text task),
float32, at B = 1, tau = 1024 and B = 32, tau = 4096.  All four take turns
round by round in one process (the order rotates every round), each round
one block of runs per strategy (``rnnbench.harness.single.block_size``), so drift
and the vCPU hit all alike.  Prints per setting and thread count each
strategy's median step time, its compute-bound time (its own FLOPs over the
node's GEMM rate, ``rnnbench.harness.gemm``) and the ratio of the two, and the ratio
of each strategy's time to ``bptt_compiled``'s in the same round: median and
quartiles over the rounds.
"""

from __future__ import annotations

import argparse
import timeit

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from rnnbench.core import compiled, models, strategies, tasks
from rnnbench.harness import allocator, gemm, single

CASES = (
    ("elman", "bptt"),
    ("elman", "bptt_fused"),
    ("elman", "bptt_compiled"),
    ("jordan", "teacher_forcing"),
)
REFERENCE = "bptt_compiled"
SETTINGS = ((1, 1024), (32, 4096))  # (batch, tau)
HIDDEN = 128


def step_fn(model_name: str, strategy: str, batch: int, tau: int):
    """forward + backward of one batch, and the step's FLOPs."""
    task = tasks.make("text")
    torch.manual_seed(0)
    net = models.build(model_name, task.n_in, HIDDEN, task.n_out)
    x, y = task.batch(tau, batch, seed=0, dtype=torch.float32)

    def step():
        net.zero_grad(set_to_none=True)
        strategies.loss(net, x, y, strategy=strategy).backward()

    with FlopCounterMode(display=False) as counter:
        step()
    return step, counter.get_total_flops()


def quartiles(values) -> str:
    q1, q2, q3 = np.quantile(values, [0.25, 0.5, 0.75])
    return f"{q2:7.2f} [{q1:6.2f}, {q3:6.2f}]"


def run(batch: int, tau: int, threads: int, rounds: int) -> None:
    torch.set_num_threads(threads)
    rate = gemm.gflops("float32", "cpu")
    steps = {s: step_fn(m, s, batch, tau) for m, s in CASES}
    number = {}
    for s, (fn, _) in steps.items():
        for _ in range(single.WARMUP):
            one = timeit.Timer(fn).timeit(1)
        number[s] = single.block_size(one)
    times = {s: [] for s in steps}
    names = list(steps)
    for r in range(rounds):
        for s in names[r % len(names) :] + names[: r % len(names)]:
            fn = steps[s][0]
            times[s].append(timeit.Timer(fn).timeit(number[s]) / number[s] * 1e3)
    print(
        f"\nB = {batch}, tau = {tau}, H = {HIDDEN}, n_in = n_out = 64, float32, "
        f"{threads} thread(s); GEMM rate {rate:.1f} GFLOP/s; {rounds} rounds"
    )
    print(
        f"{'strategy':18} {'step ms':>9} {'bound ms':>9} {'step/bound':>10} "
        f"{'time / ' + REFERENCE + ' per round: median [q1, q3]':>44}"
    )
    ref = np.array(times[REFERENCE])
    for s in names:
        t = np.array(times[s])
        bound = steps[s][1] / (rate * 1e9) * 1e3
        print(
            f"{s:18} {np.median(t):9.2f} {bound:9.2f} {np.median(t) / bound:10.1f} "
            f"{quartiles(t / ref):>44}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument(
        "--setting",
        type=int,
        nargs=2,
        action="append",
        metavar=("B", "TAU"),
        help="batch and tau (repeatable); default: 1 1024 and 32 4096",
    )
    args = ap.parse_args()
    compiled.load()  # build or load the kernel before anything is timed
    print(f"allocator: {allocator.steady()} (as every rnnbench cell)")
    for threads in args.threads:
        for batch, tau in args.setting or SETTINGS:
            run(batch, tau, threads, args.rounds)


if __name__ == "__main__":
    main()
