"""Memory, measured two ways (the analytic figure is each Strategy's ``saved_bytes``).

``saved_bytes``: bytes the forward pass leaves alive for the backward pass.
Every storage the forward allocates is recorded (a TorchDispatchMode sees
every tensor op, below autograd, so custom Functions and checkpointing are
seen too); those still alive when the forward returns are what the graph
holds.  Counted once per storage; parameters, the inputs x, y and the
returned loss are excluded.  Deterministic and machine-independent.

``peak_bytes``: the peak of tensor bytes allocated above the starting level
during one forward + backward (no optimizer step) — CUDA
``max_memory_allocated`` after a reset; on CPU the running sum of the
profiler's tensor allocation (+) and free (-) events in time order.  Tensors
only: not the process's footprint, and blind to how the allocator got the
memory (fresh pages or reused ones); the process's real resident-set peak is
:mod:`rnnbench.harness.procstat`'s ``peak_rss_bytes`` beside it.  Never tracemalloc:
it does not see tensor storage.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable

import torch
from torch.autograd import DeviceType
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class _Allocations(TorchDispatchMode):
    """Record every storage produced by a tensor op: data pointer -> (weak ref, bytes)."""

    def __init__(self):
        super().__init__()
        self.storages: dict[int, tuple[StorageWeakRef, int]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                s = t.untyped_storage()
                ptr = s.data_ptr()
                known = self.storages.get(ptr)
                if ptr and (known is None or known[0].expired()):
                    self.storages[ptr] = (StorageWeakRef(s), s.nbytes())
        return out


def _ptrs(tensors: Iterable[torch.Tensor]) -> set[int]:
    return {t.untyped_storage().data_ptr() for t in tensors if isinstance(t, torch.Tensor)}


def saved_bytes(forward: Callable[[], torch.Tensor], keep: Iterable[torch.Tensor] = ()) -> int:
    """Bytes alive for backward after ``forward()`` returns its loss.

    ``keep``: tensors that exist before and after (parameters, x, y); their
    storages are never counted.  The graph is freed (backward) before return.
    """
    mode = _Allocations()
    with mode:
        out = forward()
    excluded = _ptrs(keep) | _ptrs([out])
    total = sum(
        n for ptr, (ref, n) in mode.storages.items() if ptr not in excluded and not ref.expired()
    )
    if out.requires_grad:
        out.backward()  # free the graph (and anything it held)
    return int(total)


def peak_bytes(step: Callable[[], None], device: str = "cpu") -> tuple[int, str]:
    """Peak tensor bytes allocated above the starting level while ``step()`` runs, and how."""
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated() - base), "cuda_max_memory_allocated"
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _silent_stderr():  # Kineto prints "USDT: ... profiler_start" on fd 2 at any log level
        prof.start()
    try:
        step()
    finally:
        with _silent_stderr():  # "... profiler_stop"
            prof.stop()
    return cpu_peak(prof), "cpu_profiler_memory_events"


@contextlib.contextmanager
def _silent_stderr():
    """File descriptor 2 sent to /dev/null for the block (C++ logging bypasses sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(null)
        os.close(saved)


def cpu_peak(prof) -> int:
    """Running sum of the profiler's allocation (+) and free (-) events; its maximum."""
    events = [
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == DeviceType.CPU
    ]
    level = peak = 0
    for _, n in sorted(events):
        level += n
        peak = max(peak, level)
    return int(peak)
