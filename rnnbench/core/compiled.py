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

The kernel is built by ``torch.utils.cpp_extension`` once per environment, in a
folder of torch's extension cache (``TORCH_EXTENSIONS_DIR``, by default
``~/.cache/torch_extensions``) named by a key of the interpreter, the torch version, the
source and the flags (:func:`build_dir`): two venvs on one machine never rebuild each
other's.  :func:`load` builds or loads it, once per process.  A machine that cannot
build it gets a :class:`CompileError` naming the compiler's first error line.

Building is serialised by rnnbench's own lock file in that folder (:data:`LOCK`, holding
the holder's host, pid and start): torch's own lock (``FileBaton``) records no holder
and waits forever, so a process killed while building (a node lost mid-run) would hang
every later cell.  Here a lock whose holder is gone (same host, pid no longer running
or reused) is broken, with a warning that says so; a lock held longer than
:data:`LOCK_WAIT_S` gives a :class:`CompileError` naming the lock (the cell's ``failed``
row), never a hang.  Under rnnbench's lock torch's ``lock`` file can only be a dead
builder's, and is removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import sys
import time
import warnings
from pathlib import Path

import torch

from rnnbench.core.recurrence import recurrence as loop_recurrence

NAME = "rnnbench_elman"  # the extension, and the namespace of its operators
SOURCE = Path(__file__).with_name("csrc") / "elman.cpp"
CFLAGS = ("-O3",)

LOCK = "rnnbench.lock"
LOCK_WAIT_S = 600.0  # longest wait for another process's build
POLL_S = 0.2

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


def key() -> str:
    """What the built kernel depends on: the interpreter, torch's version, the source
    and the flags (16 hex digits of their SHA-256)."""
    h = hashlib.sha256()
    for part in (os.path.realpath(sys.executable), sys.version, torch.__version__, *CFLAGS):
        h.update(part.encode() + b"\0")
    h.update(SOURCE.read_bytes())
    return h.hexdigest()[:16]


def build_dir() -> Path:
    """The kernel's build folder: torch's extension cache / ``rnnbench_elman-<key>``."""
    from torch.utils.cpp_extension import _get_build_directory

    root = Path(_get_build_directory(NAME, verbose=False)).parent
    return root / f"{NAME}-{key()}"


class LockTimeout(CompileError):
    """Another live process held the build lock past the time limit."""


def _start_time(pid: int) -> str | None:
    """The process's start (clock ticks since boot, /proc), None when it is not running."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def _holder(lock: Path) -> dict:
    try:
        return json.loads(lock.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _dead(holder: dict) -> bool:
    """Whether the holder recorded in a lock is known to be gone (on this host only)."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    started = _start_time(holder["pid"])
    return started is None or started != holder.get("start")


def acquire(folder: Path, wait_s: float | None = None) -> Path:
    """Take the build lock of ``folder``; break it when its holder is dead; raise
    :class:`LockTimeout` past ``wait_s`` (default :data:`LOCK_WAIT_S`).  Returns the
    lock's path (remove it to release)."""
    wait_s = LOCK_WAIT_S if wait_s is None else wait_s
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK
    me = {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid())}
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _holder(lock)
            if holder and _dead(holder):
                warnings.warn(
                    f"{lock}: broke the build lock of process {holder['pid']} on "
                    f"{holder['host']}, which is no longer running",
                    stacklevel=2,
                )
                lock.unlink(missing_ok=True)
                continue
            if time.monotonic() >= deadline:
                raise LockTimeout(
                    f"the compiled kernel's build lock {lock} is held by "
                    f"{holder.get('pid', '?')} on {holder.get('host', '?')}; waited "
                    f"{wait_s:g} s (remove it if that process is gone)"
                ) from None
            time.sleep(POLL_S)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return lock


def load():
    """Build (first time in this environment) or load the kernel; its operators.

    Raises :class:`CompileError` when it cannot be built - on every call of the
    process, without trying again - and :class:`LockTimeout` when another process
    holds the build lock too long (tried again on the next call).
    """
    if "ops" in _loaded:
        return _loaded["ops"]
    if "error" in _loaded:
        raise CompileError(_loaded["error"])
    from torch.utils import cpp_extension

    folder = build_dir()
    lock = acquire(folder)
    try:
        (folder / "lock").unlink(missing_ok=True)  # torch's: only a dead builder's, here
        path = cpp_extension.load(
            NAME,
            [str(SOURCE)],
            extra_cflags=list(CFLAGS),
            is_python_module=False,
            verbose=False,
            build_directory=str(folder),
        )
    except Exception as exc:
        _loaded["error"] = f"the C++ kernel did not build: {first_error_line(exc)}"
        raise CompileError(_loaded["error"]) from exc
    finally:
        lock.unlink(missing_ok=True)
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
