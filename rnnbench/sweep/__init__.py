"""``rnnbench run JOB.yaml``: run a job's cells as Ray tasks, resumably.

Each cell is one Ray Core task (``num_cpus`` = the cell's threads; a
time-parallel cell asks for none, its actors hold the CPUs).  The driver
collects results with ``ray.wait`` and writes each row as it arrives
(:mod:`rnnbench.results.store`), so a killed run loses nothing and a rerun skips what
is stored.  Crashed workers are retried; exceptions, time-outs and crashes
beyond the retries become rows with status ``failed`` / ``timeout`` /
``crashed``.

Embedded by default (``ray.init(address="local", num_cpus=<machine's>,
include_dashboard=False)``); ``--address ADDR`` / ``RAY_ADDRESS`` / ``auto``
connects to a running cluster and starts nothing.  Under ``--exclusive`` every
cell also takes one unit of the custom resource ``rnnbench_exclusive``, which
each node declares once (``ray start --resources='{"rnnbench_exclusive": 1}'``),
so at most one cell times on a node at a time.
"""

from __future__ import annotations

import argparse
import collections
import importlib
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from rnnbench.argtypes import non_negative_int, positive_float, positive_int
from rnnbench.errors import StorageError, UsageError
from rnnbench.results.rows import FAILED, OK, TIMEOUT, failure_row, status_of

if TYPE_CHECKING:  # kept light: the registry actor's worker imports this module
    from rnnbench.job.cell import Cell

EXCLUSIVE = "rnnbench_exclusive"
DEFAULT_RUNNER = "rnnbench.harness.runner:run_cell"
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray's node address is 127.0.0.1
IN_FLIGHT_MIN = 100  # cells submitted to Ray at a time, at least (see _in_flight)


# --------------------------------------------------------------------------- runner


def resolve(runner: str | Callable) -> Callable:
    """A runner given as ``"module:function"`` (or ``module.function``), or a callable."""
    if callable(runner):
        return runner
    if not isinstance(runner, str) or not runner:
        raise UsageError(f"--runner: expected module:function, got {runner!r}")
    module, sep, name = runner.partition(":")
    if not sep:
        module, _, name = runner.rpartition(".")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise UsageError(f"--runner: cannot import {runner!r}: {exc}") from None
    if not callable(fn):
        raise UsageError(f"--runner: {runner!r} is not callable")
    return fn


def resources(cell: Cell, exclusive: bool) -> dict:
    """What the cell's task asks Ray for.

    A one-worker cell holds ``threads`` CPUs (and a GPU on cuda); a
    time-parallel cell (workers > 1, or harness 'group') holds nothing, since its
    own placement group of actors holds the CPUs/GPUs — so nothing deadlocks on a
    small node.
    """
    solo = not cell.grouped
    opts = {"num_cpus": cell.n_threads if solo else 0,
            "num_gpus": 1 if solo and cell.device == "cuda" else 0}
    if exclusive:
        opts["resources"] = {EXCLUSIVE: 1}
    return opts


class _Registry:
    """Which cells run on which node (a tiny actor on the driver's node).

    Gives each cell its attempt number, counts the other cells that ran on the
    same node while it ran (``neighbours``), and when running cells first
    started (time-outs count from a cell's first start, across its attempts,
    not from when it was queued).
    """

    def __init__(self):
        self.running: dict[str, tuple[str, float]] = {}
        self.beside: dict[str, set] = {}
        self.attempts: dict[str, int] = {}
        self.first: dict[str, float] = {}

    def enter(self, cell_id: str, node: str) -> int:
        self.attempts[cell_id] = self.attempts.get(cell_id, 0) + 1
        self.first.setdefault(cell_id, time.time())
        self.running[cell_id] = (node, self.first[cell_id])
        peers = {c for c, (n, _) in self.running.items() if n == node and c != cell_id}
        self.beside[cell_id] = set(peers)
        for c in peers:
            self.beside.setdefault(c, set()).add(cell_id)
        return self.attempts[cell_id]

    def leave(self, cell_id: str) -> tuple[int, int]:
        self.running.pop(cell_id, None)
        return self.attempts.get(cell_id, 0), len(self.beside.pop(cell_id, ()))

    def forget(self, cell_ids: list[str]) -> None:
        """A new sweep of these cells: their attempts count from 1 again."""
        for c in cell_ids:
            self.attempts.pop(c, None)
            self.first.pop(c, None)

    def started(self) -> dict[str, float]:
        """cell_id -> first start (epoch seconds) of the cells running now."""
        return {c: t for c, (_, t) in self.running.items()}


