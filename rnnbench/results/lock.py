"""The results folder's lock: one ``rnnbench run`` writes to a folder at a time, and a
run whose folder is removed or replaced stops (docs/storage.md).

Local folder: ``flock`` on ``DIR/.rnnbench.lock``, opened with ``O_NOFOLLOW`` (a link
there is refused), holding the holder's pid.  The lock is tied to the folder's and the
lock file's (device, inode) when taken; :func:`check` raises :class:`StorageError` when
either changed (the folder removed, replaced or moved away), so the run ends (exit 3)
instead of writing into a folder another run may lock anew.

Object store (and any remote folder): a lease object ``DIR/.rnnbench.lock`` holding the
holder's host, pid, start time, a random token and when it was last renewed.  The
holder renews it every :data:`RENEW_S` seconds; another run takes it over when it was
not renewed for :data:`STALE_S` seconds, or at once when its holder is a dead process on
this host.  Object stores offer no compare-and-swap here, so two runs starting within
the same second can both believe they hold it: each re-reads the lease after
:data:`SETTLE_S` and the one whose token is not there gives up; :func:`check` (before
every row) sees a lease taken over and stops the run.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rnnbench.errors import StorageError, UsageError
from rnnbench.results.location import Location

LOCK = ".rnnbench.lock"
RENEW_S = 15.0  # a lease is renewed this often
STALE_S = 60.0  # ... and taken over when not renewed for this long
SETTLE_S = 1.0  # wait before re-reading a lease just written


@dataclass
class Held:
    """A lock this process holds on one folder."""

    where: Location
    fd: int | None = None  # local: the lock file
    ident: tuple[tuple[int, int], tuple[int, int]] | None = None  # folder's, file's (dev, ino)
    token: str = ""  # remote: our lease's token
    lease: dict[str, Any] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    lost: str | None = None  # why the lease was lost (seen by the renewing thread)


_HELD: dict[str, Held] = {}


def _key(where: Location) -> str:
    return os.path.abspath(where.path) if where.local else where.uri.rstrip("/")


def _gone(where: Location, why: str) -> StorageError:
    return StorageError(
        f"{where}: the results folder was {why} while this run wrote to it; "
        "stopping (rows written before stay where they were)"
    )


# ------------------------------------------------------------------------------ local


def _take_local(where: Location) -> Held:
    folder = os.stat(where.path)
    path = os.path.join(where.path, LOCK)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UsageError(
                f"--out {where}: {LOCK} is a link; remove it (rnnbench never follows links "
                "in a results folder)"
            ) from None
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise UsageError(
            f"--out {where}: another rnnbench run (pid {holder}) is writing to "
            "this results folder; wait for it or give another --out"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    mine = os.fstat(fd)
    ident = ((folder.st_dev, folder.st_ino), (mine.st_dev, mine.st_ino))
    return Held(where, fd=fd, ident=ident)


def _check_local(held: Held) -> None:
    assert held.ident is not None
    try:
        folder = os.stat(held.where.path)
    except OSError:
        raise _gone(held.where, "removed") from None
    if (folder.st_dev, folder.st_ino) != held.ident[0]:
        raise _gone(held.where, "replaced")
    try:
        mine = os.stat(os.path.join(held.where.path, LOCK), follow_symlinks=False)
    except OSError:
        raise _gone(held.where, f"left without its {LOCK}") from None
    if (mine.st_dev, mine.st_ino) != held.ident[1]:
        raise _gone(held.where, f"given another {LOCK}")


# ------------------------------------------------------------------------------ remote


def _alive_here(lease: dict[str, Any]) -> bool:
    """Whether the lease's holder is a live process on this host (True when unknown)."""
    if lease.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(lease.get("pid", 0)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, OverflowError):
        return True
    return True


def _read_lease(where: Location) -> dict[str, Any] | None:
    try:
        lease = json.loads(where.read(LOCK, 4096))
    except (OSError, ValueError):
        return None
    return lease if isinstance(lease, dict) else None


def _write_lease(held: Held) -> None:
    held.lease["renewed"] = time.time()
    held.where.write(LOCK, json.dumps(held.lease).encode())


def _take_remote(where: Location) -> Held:
    lease = _read_lease(where)
    if lease is not None:
        age = time.time() - float(lease.get("renewed", 0) or 0)
        if age < STALE_S and _alive_here(lease):
            raise UsageError(
                f"--out {where}: another rnnbench run (host {lease.get('host')}, pid "
                f"{lease.get('pid')}, lease renewed {age:.0f} s ago) is writing to this "
                f"results folder; wait for it, or for its lease to go stale ({STALE_S:g} s)"
            )
    token = uuid.uuid4().hex
    held = Held(where, token=token, lease={
        "host": socket.gethostname(), "pid": os.getpid(), "start": time.time(), "token": token,
    })
    _write_lease(held)
    time.sleep(SETTLE_S)
    now = _read_lease(where)
    if now is None or now.get("token") != token:
        raise UsageError(f"--out {where}: another rnnbench run took this results folder's "
                         "lease at the same moment; wait for it or give another --out")
    thread = threading.Thread(target=_renew, args=(held,), daemon=True, name="rnnbench-lease")
    thread.start()
    return held


def _renew(held: Held) -> None:
    while not held.stop.wait(RENEW_S):
        now = _read_lease(held.where)
        if now is None or now.get("token") != held.token:
            held.lost = "taken over by another run" if now else "removed"
            return
        try:
            _write_lease(held)
        except OSError as exc:
            held.lost = f"not renewable ({exc})"
            return


def _check_remote(held: Held) -> None:
    if held.lost:
        raise StorageError(f"{held.where}: this run's lease on the results folder was "
                           f"{held.lost}; stopping (rows written before stay)")


# ------------------------------------------------------------------------------ both


@contextlib.contextmanager
def locked(where: Location) -> Iterator[None]:
    """Hold the folder's lock (it must exist); re-entrant within one process.  Another
    holder: UsageError naming it, at once."""
    key = _key(where)
    if key in _HELD:
        yield
        return
    held = _take_local(where) if where.local else _take_remote(where)
    _HELD[key] = held
    try:
        yield
    finally:
        del _HELD[key]
        if held.fd is not None:
            os.close(held.fd)  # releases the flock
        else:
            held.stop.set()
            now = _read_lease(where)
            if now is not None and now.get("token") == held.token:
                with contextlib.suppress(OSError):
                    where.remove(LOCK)


def check(where: Location) -> None:
    """StorageError when this process's lock on ``where`` no longer stands (the folder
    removed or replaced; the lease lost); nothing when no lock is held there."""
    held = _HELD.get(_key(where))
    if held is None:
        return
    if held.fd is not None:
        _check_local(held)
    else:
        _check_remote(held)
