"""Paired A/B timing: a cell and its baseline take turns in one process.

Two configurations timed minutes apart on a shared machine whose speed drifts
(and whose vCPUs differ) differ for reasons of their own.  So the two sides
are timed in alternating blocks, pair k being (A, B) when k is even and (B, A)
when k is odd -- A B B A A B ... -- so a linear drift favours neither side,
and each pair gives one ratio ``baseline / cell`` (how many times faster the
cell is than its baseline, at that moment).  The row reports the median and
quartiles of those per-pair ratios, not a ratio of two separately noisy
medians.

Between pairs the CPU affinity rotates (:func:`cpu_window`): both blocks of
pair k run on the same CPUs, and pair k + 1 on the next ones, so every pair
compares like with like and the pairs visit every vCPU.  Torch-free: the
blocks are callables that return seconds per run; the clock is the caller's.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass
class Paired:
    """Per-run seconds of each block, side by side, and the per-pair ratios b / a."""

    a: list[float] = field(default_factory=list)
    b: list[float] = field(default_factory=list)
    order: list[str] = field(default_factory=list)  # "a" / "b" in the order run

    @property
    def ratios(self) -> list[float]:
        return [b / a for a, b in zip(self.a, self.b) if a > 0]


def alternate(
    run_a: Callable[[int], float],
    run_b: Callable[[int], float],
    pairs: int,
    before: Callable[[int, str], None] = lambda pair, side: None,
    after: Callable[[int, str], None] = lambda pair, side: None,
    more: Callable[[Paired], bool] = lambda done: False,
) -> Paired:
    """``pairs`` pairs of blocks, A B B A A B ...; ``run_x(pair)`` times one block
    and returns its seconds per run; ``before(pair, side)`` / ``after(pair, side)``
    run untimed around each block (affinity, thread count, a time-out check).  Then,
    while ``more(pairs so far)`` says so, two more pairs at a time (B A A B or A B B A:
    the order stays balanced)."""
    out = Paired()
    k = 0
    while k < pairs or more(out):
        for _ in range(1 if k < pairs else 2):
            for side in ("a", "b") if k % 2 == 0 else ("b", "a"):
                before(k, side)
                seconds = (run_a if side == "a" else run_b)(k)
                after(k, side)
                getattr(out, side).append(seconds)
                out.order.append(side)
            k += 1
    return out


def relative_half_width(ratios: Sequence[float], level: float = 0.95) -> float:
    """The 95% t-interval of the mean log ratio, as a relative half-width of the ratio
    ((high − low) / 2 / estimate); inf with fewer than two ratios.  The in-process
    stopping rule of adaptive pairs, not an interval the report uses (that one is taken
    over replicates, fresh processes)."""
    logs = [math.log(r) for r in ratios if r > 0 and math.isfinite(r)]
    if len(logs) < 2:
        return math.inf
    from scipy import stats  # here: a cell's worker imports scipy only when it adapts

    mean, sd = statistics.fmean(logs), statistics.stdev(logs)
    half = float(stats.t.ppf(0.5 + level / 2, len(logs) - 1)) * sd / math.sqrt(len(logs))
    return (math.exp(mean + half) - math.exp(mean - half)) / 2 / math.exp(mean)


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(q1, median, q3), inclusive method (as ``measure``'s IQR); NaN when empty."""
    values = [v for v in values if v == v]
    if not values:
        return (float("nan"),) * 3
    if len(values) == 1:
        return (values[0],) * 3
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def row_fields(paired: Paired) -> dict:
    """The paired row keys (ms and ratios) from a :class:`Paired`."""
    b_q1, b_med, b_q3 = quartiles([1e3 * s for s in paired.b])
    r_q1, r_med, r_q3 = quartiles(paired.ratios)
    return {
        "baseline_step_ms_median": b_med,
        "baseline_step_ms_iqr": b_q3 - b_q1,
        "speedup_median": r_med,
        "speedup_q1": r_q1,
        "speedup_q3": r_q3,
        "speedup_samples": list(paired.ratios),
    }


# --------------------------------------------------------------------------- CPU affinity


def cpu_window(allowed: Sequence[int], size: int, offset: int) -> set[int]:
    """``size`` of the ``allowed`` CPUs, cyclically from position ``offset``
    (all of them when ``size`` >= their count)."""
    cpus = sorted(allowed)
    if size >= len(cpus):
        return set(cpus)
    return {cpus[(offset + i) % len(cpus)] for i in range(size)}


def can_pin() -> bool:
    return hasattr(os, "sched_setaffinity") and os.path.isdir("/proc/self/task")


def _threads() -> list[int]:
    return [int(t) for t in os.listdir("/proc/self/task")]


class Affinity:
    """Pin every thread of this process (``sched_setaffinity`` is per thread, and
    torch's intra-op threads are threads) to a set of CPUs; :meth:`restore` puts
    back what each thread had.  A no-op where the OS does not allow it."""

    def __init__(self):
        self.saved: dict[int, set[int]] = {}
        self.allowed = sorted(os.sched_getaffinity(0)) if can_pin() else []

    def pin(self, cpus: set[int]) -> None:
        if not self.allowed:
            return
        for tid in _threads():
            try:
                if tid not in self.saved:
                    self.saved[tid] = os.sched_getaffinity(tid)
                os.sched_setaffinity(tid, cpus)
            except OSError:  # a thread that ended, or a kernel that says no
                pass

    def restore(self) -> None:
        for tid, cpus in self.saved.items():
            try:
                os.sched_setaffinity(tid, cpus)
            except OSError:
                pass
        self.saved.clear()

    def __enter__(self) -> Affinity:
        return self

    def __exit__(self, *exc) -> None:
        self.restore()