_REGISTRIES: dict = {}


def _registry():
    """The driver's registry actor, created once per Ray connection and kept
    (a handle dropped at the end of a sweep would let Ray destroy it)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    key = ray.get_runtime_context().get_job_id()
    if key not in _REGISTRIES:
        _REGISTRIES.clear()
        _REGISTRIES[key] = ray.remote(num_cpus=0)(_Registry).options(
            max_restarts=-1, max_task_retries=3,
            scheduling_strategy=NodeAffinitySchedulingStrategy(
                ray.get_runtime_context().get_node_id(), soft=False)).remote()
    return _REGISTRIES[key]


def _ask(call, default, timeout: float = 30):
    """A registry call that never breaks a sweep: ``default`` if the actor is unreachable."""
    import ray

    try:
        return ray.get(call, timeout=timeout)
    except Exception:  # noqa: BLE001 - bookkeeping only; the rows matter more
        return default


def _execute(runner, cell: Cell, registry) -> dict:
    """The body of one cell's Ray task."""
    import ray
    import torch

    ctx = ray.get_runtime_context()
    cpus = ctx.get_assigned_resources().get("CPU", 0)
    torch.set_num_threads(max(1, int(cpus)))  # Ray reuses workers: set it every time
    _ask(registry.enter.remote(cell.cell_id, ctx.get_node_id()), None)
    start = time.perf_counter()
    try:
        row = runner(cell)
    finally:
        attempt, neighbours = _ask(registry.leave.remote(cell.cell_id), (None, None))
    if not isinstance(row, dict):
        row = failure_row(cell, FAILED, f"runner returned {type(row).__name__}, not a row")
    row = dict(row)
    row.setdefault("wall_s", time.perf_counter() - start)
    row.update(cell_id=cell.cell_id, attempt=attempt, neighbours=neighbours)
    return row


# --------------------------------------------------------------------------- driver


@dataclass
class SweepResult:
    """What one call of :func:`run_sweep` did."""

    cells: int
    skipped: int
    counts: dict = field(default_factory=dict)       # status -> rows written now
    latency_s: dict = field(default_factory=dict)    # cell_id -> submit-to-stored seconds
    wall_s: float = 0.0

    @property
    def ran(self) -> int:
        return sum(self.counts.values())


def _release(cell: Cell) -> None:
    """A killed time-parallel cell leaves its placement group holding CPUs: remove it."""
    if cell.grouped:
        try:
            from rnnbench.harness.group import release
            release(cell)
        except Exception:  # noqa: BLE001 - nothing to release, or Ray going down
            pass


def _error_text(exc: BaseException) -> str:
    import ray.exceptions as rex

    if isinstance(exc, rex.RayTaskError):
        cause = exc.cause if getattr(exc, "cause", None) is not None else exc
        text = f"{type(cause).__name__}: {cause}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return text.strip().splitlines()[0][:2000] if text.strip() else type(exc).__name__


