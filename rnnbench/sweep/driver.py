"""The sweep driver: a job's cells as Ray tasks, each row written as it arrives, resumably.

Each cell is one Ray Core task (``num_cpus`` = the cell's threads; a cell timed by the
worker-group harness asks for none, its actors hold the CPUs).  :class:`Sweep` submits
them, collects results with ``ray.wait`` and writes each row as it arrives
(:mod:`rnnbench.results.store`), so a killed run loses nothing and a rerun skips what is
stored.  Crashed workers are retried; exceptions, time-outs and crashes beyond the
retries become rows with status ``failed`` / ``timeout`` / ``crashed``.

Under ``exclusive`` every cell also takes one unit of the custom resource
``rnnbench_exclusive``, which each node declares once, so at most one cell times on a
node at a time.
"""

from __future__ import annotations

import collections
import importlib
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from rnnbench import stopping
from rnnbench.errors import StorageError, UsageError
from rnnbench.facts import FAILED, OK, TIMEOUT, clip_error
from rnnbench.harness.row import failure_row
from rnnbench.job.cell import Cell
from rnnbench.results import store
from rnnbench.results.location import Location
from rnnbench.results.rows import Row, status_of
from rnnbench.sweep import registry as reg
from rnnbench.sweep.adaptive import Planner
from rnnbench.sweep.task import execute

EXCLUSIVE = "rnnbench_exclusive"
DEFAULT_RUNNER = "rnnbench.harness.runner:run_cell"
IN_FLIGHT_MIN = 100  # cells submitted to Ray at a time, at least (see Sweep.in_flight)
CHECK_EVERY_S = 1.0  # the driver wakes at least this often (Ctrl-C, time-outs, progress)
SLIVER = 0.001  # of rnnbench_exclusive, taken by a cell that may share its node


# --------------------------------------------------------------------------- one task


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


def resources(cell: Cell, exclusive: bool, shared: bool = False) -> dict:
    """What the cell's task asks Ray for.

    A one-process cell holds ``threads`` CPUs (and a GPU on cuda); a cell timed by the
    worker-group harness holds nothing, since its own placement group of actors holds
    the CPUs/GPUs — so nothing deadlocks on a small node.  A cell that runs alone
    (``exclusive``, or the cell's own ``exclusive: true``) takes the node's whole
    ``rnnbench_exclusive`` unit; when some cells of a sweep run alone (``shared``), every
    other cell takes a sliver of it, so none runs beside one that must run alone.
    """
    solo = not cell.grouped
    opts: dict[str, Any] = {
        "num_cpus": cell.n_threads if solo else 0,
        "num_gpus": 1 if solo and cell.device == "cuda" else 0,
    }
    if exclusive or cell.exclusive:
        opts["resources"] = {EXCLUSIVE: 1}
    elif shared:
        opts["resources"] = {EXCLUSIVE: SLIVER}
    return opts


def fresh_process(cell: Cell) -> bool:
    """Whether the cell must run in a fresh process: one of several replicates (its task
    is declared with ``max_calls=1``, so Ray ends the worker after it; the replicates'
    spread then includes what differs between processes)."""
    return cell.replicates > 1


def alone_somewhere(cells: Iterable[Cell]) -> bool:
    """Whether some cell must run alone on its node (then every cell takes a share)."""
    return any(c.exclusive for c in cells)


def error_text(exc: BaseException) -> str:
    """The first line of a failed task's error (the cause of a RayTaskError)."""
    import ray.exceptions as rex

    if isinstance(exc, rex.RayTaskError):
        cause = exc.cause if getattr(exc, "cause", None) is not None else exc
        text = f"{type(cause).__name__}: {cause}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return clip_error(text.strip().splitlines()[0]) if text.strip() else type(exc).__name__


def release(cell: Cell) -> None:
    """A killed worker-group cell leaves its placement group holding CPUs: remove it."""
    if cell.grouped:
        try:
            from rnnbench.harness.group.placement import release as release_group

            release_group(cell)
        except Exception:
            pass


