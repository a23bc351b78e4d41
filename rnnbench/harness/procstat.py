"""What the operating system says: this process's minor page faults and peak RSS, and how
much of the machine a cell got (load average, stolen time, CPU share).

Torch-free.  ``minor_faults()`` is ``getrusage(RUSAGE_SELF).ru_minflt`` (every
thread of the process): the pages the kernel had to map on first touch, e.g.
when glibc hands out a fresh ``mmap`` for a block of 32 MiB or more
(``M_MMAP_THRESHOLD``'s maximum) and unmaps it again on ``free``.

Peak RSS: the kernel's high-water mark of the resident set, ``VmHWM`` in
``/proc/self/status``, after a reset through ``/proc/self/clear_refs`` (write
``5``; Linux >= 4.0) -- the peak over exactly the measured stretch.  Where that
file cannot be written the fallback is ``ru_maxrss``, the peak over the
process's whole life (so also over earlier cells in a reused Ray worker); the
method is returned beside the figure.
"""

from __future__ import annotations

import math
import os
import resource
from dataclasses import dataclass

HWM = "vmhwm_after_clear_refs"
MAXRSS = "ru_maxrss_process_lifetime"


def minor_faults() -> int:
    """Minor page faults of this process so far (all threads)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def reset_peak_rss() -> str:
    """Start a new peak-RSS stretch; returns the method :func:`peak_rss` will use."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return HWM
    except OSError:
        return MAXRSS


def peak_rss(method: str) -> int:
    """Peak resident set in bytes since :func:`reset_peak_rss` (or process start)."""
    if method == HWM:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


# --------------------------------------------------------------------------- contention
# How much of the machine a cell got: rows record it, the report marks contended rows
# (rnnbench.facts.CPU_SHARE_MIN, and a load above the node's CPUs before the cell began).


def load_average() -> float:
    """The 1-minute load average (NaN where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return math.nan


def cpu_jiffies() -> tuple[int, int] | None:
    """(steal, total) CPU time of the whole machine so far, from ``/proc/stat``'s first
    line (None where there is none)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return (values[7] if len(values) > 7 else 0), sum(values)


@dataclass(frozen=True)
class Snapshot:
    """The machine at one moment: load average and CPU time (for :func:`contention`)."""

    load: float
    jiffies: tuple[int, int] | None

    @classmethod
    def now(cls) -> Snapshot:
        return cls(load_average(), cpu_jiffies())


def contention(before: Snapshot, after: Snapshot, node_cpus: int) -> dict[str, float]:
    """The row's machine fields over a cell: load before and after, the share of CPU
    time the hypervisor stole (NaN where not known), the node's CPUs."""
    steal = math.nan
    if before.jiffies and after.jiffies:
        total = after.jiffies[1] - before.jiffies[1]
        steal = (after.jiffies[0] - before.jiffies[0]) / total if total > 0 else math.nan
    return {
        "load_before": before.load,
        "load_after": after.load,
        "steal_share": steal,
        "node_cpus": node_cpus,
    }


def cpu_share(cpu_s: float, wall_s: float, threads: int) -> float:
    """Process CPU time over wall time x threads: 1 when the process had every CPU it
    asked for the whole time, well below 1 when it waited for them."""
    return cpu_s / (wall_s * threads) if wall_s > 0 and threads > 0 else math.nan


def schedstat() -> dict[int, tuple[int, int]] | None:
    """{thread id: (on-CPU ns, runqueue-wait ns)} of this process's threads so far, from
    ``/proc/self/task/*/schedstat`` (None where the kernel keeps no such statistics).
    Waiting on a runqueue is time a thread was ready to run and no CPU took it: the direct
    measure of being crowded out, whatever the thread count."""
    out: dict[int, tuple[int, int]] = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                fields = f.read().split()
        except OSError:
            continue  # a thread that ended
        if len(fields) >= 2:
            out[int(tid)] = (int(fields[0]), int(fields[1]))
    return out


BUSY = 0.05  # a thread on a CPU this share of a timed block's wall time was doing its work


def working_threads(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]], wall_ns: int
) -> tuple[int, int]:
    """(on-CPU ns, runqueue-wait ns) over a timed block of the threads that did its work:
    those on a CPU at least :data:`BUSY` of ``wall_ns``.  A process's other threads (Ray's
    event loops and heartbeats, an idle pool) wake briefly and, pinned beside a busy
    thread, wait for it: their wait says nothing about the timed work being crowded out."""
    on = wait = 0
    for tid, (on1, wait1) in after.items():
        on0, wait0 = before.get(tid, (0, 0))
        if on1 - on0 >= BUSY * wall_ns:
            on += on1 - on0
            wait += wait1 - wait0
    return on, wait


def wait_share(on_ns: int, wait_ns: int) -> float:
    """Runqueue wait over (wait + on-CPU time): 0 when every thread ran as soon as it
    could, towards 1 when it mostly waited for a CPU."""
    total = on_ns + wait_ns
    return wait_ns / total if total > 0 else math.nan


def warn_if_loaded(command: str) -> bool:
    """One warning line on stderr when this node is already loaded beyond its CPUs before
    a command starts timing; whether it was."""
    import sys

    from rnnbench.facts import node_cpus

    load, cpus = load_average(), node_cpus()
    if load > cpus:
        print(
            f"rnnbench {command}: warning: the node is already loaded (load average "
            f"{load:.1f} on {cpus} CPUs): timings will be contended; rows record it",
            file=sys.stderr,
        )
        return True
    return False
