"""Time-parallel training: speedup of 2 workers over 1, side by side (issue 5).

    python benchmarks/bench_timeparallel.py [--tau 65536] [--elman-tau 4096]
        [--workers 1 2] [--repeats 10] [--blocks 8] [--sequential [--rounds R]
        [--single] [--probe]]

One run on this machine, 1 thread per worker, embedded Ray with the machine's
CPUs:

- Jordan + teacher_forcing, B = 1, H = 128, text task (vocab 64), float32,
  tau = 65536: the sequence is split along time, so 2 workers should be close
  to 2x faster per step (target >= 1.7x);
- Elman + bptt, B = 1, H = 128, tau = 4096: only the batch can be split, one
  worker idles, so 2 workers give nothing (expected <= 1.1x).

Step times are measured inside the workers (slowest rank per step), with the
same Group and Worker code that ``rnnbench run`` uses.

Interleaved (the headline): the product's paired cell, the N-worker cell
with ``baseline: {workers: 1}`` (:func:`rnnbench.harness.group.run_cell`):
both groups are started together (their actors ask for a share of the CPUs
so both fit) and take turns one step at a time, A B B A ..., for ``blocks``
pairs.  This machine's speed drifts by tens of percent over minutes, and its
two vCPUs are not equally fast (a pure-Python loop pinned to each differs by
up to 1.7x; printed at the start), so between pairs every rank moves to the
next vCPU (both steps of a pair on the same ones).  The speedup is the median
of the per-pair ratios, with their quartiles; the one-worker teacher-forcing
baseline runs in chunks of the workers' slice (no allocator penalty the
workers escape).

``--sequential`` also runs the cells one after the other through
``group.run_cell`` (the sweep's path; median, IQR, fwd/bwd/comm, and
the CPU time each rank's process used per step against the step's wall time,
which shows starved workers and an idle rank's cost), with the machine's
load average beside each row.  ``--rounds`` repeats that comparison;
``--single`` adds the one-process row from rnnbench.harness.single
(torch.utils.benchmark); ``--probe`` adds the same steps run by plain
``torch.distributed`` processes (torch.multiprocessing, gloo, no Ray): the
same shards, loss, all-reduce and Adam step, timed the same way -- its speedup
beside the Ray harness's shows what the harness itself costs.
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import statistics
import time

import ray
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rnnbench.core import strategies
from rnnbench.harness import group
from rnnbench.harness import single as one_process
from rnnbench.job.cell import Cell

BASE = dict(
    batch=1,
    hidden=128,
    task="text",
    task_options={"vocab": 64},
    dtype="float32",
    threads=1,
    train_steps=0,
)


class CpuTimed(group.Worker):
    """A worker that also notes the CPU time its process used in each step ("cpu", s):
    far below the wall time, the rank was starved of a CPU."""

    def _step(self, optimize, step=None):
        c0 = time.process_time()
        record = super()._step(optimize, step)
        return {**record, "cpu": time.process_time() - c0}


def run(model: str, strategy: str, tau: int, workers: int, repeats: int, single: bool) -> dict:
    c = Cell(model=model, strategy=strategy, tau=tau, workers=workers, repeats=repeats, **BASE)
    load, per_rank = os.getloadavg()[0], []

    class Counted(group.Group):  # keeps each rank's per-step records
        def steps(self, n, optimize=True):
            per_rank[:] = super().steps(n, optimize)
            return per_rank

    row = one_process.run_cell(c) if single else group.run_cell(c, group=Counted, worker=CpuTimed)
    # per rank, the CPU time its process used per timed step (median, ms)
    row["cpu"] = [
        1e3 * statistics.median(r["cpu"] for r in rank[group.WARMUP :]) for rank in per_rank
    ] or None
    if row["status"] != "ok":
        raise SystemExit(f"{model}+{strategy} workers={workers}: {row['status']}: {row['error']}")
    row["load"] = (load, os.getloadavg()[0])
    return row


def _probe_rank(rank: int, world: int, port: int, cell: Cell, steps: int, queue) -> None:
    """One plain torch.distributed process: timeparallel's shard and loss, gloo, Adam."""
    torch.set_num_threads(cell.threads)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    task, x, y = group.cell_batch(cell)
    model = group.initial_model(cell, task.n_in, task.n_out)
    part = group.shard(cell, x, y, rank)
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=cell.lr)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        for p in params:
            p.grad = None
        if not part.empty:  # an idle rank (batch split, B < workers) only all-reduces
            for piece in group.local_losses(model, cell, part):
                piece.backward()
        flat = torch.cat(
            [(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in params]
        )
        dist.all_reduce(flat)
        for p, g in zip(params, flat.split([p.numel() for p in params])):
            p.grad = g.view_as(p)
        opt.step()
        times.append(time.perf_counter() - t0)
    queue.put((rank, times))
    dist.destroy_process_group()


def probe(cell: Cell, warmup: int = group.WARMUP) -> dict:
    """Median step (ms) of ``cell`` on plain torch.distributed processes, slowest rank per step."""
    with socket.socket() as sock:  # a free port (the probe is not the product: a tiny race)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    load = os.getloadavg()[0]
    procs = [
        ctx.Process(
            target=_probe_rank, args=(r, cell.workers, port, cell, warmup + cell.repeats, queue)
        )
        for r in range(cell.workers)
    ]
    for proc in procs:
        proc.start()
    per_rank = dict(queue.get() for _ in procs)
    for proc in procs:
        proc.join()
    steps = [1e3 * max(t) for t in zip(*(per_rank[r] for r in sorted(per_rank)))][warmup:]
    q = statistics.quantiles(steps, n=4, method="inclusive")
    return {
        "step_ms_median": statistics.median(steps),
        "step_ms_iqr": q[2] - q[0],
        "load": (load, os.getloadavg()[0]),
    }


def compare(
    name: str,
    model: str,
    strategy: str,
    tau: int,
    workers: list[int],
    repeats: int,
    single: bool,
    target: str,
    plain: bool = False,
) -> tuple[float, float | None]:
    print(f"\n{name}: B=1 H=128 n_in=n_out=64 float32 tau={tau}, 1 thread per worker")
    print(
        f"{'':<22}{'step ms':>9} {'IQR':>7} {'fwd':>8} {'bwd':>8} {'comm':>6} "
        f"{'speedup':>8}  split  load(before→after)  CPU ms/step per rank"
    )
    rows = {}
    if single:
        rows["1 process (measure)"] = run(model, strategy, tau, 1, repeats, True)
    for n in workers:
        rows[f"{n} worker{'s' if n > 1 else ''}"] = run(model, strategy, tau, n, repeats, False)
    if plain:
        for n in workers:
            c = Cell(model=model, strategy=strategy, tau=tau, workers=n, repeats=repeats, **BASE)
            rows[f"{n} plain process{'es' if n > 1 else ''}"] = probe(c)
    base = rows[f"{workers[0]} worker{'s' if workers[0] > 1 else ''}"]["step_ms_median"]
    plain_base = rows.get(f"{workers[0]} plain process", {}).get("step_ms_median")
    for label, r in rows.items():
        ref = plain_base if "plain" in label else base
        if "plain" in label:
            print(
                f"{label:<22}{r['step_ms_median']:>9.1f} {r['step_ms_iqr']:>7.1f} "
                f"{'':>8} {'':>8} {'':>6} {ref / r['step_ms_median']:>7.2f}x  "
                f"{strategies.get(strategy).split:<6} "
                f"{r['load'][0]:.1f}→{r['load'][1]:.1f}"
            )
            continue
        print(
            f"{label:<22}{r['step_ms_median']:>9.1f} {r['step_ms_iqr']:>7.1f} "
            f"{r['fwd_ms_median']:>8.1f} {r['bwd_ms_median']:>8.1f} "
            f"{r['comm_ms_median']:>6.2f} {ref / r['step_ms_median']:>7.2f}x  "
            f"{r['split']:<6} {r['load'][0]:.1f}→{r['load'][1]:.1f}"
            + (f"  {' / '.join(f'{v:.0f}' for v in r['cpu'])}" if r["cpu"] else "")
            + (f"  [{r['error']}]" if r["error"] else "")
        )
    ratio = base / rows[f"{workers[-1]} workers"]["step_ms_median"]
    print(f"  {workers[-1]} workers vs {workers[0]}: {ratio:.2f}x (target {target})")
    plain_ratio = None
    if plain_base:
        plain_ratio = plain_base / rows[f"{workers[-1]} plain processes"]["step_ms_median"]
        print(
            f"  plain torch.distributed, {workers[-1]} processes vs {workers[0]}: "
            f"{plain_ratio:.2f}x"
        )
    return ratio, plain_ratio


def vcpu_speeds(loops: int = 3) -> dict[int, float]:
    """ms for a pure-Python loop pinned to each CPU (best of ``loops``): are they alike?"""
    before, out = os.sched_getaffinity(0), {}
    try:
        for cpu in sorted(before):
            os.sched_setaffinity(0, {cpu})
            best = math.inf
            for _ in range(loops):
                t0 = time.perf_counter()
                total = 0
                for i in range(1_000_000):
                    total += i * i
                best = min(best, time.perf_counter() - t0)
            out[cpu] = 1e3 * best
    finally:
        os.sched_setaffinity(0, before)
    return out


def interleaved(
    name: str,
    model: str,
    strategy: str,
    tau: int,
    workers: list[int],
    repeats: int,
    blocks: int,
    target: str,
) -> float:
    """The product's paired cell: the N-worker cell with baseline {workers: 1}
    (rnnbench.harness.group.run_cell; both groups up, taking turns, A B B A ...,
    ranks moved to the next vCPUs between pairs).  ``blocks`` pairs of one step
    each; ``repeats`` is unused here (kept for the sequential comparison)."""
    n = workers[-1]
    c = Cell(
        model=model,
        strategy=strategy,
        tau=tau,
        workers=n,
        repeats=blocks,
        baseline={"workers": workers[0]},
        **BASE,
    )
    print(
        f"\n{name}: B=1 H=128 n_in=n_out=64 float32 tau={tau}, 1 thread per worker, "
        f"{blocks} pairs of one step each, taking turns"
    )
    load = os.getloadavg()[0]
    row = group.run_cell(c)
    if row["status"] != "ok" or row["baseline_error"]:
        raise SystemExit(f"{name}: {row['status']}: {row['error'] or row['baseline_error']}")
    print(f"  baseline as run: {row['baseline_config']}")
    print(
        f"  {n} workers: median {row['step_ms_median']:.1f} ms (IQR {row['step_ms_iqr']:.1f}), "
        f"{row['minor_faults_per_step']:.0f} minor faults/step; {workers[0]} worker: "
        f"{row['baseline_step_ms_median']:.1f} ms (IQR {row['baseline_step_ms_iqr']:.1f}), "
        f"{row['baseline_minor_faults_per_step']:.0f} faults/step"
    )
    print(
        f"  {n} workers vs {workers[0]}: per-pair speedup median {row['speedup_median']:.2f}x "
        f"[Q1 {row['speedup_q1']:.2f}, Q3 {row['speedup_q3']:.2f}] (target {target}); "
        f"load {load:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    return row["speedup_median"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tau", type=int, default=65536, help="Jordan sequence length")
    p.add_argument("--elman-tau", type=int, default=4096, help="Elman sequence length")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--blocks", type=int, default=8, help="interleaved pairs (default 8)")
    p.add_argument(
        "--sequential",
        action="store_true",
        help="also time the cells one after the other through run_cell",
    )
    p.add_argument("--rounds", type=int, default=1, help="rounds of the sequential comparison")
    p.add_argument(
        "--single", action="store_true", help="sequential: add the one-process measure row"
    )
    p.add_argument(
        "--probe",
        action="store_true",
        help="sequential: add plain torch.distributed processes (no Ray)",
    )
    args = p.parse_args()
    from rnnbench import raysession

    raysession.start(num_cpus=os.cpu_count())  # embedded, loopback only
    print(f"{os.cpu_count()} CPUs; load average at start {os.getloadavg()}")
    print(
        "pure-Python loop pinned to each CPU (ms, best of 3): "
        + ", ".join(f"cpu{c} {ms:.0f}" for c, ms in vcpu_speeds().items())
    )
    tf = interleaved(
        "Jordan + teacher_forcing (time split)",
        "jordan",
        "teacher_forcing",
        args.tau,
        args.workers,
        args.repeats,
        args.blocks,
        ">= 1.7x",
    )
    bp = interleaved(
        "Elman + bptt (batch split only)",
        "elman",
        "bptt",
        args.elman_tau,
        args.workers,
        args.repeats,
        args.blocks,
        "<= 1.1x",
    )
    summary = []
    for r in range(args.rounds if args.sequential else 0):
        print(f"\n=== sequential round {r + 1} of {args.rounds}")
        tf_s, tf_plain = compare(
            "Jordan + teacher_forcing (time split)",
            "jordan",
            "teacher_forcing",
            args.tau,
            args.workers,
            args.repeats,
            args.single,
            ">= 1.7x",
            plain=args.probe,
        )
        bp_s, bp_plain = compare(
            "Elman + bptt (batch split only)",
            "elman",
            "bptt",
            args.elman_tau,
            args.workers,
            args.repeats,
            args.single,
            "<= 1.1x",
            plain=args.probe,
        )
        summary.append((tf_s, tf_plain, bp_s, bp_plain))
    print(f"\nsummary ({args.workers[-1]} workers vs {args.workers[0]}):")
    print(
        f"  interleaved: teacher_forcing {tf:.2f}x (target >= 1.7x), "
        f"bptt {bp:.2f}x (target <= 1.1x)"
    )
    for i, (tf_s, tf_plain, bp_s, bp_plain) in enumerate(summary, 1):
        print(
            f"  sequential round {i}: teacher_forcing {tf_s:.2f}x"
            + (f" (plain torch.distributed {tf_plain:.2f}x)" if tf_plain else "")
            + f", bptt {bp_s:.2f}x"
            + (f" (plain torch.distributed {bp_plain:.2f}x)" if bp_plain else "")
        )
    if len(summary) > 1:
        tf_m, bp_m = (statistics.median(r[i] for r in summary) for i in (0, 2))
        print(
            f"  sequential, median over {len(summary)} rounds: teacher_forcing {tf_m:.2f}x, "
            f"bptt {bp_m:.2f}x"
        )
    ray.shutdown()


if __name__ == "__main__":
    main()
