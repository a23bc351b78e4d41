"""Timing one callable in blocks, alone or taking turns with another (a :class:`Side`).

A side is something timed — a training step, the sequential chain, one step's
operations — with its thread count (resolved once), its block size, and what it cost
the process while timed: minor page faults, CPU time against wall time.  :func:`alone`
times ``repeats`` blocks of it; :func:`pair` times two sides in alternating blocks
(:func:`rnnbench.harness.paired.alternate`), both blocks of a pair on the same CPUs, the
CPUs moved between pairs, and — with a ``precision`` — adds pairs until the per-pair
ratios' 95% interval is that narrow, or a cap is reached (:class:`Stop`).

Where sides take turns, a block starts with one untimed run of its own side on its
thread count and CPUs (``settle``): what the side before it left behind is not timed
into it.  OpenMP's workers spin for a while after their last parallel region, so a
one-thread block pinned to a CPU right after a P-thread block shares that CPU with a
spinning worker; its caches hold the other side's data.
"""

from __future__ import annotations

import math
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass

import torch

from rnnbench.harness import paired, procstat
from rnnbench.harness.training import WARMUP

PAIR_CAP = 10  # adaptive pairs stop at this many times the asked-for pairs
PRECISION_BUDGET_S = 120.0  # ... or after this many seconds of adding pairs


def block_size(run_s: float, floor_s: float = 0.01) -> int:
    """Runs per timing sample for a ``run_s``-second statement: the smallest power
    of ten that lasts at least ``floor_s``, or one run.  The clock's own cost -
    well under a microsecond on the CPU, a synchronise of a few on CUDA - then
    stays below 1e-3 of a sample."""
    run_s = max(run_s, 1e-9)
    number = 1
    while number * run_s < floor_s:
        number *= 10
    return number


@dataclass
class Side:
    """One timed callable: its thread count, block size, and what its timed runs cost
    the process (minor page faults, CPU seconds, wall seconds)."""

    run: Callable[[], object]
    threads: int  # resolved once by the caller, before any pinning
    number: int = 1
    faults: int = 0
    runs: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    on_ns: int = 0  # working threads' on-CPU time while timed (procstat.working_threads)
    wait_ns: int = 0  # working threads' runqueue wait while timed

    def warm(self, clock: Callable[[], float]) -> None:
        """``WARMUP`` untimed runs; the last sizes the blocks (:func:`block_size`)."""
        torch.set_num_threads(self.threads)
        timer = timeit.Timer(self.run, timer=clock)
        one = 0.0
        for _ in range(WARMUP):
            one = timer.timeit(1)
        self.number = block_size(one)

    def block(self, clock: Callable[[], float], settle: bool = False) -> float:
        """One timed block of ``number`` runs (``timeit``, the collector off): seconds
        per run.  With ``settle``, one untimed run first (a block that follows another
        side's: see the module's text)."""
        torch.set_num_threads(self.threads)
        if settle:
            self.run()
        s0 = procstat.schedstat()
        f0, c0, w0 = procstat.minor_faults(), time.process_time(), time.perf_counter_ns()
        seconds = timeit.Timer(self.run, timer=clock).timeit(self.number) / self.number
        wall_ns = time.perf_counter_ns() - w0
        self.cpu_s += time.process_time() - c0
        self.wall_s += wall_ns / 1e9
        self.faults += procstat.minor_faults() - f0
        s1 = procstat.schedstat()
        if s0 is not None and s1 is not None:
            on, wait = procstat.working_threads(s0, s1, wall_ns)
            self.on_ns += on
            self.wait_ns += wait
        self.runs += self.number
        return seconds

    def forget(self) -> None:
        """Start counting afresh (after blocks that are not the measurement)."""
        self.faults = self.runs = self.on_ns = self.wait_ns = 0
        self.cpu_s = self.wall_s = 0.0

    @property
    def faults_per_step(self) -> float:
        return self.faults / self.runs if self.runs else math.nan

    @property
    def wait_share(self) -> float:
        """Runqueue wait over wait + on-CPU time while timed (:func:`procstat.wait_share`)."""
        return procstat.wait_share(self.on_ns, self.wait_ns)

    @property
    def cpu_share(self) -> float:
        """CPU time over wall time x threads while timed (:func:`procstat.cpu_share`)."""
        return procstat.cpu_share(self.cpu_s, self.wall_s, self.threads)