def infeasible(cells: Iterable[Cell], exclusive: bool) -> dict[str, str]:
    """cell_id -> why no alive node can ever run it (asks too many CPUs/GPUs)."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    out = {}
    for cell in cells:
        need = resources(cell, exclusive)
        want = {"CPU": need["num_cpus"], "GPU": need["num_gpus"], **need.get("resources", {})}
        if any(all(res.get(k, 0) >= v for k, v in want.items() if v) for res in nodes):
            continue
        most = {k: max((res.get(k, 0) for res in nodes), default=0) for k, v in want.items() if v}
        out[cell.cell_id] = ("infeasible: the cell needs " + ", ".join(
            f"{v:g} {k}" for k, v in want.items() if v) + " on one node; the largest node has "
            + ", ".join(f"{most[k]:g} {k}" for k in most))
    return out


def run_sweep(cells: Iterable[Cell], out: str | Path, *, runner: str | Callable = DEFAULT_RUNNER,
              max_retries: int = 3, cell_timeout: float | None = None, exclusive: bool = False,
              fresh: bool = False, retry_failed: bool = False, max_in_flight: int | None = None,
              progress: bool = True, desc: str = "cells", job: str | None = None) -> SweepResult:
    """Run the cells not yet stored under ``out`` on the connected Ray; write each row as it arrives.

    ``runner(cell) -> row`` is the per-cell function (default
    :func:`rnnbench.harness.runner.run_cell`).  Worker crashes are retried
    ``max_retries`` times; exceptions are not retried and give ``failed`` rows;
    a cell running longer than ``cell_timeout`` seconds since its first start is
    cancelled (its worker killed) and gives a ``timeout`` row.  Each row records
    ``job``.  The results folder is locked for the sweep (:func:`store.locked`);
    a row that cannot be written raises :class:`StorageError`, rows already
    written stay.
    """
    from rnnbench.results import store

    out = Path(out)
    with store.locked(out):
        return _sweep(list(dict.fromkeys(cells)), out, runner, max_retries, cell_timeout,
                      exclusive, fresh, retry_failed, max_in_flight, progress, desc, job)


def _storage_error(out: Path, exc: OSError) -> StorageError:
    return StorageError(f"{out}: cannot write results ({exc.strerror or exc}); the rows "
                        "written so far are kept; make room and run the same command again "
                        "to resume")


def _consolidate(out: Path) -> None:
    from rnnbench.results import store

    try:
        store.consolidate(out)
    except OSError as exc:
        raise _storage_error(out, exc) from None


def _in_flight(max_in_flight: int | None) -> int:
    """Tasks submitted at a time: enough to keep every CPU busy, few enough that
    each ``ray.wait`` over them stays cheap (its cost grows with their number)."""
    import ray

    if max_in_flight:
        return max_in_flight
    return max(IN_FLIGHT_MIN, 4 * int(ray.cluster_resources().get("CPU", 1)))


def _sweep(cells: list[Cell], out: Path, runner, max_retries, cell_timeout, exclusive, fresh,
           retry_failed, max_in_flight, progress, desc, job) -> SweepResult:
    import ray
    from tqdm import tqdm

    from rnnbench.results import store

    try:
        out.mkdir(parents=True, exist_ok=True)
        if fresh:
            store.clear(out)
        done = _done_ids(out, retry_failed)
    except OSError as exc:
        raise _storage_error(out, exc) from None
    todo = [c for c in cells if c.cell_id not in done]
    result = SweepResult(cells=len(cells), skipped=len(cells) - len(todo))
    if not todo:
        if store.parquet_stale(out):
            _consolidate(out)
        return result
    runner = resolve(runner)  # once, on the driver: a bad name fails fast, in one line
    t0 = time.perf_counter()
    registry = _registry()
    _ask(registry.forget.remote([c.cell_id for c in todo]), None)
    task = ray.remote(_execute)
    by_id = {c.cell_id: c for c in todo}
    bar = tqdm(total=len(todo), desc=desc, unit="cell", file=sys.stderr, disable=not progress,
               dynamic_ncols=True)
    counts: dict[str, int] = {}

    def record(row: dict) -> None:
        row["job"] = job
        try:
            store.write_row(out, row)
        except OSError as exc:
            raise _storage_error(out, exc) from None
        status = row.get("status", "?")
        counts[status] = counts.get(status, 0) + 1
        result.latency_s[row["cell_id"]] = time.perf_counter() - submitted[row["cell_id"]]
        bar.update(1)
        bar.set_postfix(ok=counts.get(OK, 0), failed=sum(counts.values()) - counts.get(OK, 0),
                        refresh=False)

    bad = infeasible(todo, exclusive)
    queue = collections.deque(c for c in todo if c.cell_id not in bad)
    pending: dict = {}       # ObjectRef -> cell
    ref_of: dict = {}        # cell_id -> ObjectRef, of the pending cells
    submitted: dict[str, float] = {}
    timed_out: set[str] = set()
    limit = _in_flight(max_in_flight)
    next_check = 0.0
    unwritten = None
    try:
        for cell_id, why in bad.items():
            submitted[cell_id] = time.perf_counter()
            record({**failure_row(by_id[cell_id], FAILED, why), "attempt": 0, "neighbours": 0})
        while queue or pending:
            while queue and len(pending) < limit:
                cell = queue.popleft()
                ref = task.options(max_retries=max_retries, retry_exceptions=False,
                                   **resources(cell, exclusive)).remote(runner, cell, registry)
                pending[ref] = cell
                ref_of[cell.cell_id] = ref
                submitted[cell.cell_id] = time.perf_counter()
            # wake at least every second: Ctrl-C, time-outs and the ETA stay live;
            # then take every result that is ready, not one per wait
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            if ready and len(pending) > 1:
                ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
            for ref in ready:
                cell = pending.pop(ref)
                del ref_of[cell.cell_id]
                try:
                    row = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - every failure becomes a row
                    status = TIMEOUT if cell.cell_id in timed_out else status_of(exc)
                    error = (f"time-out: cancelled after {cell_timeout:g} s"
                             if status == TIMEOUT else _error_text(exc))
                    attempt, neighbours = _ask(registry.leave.remote(cell.cell_id),
                                               (None, None))
                    row = {**failure_row(cell, status, error),
                           "attempt": attempt, "neighbours": neighbours}
                    _release(cell)
                record(row)
            if cell_timeout and pending and time.monotonic() >= next_check:
                next_check = time.monotonic() + 1.0
                now = time.time()
                for cell_id, begun in _ask(registry.started.remote(), {}).items():
                    ref = ref_of.get(cell_id)
                    if ref is not None and cell_id not in timed_out and now - begun > cell_timeout:
                        timed_out.add(cell_id)
                        ray.cancel(ref, force=True)
    finally:
        bar.close()
        try:
            for ref, cell in pending.items():
                ray.cancel(ref, force=True)
                registry.leave.remote(cell.cell_id)
                _release(cell)
            for cell_id in timed_out:  # a group placed just as its cell was cancelled
                _release(by_id[cell_id])
        except Exception:  # noqa: BLE001 - Ray may be going down with us; rows are safe
            pass
        try:
            store.consolidate(out)
        except OSError as exc:  # raised below, unless something else is on its way out
            unwritten = exc
        result.counts = counts
        result.wall_s = time.perf_counter() - t0
    if unwritten is not None:
        raise _storage_error(out, unwritten)
    return result


def _done_ids(out: Path, retry_failed: bool) -> set[str]:
    """The cells stored under ``out`` (ok ones only, with ``retry_failed``).  Broken
    row files are moved aside, so their cells run again, and named on one line."""
    from rnnbench.results import store

    listing = store.scan(out, move_broken=True)
    if listing.broken:
        print("rnnbench run: warning: " + listing.broken_line(
            f"moved to {out / store.ROWS / store.BROKEN}; their cells run again"),
            file=sys.stderr)
    return {row["cell_id"] for row in listing.rows
            if not retry_failed or row.get("status") == OK}


# --------------------------------------------------------------------------- cost estimate


def estimate_seconds(cell: Cell) -> float:
    """A rough wall-time guess for one cell (seconds), for ``--dry-run``.

    A fixed start-up cost, then per timed step (repeats, forward/backward
    apart, the memory pass) a per-time-step cost on the sequential depth plus
    the FLOPs, and per training step a cost linear in tau (training and the
    free-running evaluation step through time) plus the FLOPs.  The per-cell and
    per-step constants are a least-squares fit to ``jobs/quick.yaml`` rows on a
    2-core CPU; the FLOP rate (10 GFLOP/s per thread) is assumed, not fitted.
    A baseline adds its warm-up and its blocks.  A guide, not a promise.
    """
    flops_s, step_s = _step_seconds(cell)
    timed = (cell.repeats * 3 + 6) * step_s
    train = cell.train_steps * (cell.tau * 410e-6 + flops_s)
    base = cell.baseline_cell("bptt")
    if base is not None:  # the baseline's warm-up and blocks; best_bptt warms every candidate
        best = dict(cell.baseline).get("strategy") == "best_bptt"
        timed += (cell.repeats + 2 + (3 * (3 + 2) if best else 0)) * _step_seconds(base)[1]
    return 1.2 + timed + train


def _step_seconds(cell: Cell) -> tuple[float, float]:
    """(seconds of FLOPs, seconds of one timed step) as :func:`estimate_seconds` guesses."""
    task = cell.make_task()
    h, n_in, n_out = cell.hidden, task.n_in, task.n_out
    depth = cell.depth  # the Strategy record's depth at this tau and these options
    if depth is None:  # measured only (Newton iterations): the worst case, max_iter scans
        opts = dict(cell.strategy_options)
        depth = (opts.get("max_iter") or cell.tau) * math.ceil(math.log2(max(cell.tau, 2)))
    flops_s = 6.0 * cell.tau * cell.batch * h * (n_in + h + n_out) / (1e10 * cell.n_threads)
    return flops_s, depth * 225e-6 + flops_s


# --------------------------------------------------------------------------- command line


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", help="job file (YAML), e.g. jobs/quick.yaml")
    parser.add_argument("--out", metavar="DIR",
                        help="results folder (default: results/<job name>)")
    parser.add_argument("--address", metavar="ADDR",
                        help="connect to a running Ray cluster (ADDR, or 'auto'); default: "
                             "RAY_ADDRESS if set, else start an embedded Ray on this machine")
    parser.add_argument("--num-cpus", type=positive_int, metavar="N",
                        help="CPUs of the embedded Ray (default: all of this machine's)")
    parser.add_argument("--exclusive", action="store_true",
                        help="at most one cell per node at a time (honest timings)")
    parser.add_argument("--max-retries", type=non_negative_int, default=3, metavar="N",
                        help="retries of a cell whose worker crashed (default 3)")
    parser.add_argument("--cell-timeout", type=positive_float, metavar="S",
                        help="cancel a cell that runs longer than S seconds (a 'timeout' row)")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the cells, how many are done and what the rest may cost")
    parser.add_argument("--fresh", action="store_true",
                        help="forget stored rows in --out and start over")
    parser.add_argument("--retry-failed", action="store_true",
                        help="also rerun cells whose stored row is not ok")
    parser.add_argument("--dashboard", action="store_true",
                        help="start Ray's dashboard (embedded Ray only), bound to 127.0.0.1")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--runner", default=DEFAULT_RUNNER, metavar="MODULE:FUNCTION",
                        help=f"the per-cell function (default {DEFAULT_RUNNER})")


def _quiet_opt_out_advice() -> None:
    """Drop Ray 2.60's "Token authentication is enabled ... Set RAY_AUTH_MODE=disabled to
    opt out" warning for the embedded Ray: authentication stays on (the default), and the
    line read as advice to turn it off.  Every other Ray message is kept."""
    import logging

    class OptOutAdvice(logging.Filter):
        def filter(self, record):
            return "RAY_AUTH_MODE=disabled to opt out" not in record.getMessage()

    log = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if not any(type(f).__name__ == "OptOutAdvice" for f in log.filters):
        log.addFilter(OptOutAdvice())


def connect(address: str | None, num_cpus: int | None, dashboard: bool,
            max_retries: int = 3) -> bool:
    """Connect to Ray; return True when this call started an embedded instance.

    A cell whose worker Ray's memory monitor kills is retried at most
    ``max_retries`` times, then gives an ``oom`` row: the embedded Ray is started
    with ``task_oom_retries`` set so (Ray's default, 15 with growing back-off,
    keeps a cell that never fits busy for many minutes); a cluster keeps its
    own setting (README: ``RAY_task_oom_retries``).

    The embedded Ray listens on 127.0.0.1 only: Ray takes the loopback address
    as the node's address when ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (its
    default on macOS and Windows), and its servers bind to the node's address.
    Ray reads that when it is imported, so it holds where this function is the
    first to import Ray (``rnnbench run``); its processes inherit it.  A cluster
    keeps its nodes' addresses.
    """
    address = address or os.environ.get("RAY_ADDRESS") or None
    if not address and "ray" not in sys.modules:
        os.environ.setdefault(LOOPBACK_ONLY, "0")
    import ray

    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        print("rnnbench run: warning: RAY_AUTH_MODE=disabled turns Ray's token authentication "
              "off; anyone who reaches the cluster's ports can run code on it", file=sys.stderr)
    try:
        if address:
            if num_cpus or dashboard:
                raise UsageError("--num-cpus/--dashboard: only for an embedded Ray; "
                                 "a cluster given by --address/RAY_ADDRESS is used as it is")
            ray.init(address=address, log_to_driver=False)
            return False
        _quiet_opt_out_advice()
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(),
                 resources={EXCLUSIVE: 1}, include_dashboard=dashboard,
                 dashboard_host="127.0.0.1", log_to_driver=False,
                 _system_config={"task_oom_retries": max_retries})
        return True
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f"--address {address}" if address else "ray.init"
        raise UsageError(f"{where}: cannot start or reach Ray: "
                         f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}") \
            from None


def _dry_run(job, out: Path, cpus: int, fresh: bool = False, exclusive: bool = False) -> int:
    """List the job's cells with what ``run`` would do with the same options:
    under ``--fresh`` every cell is to run; under ``--exclusive`` cells run one at
    a time (an embedded Ray is one node)."""
    import pandas as pd

    from rnnbench.results import store

    listing = store.scan(out) if not fresh else store.Listing()
    if listing.broken:
        print("rnnbench run: warning: " + listing.broken_line(
            "skipped (a run moves them aside and runs their cells again)"), file=sys.stderr)
    stored = store.frame(listing.rows)
    status = dict(zip(stored["cell_id"], stored["status"])) if not stored.empty else {}
    wall = dict(zip(stored["cell_id"], stored.get("wall_s", pd.Series(dtype=float)))) \
        if not stored.empty else {}
    rows = []
    for c in job.cells:
        est = estimate_seconds(c)
        rows.append({"cell_id": c.cell_id, "model": c.model, "strategy": c.strategy,
                     "task": c.task, "tau": c.tau, "batch": c.batch, "hidden": c.hidden,
                     "seed": c.seed, "threads": c.n_threads, "workers": c.workers,
                     "device": c.device, "status": status.get(c.cell_id, "todo"),
                     "est_s": round(wall.get(c.cell_id, est), 1)})
    table = pd.DataFrame(rows)
    with pd.option_context("display.max_rows", None, "display.width", 200):
        print(table.to_string(index=False))
    todo = table[table["status"] == "todo"]
    n_ok = int((table["status"] == OK).sum())
    cell_s = float(todo["est_s"].sum()) if not todo.empty else 0.0
    left = [c for c in job.cells if c.cell_id not in status]
    if exclusive:  # one cell at a time on the one node
        busy, where = sum(estimate_seconds(c) for c in left), "one cell at a time (--exclusive)"
    else:
        slots = max(1, cpus)
        busy = sum(c.n_threads * estimate_seconds(c) for c in left) / slots
        where = f"on {slots} CPUs"
    print(f"\n{job.name}: {len(table)} cells, {len(table) - len(todo)} done "
          f"({n_ok} ok, {len(table) - len(todo) - n_ok} not ok), {len(todo)} to run"
          f"{' (--fresh: stored rows are ignored)' if fresh else ''}; "
          f"estimated {cell_s / 60:.1f} min of cell time, about {busy / 60:.1f} min "
          f"{where} (a rough guide)")
    return 0


# Configuration columns a job may vary (seed aside); the summary keeps those that vary.
SUMMARY_KEYS = ("strategy_options", "task", "task_options", "tau", "batch", "hidden", "threads",
                "device", "dtype", "workers", "harness", "train_steps", "lr", "repeats")


def summary(out: Path, cell_ids: set[str]) -> tuple[str, bool]:
    """A table of the job's rows, one line per configuration (model, strategy and the
    columns that vary in the job; seeds together), the failures listed; and whether all ok.

    ``step_ms_median`` is the median over the configuration's ok seeds of their
    median step time: never a median across different τ or batch sizes.
    """
    import pandas as pd

    from rnnbench.results import store

    df = store.load_rows_only(out)
    if df.empty:
        return "no rows", False
    df = df[df["cell_id"].isin(cell_ids)]
    keys = ["model", "strategy"] + [k for k in SUMMARY_KEYS if k in df.columns
                                    and df[k].astype(str).nunique() > 1]
    times = df["step_ms_median"].where(df["status"] == OK) if "step_ms_median" in df.columns \
        else pd.Series(float("nan"), index=df.index)
    grouped = df.assign(step_ms_median=times).groupby(keys, dropna=False)
    table = pd.DataFrame({
        "cells": grouped.size(),
        "ok": grouped["status"].apply(lambda s: int((s == OK).sum())),
        "step_ms_median": grouped["step_ms_median"].median(),
    }).reset_index()
    lines = [table.to_string(index=False, float_format=lambda v: f"{v:.3g}"),
             "(step_ms_median: per line, the median over its ok seeds of each cell's median "
             "training-step time in ms)"]
    bad = df[df["status"] != OK]
    if not bad.empty:
        cols = [c for c in ("cell_id", "model", "strategy", "tau", "status", "error")
                if c in bad.columns]
        bad = bad[cols].copy()
        bad["error"] = bad["error"].astype(str).str.slice(0, 90)
        lines += ["", f"{len(bad)} cell(s) not ok:", bad.to_string(index=False)]
    missing = len(cell_ids) - len(df)
    if missing:
        lines += ["", f"{missing} cell(s) have no row yet"]
    return "\n".join(lines), bad.empty and not missing


def _stop_on_sigterm() -> None:
    """SIGTERM (a scheduler, `ray job stop`, `kill`) stops the sweep as Ctrl-C does:
    in-flight cells are cancelled, rows written so far are consolidated and kept."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def _run_on_ray(job, out: Path, args: argparse.Namespace, runner: Callable) -> SweepResult:
    """Connect to (or start) Ray, run the job's missing cells, let go of Ray."""
    started = connect(args.address, args.num_cpus, args.dashboard, args.max_retries)
    import ray  # after connect, which may set how Ray binds before importing it

    _stop_on_sigterm()  # after ray.init, which installs its own SIGTERM handler
    try:
        if args.exclusive and not ray.cluster_resources().get(EXCLUSIVE):
            raise UsageError(
                f"--exclusive: no node declares the {EXCLUSIVE} resource; start each node with "
                f"ray start ... --resources='{{\"{EXCLUSIVE}\": 1}}'")
        print(f"rnnbench run: {job.name}: {len(job.cells)} cells -> {out}", file=sys.stderr)
        return run_sweep(job.cells, out, runner=runner, max_retries=args.max_retries,
                         cell_timeout=args.cell_timeout, exclusive=args.exclusive,
                         fresh=args.fresh, retry_failed=args.retry_failed,
                         progress=not args.no_progress, desc=job.name, job=job.name)
    finally:
        if started:
            ray.shutdown()


