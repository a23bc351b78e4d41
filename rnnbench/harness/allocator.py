"""The C allocator's conditions while timing: every step reuses its pages.

glibc's malloc serves a block of 32 MiB or more (``M_MMAP_THRESHOLD``'s
maximum) with a fresh ``mmap`` and unmaps it on ``free``, so a training step
whose tensors reach that size pays a page fault per 4 KiB of each of them on
every step, while a step with smaller tensors reuses heap pages.  Step time
then jumps where a tensor crosses the threshold (at some τ, B or H): a cost of
the allocator, not of the algorithm, and one that differs between two sides of
a comparison whose tensors differ in size.

:func:`steady` gives every cell the same conditions: no ``mmap`` for blocks
(``M_MMAP_MAX = 0``) and no returning of freed heap to the kernel
(``M_TRIM_THRESHOLD`` at its largest), so after the warm-up steps a step of
any size touches pages it already has -- as a caching allocator (CUDA's, or
jemalloc's) would.  The settings are process-wide; the page reuse is certain
for the main arena, which serves the main thread, where Ray runs tasks (other
threads' arenas may still map fresh pages for the largest blocks).  Rows record
it (``allocator``) beside ``minor_faults_per_step``, which shows whether it held.

Freed heap then stays with the process, so :func:`release` hands it back
(``malloc_trim(0)``) before each cell: a cell's peak RSS is its own, not that of
a larger cell the same (reused) Ray worker ran before.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt parameters (glibc's malloc.h)
STEADY = "glibc: no mmap, no trim"
DEFAULT = "default"

_state: str | None = None


def steady() -> str:
    """Turn glibc's per-allocation ``mmap`` and heap trimming off for this process
    (once; later calls return the same); the state, as rows record it.  Where the
    C library has no ``mallopt`` (not glibc) nothing changes: :data:`DEFAULT`."""
    global _state
    if _state is None:
        try:
            mallopt = ctypes.CDLL(None).mallopt
            applied = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
        except Exception:
            applied = False
        _state = STEADY if applied else DEFAULT
    return _state


def release() -> None:
    """Hand the free heap back to the kernel (``malloc_trim(0)``) under :func:`steady`;
    nothing otherwise."""
    if _state == STEADY:
        try:
            ctypes.CDLL(None).malloc_trim(0)
        except Exception:
            pass


def state() -> str:
    """The allocator conditions of this process (:func:`steady` not called: default)."""
    return _state or DEFAULT