def infeasible(cells: list[Cell], exclusive: bool) -> dict[str, str]:
    """cell_id -> why no alive node can ever run it (asks too many CPUs/GPUs, or to run
    alone where no node declares ``rnnbench_exclusive``)."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    out = {}
    for cell in cells:
        need = resources(cell, exclusive, alone_somewhere(cells))
        want = {"CPU": need["num_cpus"], "GPU": need["num_gpus"], **need.get("resources", {})}
        if any(all(res.get(k, 0) >= v for k, v in want.items() if v) for res in nodes):
            continue
        most = {k: max((res.get(k, 0) for res in nodes), default=0) for k, v in want.items() if v}
        out[cell.cell_id] = (
            "infeasible: the cell needs "
            + ", ".join(f"{v:g} {k}" for k, v in want.items() if v)
            + " on one node; the largest node has "
            + ", ".join(f"{most[k]:g} {k}" for k in most)
        )
    return out


# --------------------------------------------------------------------------- results on disk


def storage_error(out: Any, exc: OSError) -> StorageError:
    return StorageError(
        f"{out}: cannot write results ({exc.strerror or exc}); the rows "
        "written so far are kept; make room and run the same command again "
        "to resume"
    )


def consolidate(out: Any) -> None:
    """``results.parquet`` rewritten; an OSError (disk full, ...) as a StorageError."""
    try:
        store.consolidate(out)
    except OSError as exc:
        raise storage_error(out, exc) from None


def stored_rows(out: Any, retry_failed: bool) -> list[Row]:
    """The rows stored under ``out`` that count as done (ok ones only, with
    ``retry_failed``).  Broken row files are moved aside, so their cells run again, and
    named on one line."""
    listing = store.scan(out, move_broken=True)
    if listing.broken:
        print(
            "rnnbench run: warning: "
            + listing.broken_line(
                f"moved to {store.where(out).child(store.ROWS, store.BROKEN)}; "
                "their cells run again"
            ),
            file=sys.stderr,
        )
    return [row for row in listing.rows if not retry_failed or row.get("status") == OK]


def done_ids(out: Any, retry_failed: bool) -> set[str]:
    """The ids of :func:`stored_rows`."""
    return {row["cell_id"] for row in stored_rows(out, retry_failed)}


# --------------------------------------------------------------------------- the sweep


@dataclass
class SweepResult:
    """What one sweep did."""

    cells: int
    skipped: int
    counts: dict = field(default_factory=dict)  # status -> rows written now
    latency_s: dict = field(default_factory=dict)  # cell_id -> submit-to-stored seconds
    wall_s: float = 0.0

    @property
    def ran(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class SweepOptions:
    """How a sweep runs its cells (the ``rnnbench run`` options that reach the driver)."""

    runner: str | Callable = DEFAULT_RUNNER
    max_retries: int = 3  # retries of a cell whose worker crashed
    cell_timeout: float | None = None  # seconds from a cell's first start
    exclusive: bool = False  # at most one cell per node at a time
    fresh: bool = False  # forget the stored rows first
    retry_failed: bool = False  # rerun stored rows that are not ok
    max_in_flight: int | None = None  # tasks submitted at a time (None: see in_flight)
    progress: bool = True
    desc: str = "cells"
    job: str | None = None  # recorded in every row


class Sweep:
    """The cells not yet stored under ``out``, run on the connected Ray: :meth:`submit`
    keeps tasks in flight, :meth:`collect` writes the rows that are ready,
    :meth:`expire` cancels cells past their time-out, :meth:`clean_up` cancels what is
    left and consolidates.  :meth:`run` does all of it."""

    def __init__(self, cells: list[Cell], out: Location, options: SweepOptions):
        self.cells, self.out, self.opt = cells, out, options
        self.todo: list[Cell] = []
        self.pending: dict = {}  # ObjectRef -> cell
        self.ref_of: dict = {}  # cell_id -> ObjectRef, of the pending cells
        self.submitted: dict[str, float] = {}
        self.timed_out: set[str] = set()
        self.counts: dict[str, int] = {}
        self.result = SweepResult(cells=len(cells), skipped=0)
        self.bar: Any = None
        self.shared = alone_somewhere(cells)
        self.queue: collections.deque[Cell] = collections.deque()
        self.planner = Planner([])

    # -- before ---------------------------------------------------------------
    def prepare(self) -> list[Cell]:
        """Forget the folder under ``fresh``, and find the cells left to run (the folder
        exists: :func:`run_sweep` made it when it took the lock)."""
        try:
            if self.opt.fresh:
                store.clear(self.out)
            stored = stored_rows(self.out, self.opt.retry_failed)
        except OSError as exc:
            raise storage_error(self.out, exc) from None
        done = {row["cell_id"] for row in stored}
        self.planner = Planner(self.cells, stored)
        self.todo = [c for c in self.cells if c.cell_id not in done]
        self.result.skipped = len(self.cells) - len(self.todo)
        return self.todo

    def in_flight(self) -> int:
        """Tasks submitted at a time: enough to keep every CPU busy, few enough that
        each ``ray.wait`` over them stays cheap (its cost grows with their number)."""
        import ray

        if self.opt.max_in_flight:
            return self.opt.max_in_flight
        return max(IN_FLIGHT_MIN, 4 * int(ray.cluster_resources().get("CPU", 1)))

    # -- while ----------------------------------------------------------------
    def record(self, row: dict) -> None:
        """Write one row, count it, move the progress bar."""
        row["job"] = self.opt.job
        store.check(self.out)  # the folder still the one locked: never write into another
        try:
            store.write_row(self.out, row)
        except OSError as exc:
            store.check(self.out)  # a folder removed just now says so
            raise storage_error(self.out, exc) from None
        status = row.get("status", "?")
        self.counts[status] = self.counts.get(status, 0) + 1
        self.result.latency_s[row["cell_id"]] = time.perf_counter() - self.submitted[row["cell_id"]]
        self.bar.update(1)
        self.bar.set_postfix(
            ok=self.counts.get(OK, 0),
            failed=sum(self.counts.values()) - self.counts.get(OK, 0),
            refresh=False,
        )

    def submit(self, tasks: tuple[Any, Any], runner: Callable, registry: Any, limit: int) -> None:
        """Submit queued cells until ``limit`` are in flight (``tasks``: the task in a
        reused worker, and in a fresh one)."""
        while self.queue and len(self.pending) < limit:
            cell = self.queue.popleft()
            ref = (
                tasks[fresh_process(cell)]
                .options(
                    max_retries=self.opt.max_retries,
                    retry_exceptions=False,
                    **resources(cell, self.opt.exclusive, self.shared),
                )
                .remote(runner, cell, registry)
            )
            self.pending[ref] = cell
            self.ref_of[cell.cell_id] = ref
            self.submitted[cell.cell_id] = time.perf_counter()

    def collect(self, registry: Any) -> None:
        """Wait (at most :data:`CHECK_EVERY_S`) for results; write every row that is ready.
        A task that gave no row becomes a failure row with the status of its error."""
        import ray

        ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=CHECK_EVERY_S)
        if ready and len(self.pending) > 1:  # every result that is ready, not one per wait
            ready, _ = ray.wait(list(self.pending), num_returns=len(self.pending), timeout=0)
        for ref in ready:
            cell = self.pending.pop(ref)
            del self.ref_of[cell.cell_id]
            try:
                row = ray.get(ref)
            except Exception as exc:  # every failure becomes a row
                row = self.failed(cell, exc, registry)
            self.record(row)
            self.adapt(row)

    def adapt(self, row: Row) -> None:
        """Queue the replicates adaptive precision asks for (:mod:`.adaptive`), and write
        its decision into the rows of a group it has decided."""
        more, decided = self.planner.after(row)
        for cell in more:
            self.todo.append(cell)
            self.queue.append(cell)
            self.bar.total += 1
        for done in decided:
            store.check(self.out)
            try:
                store.write_row(self.out, done)
            except OSError as exc:
                raise storage_error(self.out, exc) from None

    def failed(self, cell: Cell, exc: BaseException, registry: Any) -> dict:
        """The row of a cell whose task raised (a crash beyond the retries, a time-out)."""
        status = TIMEOUT if cell.cell_id in self.timed_out else status_of(exc)
        error = (
            f"time-out: cancelled after {self.opt.cell_timeout:g} s"
            if status == TIMEOUT
            else error_text(exc)
        )
        attempt, neighbours = reg.ask(registry.leave.remote(cell.cell_id), (None, None))
        release(cell)
        return {**failure_row(cell, status, error), "attempt": attempt, "neighbours": neighbours}

    def expire(self, registry: Any) -> None:
        """Cancel (force) the cells running longer than the time-out since their first
        start (across their attempts, not from when they were queued)."""
        import ray

        now = time.time()
        for cell_id, begun in reg.ask(registry.started.remote(), {}).items():
            ref = self.ref_of.get(cell_id)
            if (
                ref is not None
                and cell_id not in self.timed_out
                and now - begun > self.opt.cell_timeout
            ):
                self.timed_out.add(cell_id)
                ray.cancel(ref, force=True)

    # -- after ----------------------------------------------------------------
    def clean_up(self, registry: Any) -> OSError | None:
        """Cancel what is still in flight, give back its placement groups, consolidate
        the rows; the OSError of a consolidation that failed (raised by the caller)."""
        import ray

        by_id = {c.cell_id: c for c in self.todo}
        try:
            for ref, cell in self.pending.items():
                ray.cancel(ref, force=True)
                registry.leave.remote(cell.cell_id)
                release(cell)
            for cell_id in self.timed_out:  # a group placed just as its cell was cancelled
                release(by_id[cell_id])
        except Exception:
            pass
        try:
            store.check(self.out)  # a folder removed or replaced gets no Parquet file
        except StorageError:
            return None
        try:
            store.consolidate(self.out)
        except OSError as exc:
            return exc
        return None

    def run(self) -> SweepResult:
        """Run every cell not yet stored; write each row as it arrives."""
        import ray
        from tqdm import tqdm

        if not self.prepare():
            if store.parquet_stale(self.out):
                consolidate(self.out)
            return self.result
        runner = resolve(self.opt.runner)  # once, on the driver: a bad name fails fast
        t0 = time.perf_counter()
        registry = reg.registry()
        reg.ask(registry.forget.remote([c.cell_id for c in self.todo]), None)
        tasks = (ray.remote(execute), ray.remote(max_calls=1)(execute))
        self.bar = tqdm(
            total=len(self.todo),
            desc=self.opt.desc,
            unit="cell",
            file=sys.stderr,
            disable=not self.opt.progress,
            dynamic_ncols=True,
        )
        bad = infeasible(self.todo, self.opt.exclusive)
        # cells that must run alone queue after the shared ones (stable): the first cells of
        # a sweep start beside Ray's own start-up, its workers still importing - the worst
        # moment to time a cell alone
        self.queue.extend(
            sorted((c for c in self.todo if c.cell_id not in bad), key=lambda c: c.exclusive)
        )
        limit = self.in_flight()
        next_check = 0.0
        unwritten = None
        try:
            for cell in (c for c in self.todo if c.cell_id in bad):
                self.submitted[cell.cell_id] = time.perf_counter()
                self.record(
                    {**failure_row(cell, FAILED, bad[cell.cell_id]), "attempt": 0, "neighbours": 0}
                )
            while self.queue or self.pending:
                store.check(self.out)  # at least once a second (collect waits at most that)
                self.submit(tasks, runner, registry, limit)
                self.collect(registry)
                if self.opt.cell_timeout and self.pending and time.monotonic() >= next_check:
                    next_check = time.monotonic() + CHECK_EVERY_S
                    self.expire(registry)
        finally:
            self.bar.close()
            with stopping.deferred():  # a second Ctrl-C, SIGTERM or SIGHUP waits for it
                unwritten = self.clean_up(registry)
            self.result.counts = self.counts
            self.result.wall_s = time.perf_counter() - t0
        if unwritten is not None:
            raise storage_error(self.out, unwritten)
        return self.result


def run_sweep(cells: Iterable[Cell], out: Any, **options: Any) -> SweepResult:
    """Run the cells not yet stored under ``out`` on the connected Ray; write each row as
    it arrives.  ``options``: :class:`SweepOptions`' fields.

    ``runner(cell) -> row`` is the per-cell function (default
    :func:`rnnbench.harness.runner.run_cell`).  Worker crashes are retried
    ``max_retries`` times; exceptions are not retried and give ``failed`` rows; a cell
    running longer than ``cell_timeout`` seconds since its first start is cancelled (its
    worker killed) and gives a ``timeout`` row.  The results folder is locked for the
    sweep (:func:`rnnbench.results.store.locked`); a row that cannot be written, or a
    folder removed or replaced while the sweep runs, raises :class:`StorageError`, rows
    already written stay.  ``out``: a path, a URI (:mod:`rnnbench.results.location`) or a
    Location.
    """
    where = store.where(out)
    with store.locked(where):
        return Sweep(list(dict.fromkeys(cells)), where, SweepOptions(**options)).run()