def main(args: argparse.Namespace) -> int:
    from rnnbench.job import jobfile
    from rnnbench.results import store

    try:
        job = jobfile.load(args.job)
    except jobfile.JobError as exc:  # one line per problem, each naming its field
        for problem in exc.problems:
            print(f"rnnbench run: error: {exc.path}: {problem}", file=sys.stderr)
        return 2
    out = Path(args.out or Path("results") / job.name)
    if args.dry_run:
        return _dry_run(job, out, args.num_cpus or os.cpu_count() or 1, fresh=args.fresh,
                        exclusive=args.exclusive)
    runner = resolve(args.runner)
    store.check_writable(out)  # before Ray starts: a bad --out costs nothing
    with store.locked(out):    # a second run on the same folder stops here, at once
        if not args.fresh and {c.cell_id for c in job.cells} <= _done_ids(out, args.retry_failed):
            # every cell is stored: nothing to run, so no Ray to start (it costs seconds)
            result = SweepResult(cells=len(job.cells), skipped=len(job.cells))
            if store.parquet_stale(out):
                store.consolidate(out)
        else:
            result = _run_on_ray(job, out, args, runner)
    text, all_ok = summary(out, {c.cell_id for c in job.cells})
    print(text)
    print(f"\n{job.name}: {result.ran} cell(s) run now, {result.skipped} already stored, "
          f"{result.wall_s:.1f} s; results in {out / store.PARQUET}")
    return 0 if all_ok else 1
