"""Every Ray start and join rnnbench makes (``run``, ``bench``, the worker-group harness,
the tests' shared Ray): one place for how Ray is started, joined, silenced and stopped.

- **Embedded** (:func:`start`): a new single-node Ray that listens on 127.0.0.1 only.
  Ray takes the loopback address as the node's address when
  ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (its default on macOS and Windows) and binds its
  servers (GCS, raylet, object manager, agents, workers) to the node's address; the
  setting is read when Ray is imported, so it is set in the environment (inherited by
  every process Ray starts) and, when Ray is already imported, in Ray's constant too.
  ``_node_ip_address`` and ``dashboard_host`` say the same.
- **A cluster** (:func:`join`, ``--address``): nothing is started.  The address is
  probed first (a TCP connect, :data:`REACH_S` seconds), so a wrong one is one line and
  exit 2 at once, not Ray's minutes of retries; a cluster that answers but refuses the
  driver (token authentication on the cluster, ``RAY_AUTH_MODE`` unset here) is one line
  naming ``RAY_AUTH_MODE=token``.
- **The token** (:func:`secure_token`): Ray 2.60 turns token authentication on for a new
  local Ray and writes the token with the process's umask (0644: anyone on the machine
  can read it, and with it run code in the cluster).  Before Ray starts, rnnbench
  creates the token file itself with mode 0600 (the same 256-bit hex token Ray makes) or
  tightens an existing one it owns to 0600.  A token given in ``RAY_AUTH_TOKEN`` is left
  alone; ``RAY_AUTH_TOKEN_PATH`` is honoured.
- **Ray's noise**: the "Set RAY_AUTH_MODE=disabled to opt out" advice is dropped (token
  authentication stays on), the driver prints no worker output (``log_to_driver=False``),
  and the messages Ray pushes to the driver ("A worker died or was killed ...") go to
  :func:`message_log` in the session's log folder instead of the command's output.
- **Stopping** (:func:`stop`): ``ray.shutdown()``, then the driver waits (at most
  :data:`AGENTS_S` seconds) for the processes the embedded Ray started; any still alive
  are terminated and named on stderr.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import stat
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rnnbench import stopping
from rnnbench.errors import UsageError

LOOPBACK = "127.0.0.1"
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": the node's address is 127.0.0.1
AUTH_MODE = "RAY_AUTH_MODE"
REACH_S = 5.0  # a cluster's address must answer a TCP connect within this
AGENTS_S = 15.0  # how long stop() waits for the embedded Ray's processes to end
MESSAGE_LOG = "rnnbench-driver-messages.log"


# --------------------------------------------------------------------------- the token


def token_path() -> Path | None:
    """The token file Ray reads (``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``);
    None when the token is given in ``RAY_AUTH_TOKEN`` (no file)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return None
    given = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return Path(given).expanduser() if given else Path.home() / ".ray" / "auth_token"


def secure_token(create: bool = True) -> Path | None:
    """The token file, mode 0600: created so (``create``) when missing, tightened when it
    is a regular file of this user readable by others.  Never follows a link, never
    touches another user's file.  Returns the path, or None when there is none."""
    path = token_path()
    if path is None:
        return None
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not create:
            return None
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:  # another process made it meanwhile
            return secure_token(create=False)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))  # what Ray's own generator writes
        return path
    if stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid() and st.st_mode & 0o077:
        os.chmod(path, 0o600, follow_symlinks=False)
    return path


# --------------------------------------------------------------------------- noise


class _OptOutAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "RAY_AUTH_MODE=disabled to opt out" not in record.getMessage()


def _quiet() -> None:
    """Drop Ray's advice to turn token authentication off (it stays on)."""
    log = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if not any(isinstance(f, _OptOutAdvice) for f in log.filters):
        log.addFilter(_OptOutAdvice())