def alone(
    side: Side, repeats: int, clock: Callable[[], float], check: Callable[[str], None]
) -> list[float]:
    """``repeats`` blocks of ``side``: seconds per run of each."""
    samples = []
    for _ in range(repeats):
        samples.append(side.block(clock))
        check("timing")
    return samples


def rounds(
    sides: list[Side], repeats: int, clock: Callable[[], float], check: Callable[[str], None]
) -> list[list[float]]:
    """``repeats`` rounds of one block of every side, the order reversed each round
    (A B C, C B A, ...) so no side always follows another; every block of round k on its
    side's thread count of CPUs from position k (sides with as many threads share the
    CPUs of the round), the CPUs moved between rounds, each block settled (one untimed
    run first).  Each side's seconds per run, per round: the k-th samples of all sides
    come from one round."""
    samples: list[list[float]] = [[] for _ in sides]
    with paired.Affinity() as affinity:
        for k in range(repeats):
            order = range(len(sides)) if k % 2 == 0 else reversed(range(len(sides)))
            for i in order:
                if affinity.allowed:
                    affinity.pin(paired.cpu_window(affinity.allowed, sides[i].threads, k))
                samples[i].append(sides[i].block(clock, settle=True))
            check("timing (rounds)")
    return samples


def in_rounds(samples: list[list[float]]) -> list[float]:
    """Each side's time from :func:`rounds`' samples, read within rounds: its time over
    the last side's in the same round, the median over rounds, times the last side's
    median.  Whatever speed a round ran at (its CPU, a neighbour) divides out."""
    top = samples[-1]
    scale = paired.quartiles(top)[1]
    return [paired.quartiles([t / m for t, m in zip(times, top)])[1] * scale for times in samples]


@dataclass
class Stop:
    """When adaptive pairs stop: at ``precision`` (relative 95% half-width of the pair
    ratios), or at the pair or time cap.  Records what was reached and why it stopped."""

    precision: float | None
    max_pairs: int
    budget_s: float
    started: float = 0.0
    reached: float = math.nan
    reason: str | None = None

    def more(self, done: paired.Paired) -> bool:
        """Whether to add pairs (called after each round, see ``paired.alternate``)."""
        self.reached = paired.relative_half_width(done.ratios)
        if self.precision is None:
            return False
        if self.reached <= self.precision:
            self.reason = "target"
        elif len(done.ratios) >= self.max_pairs:
            self.reason = "pair cap"
        elif time.perf_counter() - self.started > self.budget_s:
            self.reason = "time cap"
        else:
            return True
        return False


def pair(
    a: Side,
    b: Side,
    pairs: int,
    clock: Callable[[], float],
    check: Callable[[str], None],
    precision: float | None = None,
    budget_s: float = PRECISION_BUDGET_S,
) -> tuple[paired.Paired, Stop]:
    """``pairs`` pairs of blocks, A B B A ..., both blocks of pair k pinned to the same
    CPUs (``threads`` of them, from position k), each block settled (one untimed run
    first); with ``precision``, more pairs until the ratios' interval is that narrow or
    a cap is hit."""
    stop = Stop(precision, PAIR_CAP * pairs, budget_s, started=time.perf_counter())
    with paired.Affinity() as affinity:

        def pin(k: int, side: str) -> None:
            if affinity.allowed:
                threads = (a if side == "a" else b).threads
                affinity.pin(paired.cpu_window(affinity.allowed, threads, k))

        result = paired.alternate(
            lambda k: a.block(clock, settle=True),
            lambda k: b.block(clock, settle=True),
            pairs,
            before=pin,
            after=lambda k, side: check("timing (pairs)"),
            more=stop.more,
        )
    return result, stop
