"""Memory, measured two ways, plus the analytic figure each strategy should hit.

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
:mod:`rnnbench.procstat`'s ``peak_rss_bytes`` beside it.  Never tracemalloc:
it does not see tensor storage.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.autograd import DeviceType
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
    total = sum(n for ptr, (ref, n) in mode.storages.items()
                if ptr not in excluded and not ref.expired())
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

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    return cpu_peak(prof), "cpu_profiler_memory_events"


def cpu_peak(prof) -> int:
    """Running sum of the profiler's allocation (+) and free (-) events; its maximum."""
    events = [(e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
              if e.name() == "[memory]" and e.device_type() == DeviceType.CPU]
    level = peak = 0
    for _, n in sorted(events):
        level += n
        peak = max(peak, level)
    return int(peak)


# --------------------------------------------------------------------------- analytic


def expected_saved_bytes(model: str, strategy: str, options: dict, tau: int, batch: int,
                         hidden: int, n_out: int, n_params: int, itemsize: int) -> int:
    """What each strategy must keep for backward, in bytes (see docs/memory in README).

    Elman loop: every h^(t) (tanh output, also W's matmul input) plus h^(0), the
    stacked copy the output layer reads, and the log-softmax output:
    ((2 tau + 1) B H + tau B n_out).  Jordan teacher forcing: tanh output and
    log-softmax output, tau B (H + n_out).  Strategies that take each segment's
    gradient during the forward keep one gradient-sized buffer (n_params).
    Checkpointing keeps each segment's entry state, segments * B * H.
    """
    T, B, H, O = tau, batch, hidden, n_out
    scalar = itemsize  # cross-entropy keeps its total weight (one element)
    if strategy in ("truncated_bptt",) or (strategy == "teacher_forcing" and options.get("chunk")):
        return n_params * itemsize + scalar
    if strategy == "checkpointed_bptt":
        seg = options.get("segments") or max(1, round(math.sqrt(T)))
        seg = min(seg, T)
        if model == "single_output":  # plus the last state and its one output
            return (seg * B * H + B * H + B * O) * itemsize + scalar
        return seg * B * H * itemsize
    if strategy == "teacher_forcing":
        return (T * B * (H + O)) * itemsize + scalar
    if model == "single_output":  # bptt or bptt_fused: every h, one output
        return ((T + 1) * B * H + B * O) * itemsize + scalar
    if model == "elman":  # bptt or bptt_fused
        return ((2 * T + 1) * B * H + T * B * O) * itemsize + scalar
    # Jordan, stepping through its own outputs: h^(t), the fed-back f^(t-1)
    # (f^(0) .. f^(tau-1)) and the log-softmax output.  Scheduled sampling with
    # softmax feedback also keeps each softmax output beside the mixed feedback.
    fed = 3 if strategy == "scheduled_sampling" and options.get("feedback") == "softmax" else 2
    return T * B * (H + fed * O) * itemsize + scalar
