"""A cell's row before it is measured: configuration and provenance filled, every
measure empty (:func:`base_row`), or a failure (:func:`failure_row`)."""

from __future__ import annotations

import json

from rnnbench.facts import OK, clip_error
from rnnbench.harness.provenance import provenance
from rnnbench.results.rows import FLOAT_KEYS, LIST_KEYS, ROW_KEYS


def n_params(hidden: int, n_in: int, n_out: int, model: str) -> int:
    """Parameters U, W, V, b, c; W is H x n_out for a Jordan network (the output feeds h)."""
    n_rec = n_out if model == "jordan" else hidden
    return hidden * n_in + hidden * n_rec + n_out * hidden + hidden + n_out


def base_row(cell) -> dict:
    """A row for ``cell`` with configuration and provenance filled, every measure empty."""
    task = cell.make_task()
    row = dict.fromkeys(ROW_KEYS, None)
    cfg = cell.config()
    row.update({k: v for k, v in cfg.items() if k in row})
    row.update(
        cell_id=cell.cell_id,
        strategy_options=json.dumps(cfg["strategy_options"], sort_keys=True),
        task_options=json.dumps(cfg["task_options"], sort_keys=True),
        threads=cell.n_threads,
        baseline=json.dumps(cfg["baseline"], sort_keys=True) if cell.baseline else None,
        n_in=task.n_in,
        n_out=task.n_out,
        chance_acc=task.chance_accuracy(),
        n_params=n_params(cell.hidden, task.n_in, task.n_out, cell.model),
        status=OK,
        error=None,
        split=None if cell.grouped else "none",
        workers_active=1 if cell.workers == 1 else None,
        neighbours=0,
        attempt=1,
        depth=cell.depth,
        **provenance(cell.device),
    )
    row.update({k: [] for k in LIST_KEYS if k not in cfg})
    row.update({k: float("nan") for k in FLOAT_KEYS if k not in cfg and k != "chance_acc"})
    return row


def failure_row(cell, status: str, error: str) -> dict:
    """A row that records a failed cell: status crashed | timeout | failed | oom, the error."""
    row = base_row(cell)
    row.update(status=status, error=clip_error(error))
    return row
