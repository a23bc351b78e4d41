"""``rnnbench run JOB.yaml``: the command line of a sweep — its options, Ray started or
joined, the dry run, the run summary and the exit code.

Embedded by default (``ray.init(address="local", num_cpus=<machine's>,
include_dashboard=False)``); ``--address ADDR`` / ``RAY_ADDRESS`` / ``auto`` connects to
a running cluster and starts nothing.  Under ``--exclusive`` each node must declare
``rnnbench_exclusive`` once (``ray start --resources='{"rnnbench_exclusive": 1}'``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from rnnbench import raysession, stopping
from rnnbench.argtypes import non_negative_int, positive_float, positive_int
from rnnbench.errors import UsageError
from rnnbench.facts import OK
from rnnbench.job import jobfile
from rnnbench.results import store
from rnnbench.results.labels import PLAIN, baseline_text
from rnnbench.results.location import Location
from rnnbench.sweep.driver import (
    DEFAULT_RUNNER,
    EXCLUSIVE,
    SweepResult,
    alone_somewhere,
    consolidate,
    done_ids,
    resolve,
    run_sweep,
    storage_error,
)
from rnnbench.sweep.estimate import estimate_seconds


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", help="job file (YAML), e.g. jobs/quick.yaml")
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="results folder: a path, or a URI such as s3://bucket/run, file:///abs/path "
        "(docs/storage.md; default: results/<job name>)",
    )
    parser.add_argument(
        "--address",
        metavar="ADDR",
        help="connect to a running Ray cluster (ADDR, or 'auto'); default: "
        "RAY_ADDRESS if set, else start an embedded Ray on this machine",
    )
    parser.add_argument(
        "--num-cpus",
        type=positive_int,
        metavar="N",
        help="CPUs of the embedded Ray (default: all of this machine's)",
    )
    parser.add_argument(
        "--exclusive",
        action="store_true",
        help="at most one cell per node at a time (honest timings)",
    )
    parser.add_argument(
        "--max-retries",
        type=non_negative_int,
        default=3,
        metavar="N",
        help="retries of a cell whose worker crashed (default 3)",
    )
    parser.add_argument(
        "--cell-timeout",
        type=positive_float,
        metavar="S",
        help="cancel a cell that runs longer than S seconds (a 'timeout' row)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="list the cells, how many are done and what the rest may cost",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="forget stored rows in --out and start over"
    )
    parser.add_argument(
        "--retry-failed", action="store_true", help="also rerun cells whose stored row is not ok"
    )
    parser.add_argument(
        "--dashboard",
        action="store_true",
        help="start Ray's dashboard (embedded Ray only), bound to 127.0.0.1",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--runner",
        default=DEFAULT_RUNNER,
        metavar="MODULE:FUNCTION",
        help=f"the per-cell function (default {DEFAULT_RUNNER})",
    )


def connect(
    address: str | None, num_cpus: int | None, dashboard: bool, max_retries: int = 3
) -> bool:
    """Connect to Ray (:mod:`rnnbench.raysession`); return True when this call started an
    embedded instance.

    A cell whose worker Ray's memory monitor kills is retried at most
    ``max_retries`` times, then gives an ``oom`` row: the embedded Ray is started
    with ``task_oom_retries`` set so (Ray's default, 15 with growing back-off,
    keeps a cell that never fits busy for many minutes); a cluster keeps its
    own setting (README: ``RAY_task_oom_retries``).
    """
    address = address or os.environ.get("RAY_ADDRESS") or None
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        print(
            "rnnbench run: warning: RAY_AUTH_MODE=disabled turns Ray's token authentication "
            "off; anyone who reaches the cluster's ports can run code on it",
            file=sys.stderr,
        )
    if address:
        if num_cpus or dashboard:
            raise UsageError(
                "--num-cpus/--dashboard: only for an embedded Ray; "
                "a cluster given by --address/RAY_ADDRESS is used as it is"
            )
        raysession.join(address)
        return False
    raysession.start(  # a Ray that cannot start: a UsageError naming why
        num_cpus=num_cpus,
        resources={EXCLUSIVE: 1},
        dashboard=dashboard,
        system_config={"task_oom_retries": max_retries},
    )
    return True


def _dry_run(job, out: Location, cpus: int, fresh: bool = False, exclusive: bool = False) -> int:
    """List the job's cells with what ``run`` would do with the same options:
    under ``--fresh`` every cell is to run; under ``--exclusive`` cells run one at
    a time (an embedded Ray is one node)."""
    import pandas as pd

    listing = store.scan(out) if not fresh else store.Listing()
    if listing.broken:
        print(
            "rnnbench run: warning: "
            + listing.broken_line("skipped (a run moves them aside and runs their cells again)"),
            file=sys.stderr,
        )
    stored = store.frame(listing.rows)
    status = dict(zip(stored["cell_id"], stored["status"])) if not stored.empty else {}
    wall = (
        dict(zip(stored["cell_id"], stored.get("wall_s", pd.Series(dtype=float))))
        if not stored.empty
        else {}
    )
    rows = []
    for c in job.cells:
        est = estimate_seconds(c)
        rows.append(
            {
                "cell_id": c.cell_id,
                "model": c.model,
                "strategy": c.strategy,
                "task": c.task,
                "tau": c.tau,
                "batch": c.batch,
                "hidden": c.hidden,
                "seed": c.seed,
                "threads": c.n_threads,
                "workers": c.workers,
                "baseline": baseline_text(c.baseline),
                "device": c.device,
                "status": status.get(c.cell_id, "todo"),
                "est_s": round(wall.get(c.cell_id, est), 1),
            }
        )
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
    print(
        f"\n{job.name}: {len(table)} cells, {len(table) - len(todo)} done "
        f"({n_ok} ok, {len(table) - len(todo) - n_ok} not ok), {len(todo)} to run"
        f"{' (--fresh: stored rows are ignored)' if fresh else ''}; "
        f"estimated {cell_s / 60:.1f} min of cell time, about {busy / 60:.1f} min "
        f"{where} (a rough guide)"
    )
    return 0


# Configuration columns a job may vary (seed aside); the summary keeps those that vary.
SUMMARY_KEYS = tuple(
    "strategy_options task task_options tau batch hidden threads device dtype workers harness "
    "train_steps lr repeats".split()
)


def run_summary(out: store.Out, cell_ids: set[str]) -> tuple[str, bool]:
    """A table of the job's rows, one line per configuration (model, strategy and the
    columns that vary in the job; seeds together), the failures listed; and whether all ok.

    ``step_ms_median`` is the median over the configuration's ok seeds of their
    median step time: never a median across different τ or batch sizes.  Paired cells
    (timed beside a baseline) are a table of their own, after the plain ones, with
    the baseline as text (``threads=1``), its step time ``baseline_ms`` and the paired
    ``speedup`` (baseline / cell per block pair), each the median over the ok seeds.
    """
    import pandas as pd

    df = store.load_rows_only(out)
    if df.empty:
        return "no rows", False
    df = df[df["cell_id"].isin(cell_ids)]
    base = df["baseline"] if "baseline" in df.columns else pd.Series(None, index=df.index)
    df = df.assign(baseline=base.map(baseline_text))
    keys = ["model", "strategy"] + [
        k for k in SUMMARY_KEYS if k in df.columns and df[k].astype(str).nunique() > 1
    ]
    plain = df[df["baseline"] == PLAIN]
    paired = df[df["baseline"] != PLAIN]
    lines = []
    if not plain.empty:
        lines += [
            *(["plain cells (each timed on its own):"] if not paired.empty else []),
            _summary_table(plain, keys, ()),
            "(step_ms_median: per line, the median over its ok seeds of each cell's median "
            "training-step time in ms)",
        ]
    if not paired.empty:
        lines += [
            *([""] if lines else []),
            "paired cells (each timed beside its baseline, taking turns):",
            _summary_table(
                paired,
                keys[:2] + ["baseline"] + keys[2:],
                (("baseline_ms", "baseline_step_ms_median"), ("speedup", "speedup_median")),
            ),
            "(baseline: the fields the baseline changes; baseline_ms: its median step time; "
            "speedup: baseline / cell per block pair, the median over the ok seeds of each "
            "cell's median)",
        ]
    bad = df[df["status"] != OK]
    if not bad.empty:
        cols = [
            c
            for c in ("cell_id", "model", "strategy", "tau", "status", "error")
            if c in bad.columns
        ]
        bad = bad[cols].copy()
        bad["error"] = bad["error"].astype(str).str.slice(0, 90)
        lines += ["", f"{len(bad)} cell(s) not ok:", bad.to_string(index=False)]
    missing = len(cell_ids) - len(df)
    if missing:
        lines += ["", f"{missing} cell(s) have no row yet"]
    return "\n".join(lines), bad.empty and not missing


def _summary_table(df, keys: list[str], extra: tuple[tuple[str, str], ...]) -> str:
    """One line per configuration: cells, ok, and the median over ok seeds of
    ``step_ms_median`` and of each ``extra`` (shown name, row column)."""
    import pandas as pd

    columns = {"step_ms_median": "step_ms_median", **dict(extra)}
    measured = df.assign(
        **{
            name: (
                pd.to_numeric(df[col], errors="coerce").where(df["status"] == OK)
                if col in df.columns
                else float("nan")
            )
            for name, col in columns.items()
        }
    )
    grouped = measured.groupby(keys, dropna=False)
    table = pd.DataFrame(
        {
            "cells": grouped.size(),
            "ok": grouped["status"].apply(lambda s: int((s == OK).sum())),
            **{name: grouped[name].median() for name in columns},
        }
    ).reset_index()
    return table.to_string(index=False, float_format=lambda v: f"{v:.3g}")


def _run_on_ray(job, out: Location, args: argparse.Namespace, runner: Callable) -> SweepResult:
    """Connect to (or start) Ray, run the job's missing cells, let go of Ray."""
    started = connect(args.address, args.num_cpus, args.dashboard, args.max_retries)
    import ray  # after connect, which may set how Ray binds before importing it

    stopping.install()  # SIGTERM, SIGHUP as Ctrl-C: cells cancelled, rows consolidated
    try:
        alone = (
            "--exclusive"
            if args.exclusive
            else ("exclusive (cells of the job)" if alone_somewhere(job.cells) else None)
        )
        if alone and not ray.cluster_resources().get(EXCLUSIVE):
            raise UsageError(
                f"{alone}: no node declares the {EXCLUSIVE} resource; start each node with "
                f"ray start ... --resources='{{\"{EXCLUSIVE}\": 1}}'"
            )
        print(f"rnnbench run: {job.name}: {len(job.cells)} cells -> {out}", file=sys.stderr)
        return run_sweep(
            job.cells,
            out,
            runner=runner,
            max_retries=args.max_retries,
            cell_timeout=args.cell_timeout,
            exclusive=args.exclusive,
            fresh=args.fresh,
            retry_failed=args.retry_failed,
            progress=not args.no_progress,
            desc=job.name,
            job=job.name,
        )
    finally:
        raysession.stop(started)


