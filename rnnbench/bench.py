"""``rnnbench bench``: run one cell and print its row (a table, or one JSON object)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from rnnbench.argtypes import non_negative_int, positive_float, positive_int
from rnnbench.core import strategies, tasks
from rnnbench.core.models import MODELS
from rnnbench.errors import UsageError
from rnnbench.facts import ALL, DEVICES, DTYPES, OK
from rnnbench.job.cell import Cell
from rnnbench.results.rows import LIST_KEYS, ROW_KEYS

# the cell fields ``bench`` takes from its options exactly as given
AS_GIVEN = (
    "model strategy tau batch hidden seed threads device workers train_steps lr repeats dtype rho"
).split()


def _option(text: str) -> tuple[str, object]:
    """KEY=VALUE, the value read as YAML would (int, float, bool, string)."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        parsed = value
    return key, parsed


def overrides(text: str) -> dict:
    """A baseline given as FIELD=VALUE,FIELD=VALUE (values read as YAML; an
    option as strategy_options.KEY=VALUE), e.g. ``model=elman,strategy=bptt``."""
    out: dict = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, value = _option(item)
        field, dot, option = key.partition(".")
        if dot:
            out.setdefault(field, {})
            if not isinstance(out[field], dict):
                raise argparse.ArgumentTypeError(f"{field}: given both as a value and as options")
            out[field][option] = value
        else:
            out[key] = value
    if not out:
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE[,FIELD=VALUE...], got {text!r}")
    return out


def threads(text: str) -> int | str:
    """A thread count, or ``all`` (every CPU of the node)."""
    return ALL if text == ALL else positive_int(text)


