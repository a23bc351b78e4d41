"""The Elman recurrence and its exact BPTT as compiled sequential loops (C++).

Only the part of BPTT that must run step by step is compiled
(``csrc/elman.cpp``, one BLAS call and one vectorised tanh per step, no tensor
created, nothing dispatched inside the loop):

    forward   h^(t) = tanh(a^(t) + W h^(t-1)),  a^(t) = b + U x^(t),  h^(0) = 0
    backward  delta^(t) = (1 - h^(t)^2) * (g^(t) + W^T delta^(t+1))   (eqs. 10.21, 10.26)

where g^(t) = dL/dh^(t) through the outputs (V^T (y_hat^(t) - 1_y) for the
book's softmax output).  The input term a = b + U x, the output layer
o = c + V h and dL/dW = sum_t delta^(t) h^(t-1)^T are batched torch matrix
products: none of them is sequential.

The kernel is built by ``torch.utils.cpp_extension`` once per machine and
cached in torch's extension folder (``TORCH_EXTENSIONS_DIR``, by default
``~/.cache/torch_extensions``); :func:`load` builds or loads it, once per
process.  A machine that cannot build it gets a :class:`CompileError` naming the
compiler's first error line.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from rnnbench.core.recurrence import recurrence as loop_recurrence

NAME = "rnnbench_elman"  # the extension, and the namespace of its operators
SOURCE = Path(__file__).with_name("csrc") / "elman.cpp"
CFLAGS = ("-O3",)

_loaded: dict[str, object] = {}  # "ops", "path" or "error": once per process, failures too


class CompileError(RuntimeError):
    """The compiled kernel could not be built on this machine."""


def first_error_line(text: str) -> str:
    """The line of a build log that says what went wrong (the compiler's, not ninja's)."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    for line in lines:
        if re.search(
            r"error|not found|no such file|cannot|permission denied", line, re.I
        ) and not line.startswith("Error building extension"):
            return line
    return lines[0] if lines else "unknown error"


def load():
    """Build (first time on this machine) or load the kernel; its operators.

    Raises :class:`CompileError` when it cannot be built - on every call of the
    process, without trying again.
    """
    if "ops" in _loaded:
        return _loaded["ops"]
    if "error" in _loaded:
        raise CompileError(_loaded["error"])
    from torch.utils import cpp_extension

    try:
        path = cpp_extension.load(
            NAME, [str(SOURCE)], extra_cflags=list(CFLAGS), is_python_module=False, verbose=False
        )
    except Exception as exc:
        _loaded["error"] = f"the C++ kernel did not build: {first_error_line(exc)}"
        raise CompileError(_loaded["error"]) from exc
    ops = getattr(torch.ops, NAME)
    _register_flops(ops)
    _loaded.update(ops=ops, path=str(path))
    return ops


def library_path() -> str:
    """The built library's file (after :func:`load`)."""
    load()
    return str(_loaded["path"])


def _register_flops(ops) -> None:
    """FLOPs of the kernel's matrix products, for torch.utils.flop_counter: one
    (B x H) by (H x H) product per step after the first, forward and backward."""
    from torch.utils.flop_counter import register_flop_formula

    def steps(h_shape) -> int:
        tau, batch, hidden = h_shape
        return 2 * (tau - 1) * batch * hidden * hidden

    @register_flop_formula(ops.forward)
    def _forward(a_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
        return steps(a_shape)

    @register_flop_formula(ops.backward)
    def _backward(g_shape, h_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
        return steps(h_shape)


def recurrence(a: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """h^(1..tau) (tau, B, H) for a = b + U x^(t) (tau, B, H), compiled forward and backward
    (:mod:`rnnbench.core.recurrence`)."""
    return loop_recurrence(load(), a, W)