def message_log() -> Path | None:
    """Where the messages Ray pushes to this driver go (in the Ray session's log folder);
    None before Ray is started."""
    import ray

    node = getattr(ray._private.worker, "_global_node", None)
    if node is None:
        return None
    return Path(node.get_logs_dir_path()) / MESSAGE_LOG


def _route_messages() -> None:
    """Ray's driver prints the errors the cluster pushes to it ("(raylet) A worker died or
    was killed while executing a task ...", many lines each) on stdout through
    ``worker.print_to_stdstream``; send those to :func:`message_log` instead.  rnnbench
    turns each into a row (``crashed``, ``oom``, ...) already."""
    import ray._private.worker as rw

    original = getattr(rw.print_to_stdstream, "__wrapped__", rw.print_to_stdstream)

    def to_log(data: dict, ignore_prefix: bool) -> None:
        if data.get("pid") != "raylet":  # only the pushed errors are re-routed
            original(data, ignore_prefix)
            return
        path = message_log()
        if path is None:
            return
        with open(path, "a") as f:
            f.write(time.strftime("%Y-%m-%dT%H:%M:%S ") + "\n".join(data["lines"]) + "\n")

    to_log.__wrapped__ = original  # type: ignore[attr-defined]
    rw.print_to_stdstream = to_log


# --------------------------------------------------------------------------- start, join


def _loopback_before_import() -> None:
    """Make Ray take 127.0.0.1 as this node's address (see the module docstring)."""
    os.environ[LOOPBACK_ONLY] = "0"
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        setattr(constants, "ENABLE_RAY_CLUSTER", False)  # noqa: B010 (read at import)


# Ray's node waits a fixed 30 s for its raylet to register (ray/_private/node.py); on a
# machine loaded beyond its CPUs that can pass: one more start, then one line and exit 2
NODE_TIMED_OUT = "The current node timed out during startup"
START_TRIES = 2


def start(
    num_cpus: int | None = None,
    resources: dict[str, float] | None = None,
    dashboard: bool = False,
    system_config: dict[str, Any] | None = None,
) -> None:
    """Start an embedded Ray on this machine, loopback only (``address="local"``: never
    attach to a head ``ray start`` left behind)."""
    _loopback_before_import()
    secure_token()

    _quiet()
    for attempt in range(1, START_TRIES + 1):
        try:
            with stopping.deferred():  # a signal inside ray.init aborted the process (exit 134)
                _init_local(num_cpus, resources, dashboard, system_config)
            return
        except KeyboardInterrupt:  # it came while Ray started: let go of what was started
            stop(started=True)
            raise
        except Exception as exc:  # Ray raises a bare Exception when its node times out starting
            said = str(exc).strip()
            if attempt < START_TRIES and NODE_TIMED_OUT in said:
                stop(started=True)  # what the first start left running goes first
                print(
                    "rnnbench: Ray's node did not start within its 30 s (a machine loaded "
                    "beyond its CPUs?): starting it once more",
                    file=sys.stderr,
                )
                continue
            raise UsageError(
                f"ray.init: cannot start Ray: {said.splitlines()[0] if said else repr(exc)}"
            ) from None


def _init_local(num_cpus, resources, dashboard, system_config) -> None:
    import ray

    ray.init(
        address="local",
        num_cpus=num_cpus or os.cpu_count(),
        resources=resources or {},
        include_dashboard=dashboard,
        dashboard_host=LOOPBACK,
        log_to_driver=False,
        logging_level=logging.WARNING,
        _node_ip_address=LOOPBACK,
        _system_config=system_config or {},
    )
    _route_messages()
    secure_token(create=False)  # in case Ray wrote it after all


def ensure() -> None:
    """An embedded Ray if none is connected (the worker-group harness outside a sweep)."""
    import ray

    if not ray.is_initialized():
        start()


def _host_port(address: str) -> tuple[str, int] | None:
    """The host and port to probe for a GCS address ``host:port`` (None for 'auto',
    ``ray://`` and other forms Ray resolves itself)."""
    if "://" in address or address == "auto":
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"--address: expected HOST:PORT or 'auto', got {address!r}")
    return host.strip("[]") or LOOPBACK, int(port)