def configure(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--model", required=True, choices=sorted(MODELS))
    a("--strategy", required=True, choices=list(strategies.STRATEGIES))
    a("--tau", required=True, type=positive_int, help="sequence length")
    a("--batch", type=positive_int, default=1)
    a("--hidden", type=positive_int, default=128)
    a(
        "--n-in",
        type=positive_int,
        help="input size (text: the vocabulary; delayed_recall: symbols+1)",
    )
    a("--n-out", type=positive_int, help="output size (must equal --n-in for these tasks)")
    a(
        "--task",
        choices=list(tasks.TASKS),
        default=None,
        help="default: text (sequence_parity for single_output)",
    )
    a(
        "--option",
        action="append",
        type=_option,
        default=[],
        metavar="KEY=VALUE",
        help="a strategy option, e.g. k=32, segments=16, chunk=256, feedback=argmax",
    )
    a("--task-option", action="append", type=_option, default=[], metavar="KEY=VALUE")
    a("--threads", type=threads, default=1, help="a count, or 'all' (the node's CPUs)")
    a("--device", choices=DEVICES, default="cpu")
    a("--dtype", choices=DTYPES, default="float32")
    a("--workers", type=positive_int, default=1)
    a("--train-steps", type=non_negative_int, default=0)
    a("--lr", type=positive_float, default=1e-2)
    a(
        "--repeats",
        type=positive_int,
        default=20,
        help="exactly this many timing samples (default 20)",
    )
    a("--seed", type=non_negative_int, default=0)
    a(
        "--rho",
        type=positive_float,
        default=None,
        help="rescale W at init to this spectral radius (elman, single_output)",
    )
    a("--timeout", type=positive_float, default=None, help="seconds before the cell is a time-out")
    a(
        "--baseline",
        type=overrides,
        default=None,
        metavar="FIELD=VALUE[,...]",
        help="time the cell against itself with these fields changed, taking turns, e.g. "
        "workers=1, threads=1, model=elman,strategy=best_bptt",
    )
    a(
        "--replicates",
        type=positive_int,
        default=1,
        help="measure the cell this many times, each in a fresh process, and print the "
        "interval over them (default 1)",
    )
    a("--json", action="store_true", help="print exactly one JSON object on stdout")
    a(
        "--address",
        metavar="ADDR",
        help="run the cell on a running Ray cluster (HOST:PORT or 'auto'); default: this "
        "process, and an embedded loopback-only Ray for a worker group",
    )


def _sizes_to_task_options(task: str, n_in: int | None, n_out: int | None) -> dict:
    """Map --n-in / --n-out onto the task's own size option (or check them)."""
    if n_in is not None and n_out is not None and n_in != n_out:
        raise UsageError(f"--n-out: must equal --n-in ({n_in}) for task {task}, got {n_out}")
    n = n_in if n_in is not None else n_out
    if n is None:
        return {}
    flag = "--n-in" if n_in is not None else "--n-out"
    if task == "text":
        return {"vocab": n}
    if task == "delayed_recall":
        if n < 2:
            raise UsageError(f"{flag}: delayed_recall needs at least 2 classes, got {n}")
        return {"symbols": n - 1}
    if n != 2:
        raise UsageError(f"{flag}: task {task} has 2 classes, got {n}")
    return {}


def cell_from_args(args: argparse.Namespace) -> Cell:
    task = args.task or ("sequence_parity" if args.model == "single_output" else "text")
    task_options = dict(args.task_option)
    task_options.update(_sizes_to_task_options(task, args.n_in, args.n_out))
    return Cell(
        **{field: getattr(args, field) for field in AS_GIVEN},
        task=task,
        strategy_options=dict(args.option),
        task_options=task_options,
        baseline=getattr(args, "baseline", None) or (),
        replicates=getattr(args, "replicates", 1),
    )


def _fmt(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, list):
        return f"[{len(value)} values]"
    return str(value)


# what the table shows: the row without its lists and its least telling fields
TABLE_KEYS = tuple(
    k
    for k in ROW_KEYS
    if k
    not in LIST_KEYS
    + (
        "task_options",
        "n_params",
        "seed",
        "harness",
        "dtype",
        "train_steps",
        "lr",
        "repeats",
        "workers_active",
        "neighbours",
        "attempt",
        "python",
        "ray",
        "rnnbench",
        "git_commit",
        "host",
        "timestamp",
    )
)


def _strict(row: dict) -> dict:
    """The row for strict JSON: NaN and infinities as null."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


def _run_fresh(cell: Cell, timeout_s: float | None) -> dict:
    """The cell's row, measured in a new process (a replicate)."""
    from rnnbench.harness.runner import run_cell

    return run_cell(cell, timeout_s=timeout_s)


def replicates(cell: Cell, timeout_s: float | None) -> list[dict]:
    """The cell measured ``cell.replicates`` times, each in a fresh process (spawned, one
    task per process), one after another."""
    import dataclasses
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    out = []
    for i in range(cell.replicates):
        one = dataclasses.replace(cell, replicate=i)
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            out.append(pool.submit(_run_fresh, one, timeout_s).result())
    return out


def summary(rows: list[dict]) -> dict:
    """The replicates' interval: of the paired speedup, else of the step time."""
    from rnnbench.stats import ratio_ci

    key = "speedup_median" if rows[0].get("baseline") else "step_ms_median"
    ci = ratio_ci([float(r[key]) for r in rows if r.get("status") == OK and r.get(key) is not None])
    return {
        "figure": key,
        "replicates": len(rows),
        "estimate": ci.estimate if ci else None,
        "low": ci.low if ci else None,
        "high": ci.high if ci else None,
    }


def _on_cluster(cell: Cell, timeout_s: float | None) -> dict:
    """The cell's row, measured in a Ray task on the connected cluster (a worker-group
    cell's task holds no CPUs: its actors do)."""
    import ray

    from rnnbench.harness.runner import run_cell

    cpus = 0 if cell.grouped else cell.n_threads
    task: Any = ray.remote(num_cpus=cpus, max_retries=0)(run_cell)
    return ray.get(task.remote(cell, timeout_s))


def _measure(cell: Cell, timeout_s: float | None, address: str | None) -> dict:
    """The cell's row: on the cluster at ``address``, else here (a worker group on an
    embedded Ray); Ray, when this started or joined it, is let go of before returning."""
    from rnnbench import raysession
    from rnnbench.harness.runner import run_cell

    if address:
        raysession.join(address)
    try:
        return _on_cluster(cell, timeout_s) if address else run_cell(cell, timeout_s=timeout_s)
    finally:
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            raysession.stop(started=not address)


def main(args: argparse.Namespace) -> int:

    cell = cell_from_args(args)
    if cell.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device: cuda was asked for but no CUDA device is available")
    from rnnbench.harness.budget import too_large
    from rnnbench.harness.procstat import warn_if_loaded

    if getattr(args, "address", None) and cell.replicates > 1:
        raise UsageError("--address: not with --replicates (each replicate is a local process)")
    if (why := too_large(cell)) is not None:
        raise UsageError(why)
    warn_if_loaded("bench")
    if cell.replicates > 1:
        rows = replicates(cell, args.timeout)
        interval = summary(rows)
        if args.json:
            print(
                json.dumps(
                    {"interval": interval, "rows": [_strict(r) for r in rows]},
                    default=str,
                    allow_nan=False,
                )
            )
        else:
            for r in rows:
                print(
                    f"replicate {r['replicate']}: {interval['figure']} "
                    f"{_fmt(r.get(interval['figure']))} ({r['status']})"
                )
            if interval["estimate"] is not None:
                print(
                    f"{interval['figure']}: {interval['estimate']:.4g} "
                    f"[{interval['low']:.4g}, {interval['high']:.4g}] (95% over "
                    f"{interval['replicates']} replicates, each a fresh process)"
                )
        return 0 if all(r["status"] == OK for r in rows) else 1
    row = _measure(cell, args.timeout, getattr(args, "address", None))
    if args.json:
        json.dump(_strict(row), sys.stdout, default=str, allow_nan=False)
        sys.stdout.write("\n")
    else:
        width = max(map(len, TABLE_KEYS))
        for key in TABLE_KEYS:
            if row.get(key) is not None:
                print(f"{key:<{width}}  {_fmt(row[key])}")
    return 0 if row["status"] == OK else 1
