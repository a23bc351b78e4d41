"""What the operating system says about this process: minor page faults and peak RSS.

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

import resource

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