def reachable(host: str, port: int, timeout_s: float = REACH_S) -> str | None:
    """None when something accepts a TCP connection at host:port, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


AUTH_HINT = (
    "a cluster with token authentication needs RAY_AUTH_MODE=token here and its token "
    "(~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN)"
)


@contextlib.contextmanager
def _stderr_aside() -> Iterator[Callable[[], str]]:
    """File descriptor 2 into a temporary file for the body (Ray's C++ client repeats
    its connection warnings there for about 20 s); yields a function that reads what
    was said."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as aside:
        os.dup2(aside.fileno(), 2)
        try:
            yield lambda: (aside.seek(0), aside.read().decode(errors="replace"))[1]
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def join(address: str) -> None:
    """Connect this driver to the running cluster at ``address``; one line (a
    :class:`UsageError`, exit 2) when it cannot."""
    where = _host_port(address)
    if where is not None and (why := reachable(*where)) is not None:
        raise UsageError(
            f"--address {address}: nothing answers at {where[0]}:{where[1]} ({why}); "
            "give the head's address as `ray start --head` printed it"
        )
    secure_token(create=False)
    import ray

    _quiet()
    with _stderr_aside() as said:
        try:
            with stopping.deferred():
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
            failure = None
        except Exception as exc:  # ConnectionError, RuntimeError, AuthenticationError
            failure = exc
        log = said()
    if failure is not None:
        text = str(failure).strip().splitlines()[0] if str(failure).strip() else ""
        refused = "Unauthenticated" in log or "InvalidAuthToken" in log
        if refused or "auth" in text.lower():
            raise UsageError(
                f"--address {address}: the cluster refused this driver's authentication "
                f"token; {AUTH_HINT}"
            ) from None
        hint = f"; {AUTH_HINT}" if os.environ.get(AUTH_MODE, "").lower() != "token" else ""
        raise UsageError(
            f"--address {address}: cannot join the Ray cluster: "
            f"{text or type(failure).__name__}{hint}"
        ) from None
    _route_messages()


def node_ip() -> str:
    """This process's Ray node address, as the node was started (``--node-ip-address``;
    127.0.0.1 on an embedded Ray).  ``ray.util.get_node_ip_address()`` in a worker
    process guesses it from the routes instead (the host's outward address)."""
    import ray

    try:
        return ray._private.worker.global_worker.node_ip_address
    except Exception:
        return ray.util.get_node_ip_address()


# --------------------------------------------------------------------------- stop


def _descendants(root: int) -> set[int]:
    """Every process below ``root`` (from /proc; empty where there is no /proc)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return set()
    for entry in entries:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    seen: set[int] = set()
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo += children.get(pid, [])
    return seen


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def _ray_process(pid: int) -> bool:
    """Whether ``pid`` runs Ray (its servers, agents, workers): only those are waited for."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"ray" in f.read()
    except OSError:
        return False


def stop(started: bool, wait_s: float = AGENTS_S) -> list[str]:
    """Let go of Ray.  When this process ``started`` it, shut it down and wait until every
    process the embedded Ray started has ended (at most ``wait_s``); terminate any left
    and say so on stderr.  A Ray this process joined (a cluster, or a Ray someone else
    started in this process) is left running.  Returns the processes that had to be
    terminated ("name (pid)")."""
    if not started:
        return []
    import ray

    ours = {p for p in _descendants(os.getpid()) if _ray_process(p)}
    with stopping.deferred():
        ray.shutdown()
    deadline = time.monotonic() + wait_s
    while (left := {p for p in ours if _alive(p)}) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not left:
        return []
    named = sorted(f"{_name(p)} ({p})" for p in left)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    print(
        f"rnnbench: Ray's processes {', '.join(named)} had not stopped {wait_s:g} s after "
        "the run; killed them",
        file=sys.stderr,
    )
    return named