def _all_stored(job, out: Location, retry_failed: bool) -> bool:
    """Whether every cell of the job has a stored row (broken ones moved aside); an
    OSError (a full or failing disk) as a StorageError (exit 3)."""
    try:
        return {c.cell_id for c in job.cells} <= done_ids(out, retry_failed)
    except OSError as exc:
        raise storage_error(out, exc) from None


def consolidate_if_stale(out: Location) -> None:
    """The rerun's consolidation: ``results.parquet`` rewritten when older than the rows;
    an OSError (disk still full, ...) as a StorageError (exit 3, one line)."""
    try:
        stale = store.parquet_stale(out)
    except OSError as exc:
        raise storage_error(out, exc) from None
    if stale:
        consolidate(out)


def main(args: argparse.Namespace) -> int:
    try:
        job = jobfile.load(args.job)
    except jobfile.JobError as exc:  # one line per problem, each naming its field
        for problem in exc.problems:
            print(f"rnnbench run: error: {exc.path}: {problem}", file=sys.stderr)
        return 2
    out = store.where(args.out or str(Path("results") / job.name))  # exit 2 on a bad URI
    if args.dry_run:
        return _dry_run(
            job,
            out,
            args.num_cpus or os.cpu_count() or 1,
            fresh=args.fresh,
            exclusive=args.exclusive,
        )
    runner = resolve(args.runner)
    store.check_writable(out)  # before Ray starts: a bad --out costs nothing
    with store.locked(out):  # a second run on the same folder stops here, at once
        if not args.fresh and _all_stored(job, out, args.retry_failed):
            # every cell is stored: nothing to run, so no Ray to start (it costs seconds)
            result = SweepResult(cells=len(job.cells), skipped=len(job.cells))
            with stopping.deferred():
                consolidate_if_stale(out)
        else:
            from rnnbench.harness.procstat import warn_if_loaded

            if not (args.address or os.environ.get("RAY_ADDRESS")):  # not a cluster's load
                warn_if_loaded("run")  # once the input is good and there is timing to do
            result = _run_on_ray(job, out, args, runner)
    text, all_ok = run_summary(out, {c.cell_id for c in job.cells})
    print(text)
    print(
        f"\n{job.name}: {result.ran} cell(s) run now, {result.skipped} already stored, "
        f"{result.wall_s:.1f} s; results in {out.child(store.PARQUET)}"
    )
    return 0 if all_ok else 1
