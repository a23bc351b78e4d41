"""What an iterative strategy says about one call: iterations, converged, residual.

The harness that makes a row opens a recorder around a strategy call::

    with diagnostics.recording() as rec:
        loss = strategy.fn(model, x, y)
    row.update(rec.fields())

and the strategy reports into whichever recorder is open (a context variable,
so nothing leaks from one cell, thread or task to the next).  With no
recorder open, a call that did not converge warns instead of staying silent.
"""

from __future__ import annotations

import contextvars
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

FIELDS = ("iterations", "converged", "residual")


@dataclass
class Recorder:
    """The last report of the call(s) made while it was open (None: nothing reported)."""

    iterations: int | None = None
    converged: bool | None = None
    residual: float | None = None

    def fields(self) -> dict:
        return {name: getattr(self, name) for name in FIELDS}


_CURRENT: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar(
    "rnnbench_recorder", default=None
)


@contextmanager
def recording() -> Iterator[Recorder]:
    """Open a fresh recorder for the calls made inside the block."""
    rec = Recorder()
    token = _CURRENT.set(rec)
    try:
        yield rec
    finally:
        _CURRENT.reset(token)


def report(iterations: int, converged: bool, residual: float) -> None:
    """Called by a strategy once per call."""
    rec = _CURRENT.get()
    if rec is None:
        if not converged:
            warnings.warn(
                f"not converged after {iterations} iterations (residual {residual:.3g})",
                RuntimeWarning,
                stacklevel=3,
            )
        return
    rec.iterations, rec.converged, rec.residual = int(iterations), bool(converged), float(residual)
