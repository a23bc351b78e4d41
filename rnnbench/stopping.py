"""How a command stops on a signal, at any moment (README: exit codes).

- SIGTERM (a scheduler, ``ray job stop``, ``kill``) and SIGHUP (the terminal closed) stop
  the command as Ctrl-C (SIGINT) does: a ``KeyboardInterrupt``, which ``rnnbench`` turns
  into exit 130 after the sweep has cancelled its cells and consolidated the rows written
  so far.  :func:`install` sets this up as the command's first act, and again after Ray
  has installed its own handlers (``ray.init`` makes SIGTERM ``sys.exit(15)``).
- :func:`deferred`: a stretch that must not be cut (Ray starting or stopping: a signal
  there gave exit 134 with a C++ stack dump; the rows' consolidation: a second Ctrl-C
  there left no ``results.parquet``).  A signal that arrives inside it is held and
  raised as ``KeyboardInterrupt`` when the stretch ends, unless the command is already
  stopping for an earlier one (then it is dropped: one stop is enough).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def install() -> None:
    """SIGINT, SIGTERM and SIGHUP raise ``KeyboardInterrupt`` (main thread only)."""
    if _main_thread():
        for sig in SIGNALS:
            signal.signal(sig, _interrupt)


@contextmanager
def handled() -> Iterator[None]:
    """:func:`install` for the body (a command); the handlers from before afterwards."""
    before = {sig: signal.getsignal(sig) for sig in SIGNALS} if _main_thread() else {}
    install()
    try:
        yield
    finally:
        _restore(before)


def _restore(before: dict) -> None:
    for sig, handler in before.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP while the body runs; raise ``KeyboardInterrupt`` after
    it when one came and no exception (an earlier interrupt among them) is on its way
    out already.  The handlers from before are put back afterwards (so a handler the body
    installed, as ``ray.init`` does, is dropped)."""
    if not _main_thread():
        yield
        return
    got: list[int] = []
    before = {sig: signal.getsignal(sig) for sig in SIGNALS}

    def hold(signum, frame):
        got.append(signum)

    for sig in SIGNALS:
        signal.signal(sig, hold)
    try:
        yield
    finally:
        _restore(before)
    if got and sys.exc_info()[0] is None:
        raise KeyboardInterrupt(signal.Signals(got[0]).name)
