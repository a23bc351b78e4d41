"""Read a results folder (or take a DataFrame) and tidy it for reporting.

``load(source)`` reads a folder with :func:`rnnbench.results.store.load`, or one
``results.parquet`` file.  The frame it returns has every
:data:`rnnbench.results.rows.ROW_KEYS` column, numbers as numbers,
list columns as Python lists, and a few derived label columns.
"""

from __future__ import annotations

import json
import math
import os
import sys

import numpy as np
import pandas as pd

from rnnbench.errors import StorageError, UsageError
from rnnbench.facts import REQUIRED_ROW_KEYS
from rnnbench.results import store
from rnnbench.results.rows import LIST_KEYS, NUMERIC_KEYS, ROW_KEYS, contended

# a frame handed over directly may lack the ids a row file must have
REQUIRED = tuple(k for k in REQUIRED_ROW_KEYS if k != "cell_id")


def load(source, command: str = "report") -> pd.DataFrame:
    """Rows from a DataFrame, a results folder or one ``results.parquet`` file (a path or
    a URI: :mod:`rnnbench.results.location`); UsageError when there are none.  Row
    files that fail validation are skipped with one warning line, named for the
    ``rnnbench`` command reading them, as ``run`` moves them aside; an OSError while
    reading is a StorageError (exit 3)."""
    if isinstance(source, pd.DataFrame):
        return tidy(source, "frame")
    where = store.where(source, "RESULTS")
    try:
        return _read(where, command)
    except OSError as exc:
        raise StorageError(f"{where}: cannot read results ({exc.strerror or exc})") from None


def _read(where, command: str) -> pd.DataFrame:
    kind = where.kind()
    if kind == "link":  # the argument itself may be a link (never a link inside)
        where = store.where(os.path.realpath(where.path), "RESULTS")
        kind = where.kind()
    if kind == "file":
        if not where.path.endswith(".parquet"):
            raise UsageError(f"{where}: not a results folder or a {store.PARQUET} file")
        try:
            return tidy(store.read_parquet(where), str(where))
        except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError: not Parquet
            raise UsageError(f"{where}: cannot read it as Parquet ({exc})") from None
    if kind != "dir":
        raise UsageError(f"{where}: no such results folder or {store.PARQUET} file")
    listing = store.scan(where)
    if not listing.rows and not listing.broken and where.kind(store.PARQUET) != "file":
        raise UsageError(f"{where}: not a results folder (no rows/*.json or {store.PARQUET})")
    if listing.broken:  # skipped, as `run` does (which also moves them aside)
        warning = f"rnnbench {command}: warning: " + listing.broken_line("skipped")
        print(warning, file=sys.stderr)
    frame = store.frame(listing.rows) if listing.rows or listing.broken else store.load(where)
    return tidy(frame, str(where))


def tidy(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """Check the columns, fill the missing ones, coerce types, add labels."""
    if frame is None or len(frame) == 0:
        raise UsageError(f"{where}: no result rows to report")
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise UsageError(f"{where}: not rnnbench result rows (missing column {missing[0]!r})")
    df = frame.copy().reset_index(drop=True)
    # a key the rows lack: NaN for a number, None (object) for text; added at once
    lacking = {
        col: pd.Series(np.nan, index=df.index)
        if col in NUMERIC_KEYS
        else pd.Series(None, index=df.index, dtype=object)
        for col in ROW_KEYS
        if col not in df.columns
    }
    if lacking:
        df = pd.concat([df, pd.DataFrame(lacking, index=df.index)], axis=1)
    for col in NUMERIC_KEYS:
        df[col] = pd.to_numeric(df[col], errors="coerce")
    for col in LIST_KEYS:
        df[col] = df[col].map(as_list)
    df["status"] = _text(df["status"], "unknown")
    df["workers"] = df["workers"].fillna(1)
    for col, default in (("batch", 1), ("threads", 1), ("seed", 0)):
        df[col] = df[col].fillna(default)
    df["device"] = _text(df["device"], "cpu")
    # Single-process rows carry split 'none' (older rows: nothing); rows timed by the
    # worker-group harness carry 'time' or 'batch'.
    split = _text(df["split"], "none")
    df["split"] = split.where(split.str.strip() != "", "none")
    if "harness" not in df.columns:
        df["harness"] = None
    df["harness"] = _text(df["harness"], "auto")
    df["strategy_label"] = [_label(s, o) for s, o in zip(df["strategy"], df["strategy_options"])]
    df["task_label"] = [_label(t, o) for t, o in zip(_text(df["task"], "?"), df["task_options"])]
    df["series"] = df["model"].astype(str) + " + " + df["strategy_label"]
    df["baseline"] = _text(df["baseline"], "")
    df["contended"] = [contended(r) for r in df.to_dict("records")]
    # FLOP-normalised time: what the step achieved against the work it did
    # (flops: torch.utils.flop_counter's count of one forward + backward).
    df["gflop_per_s"] = df["flops"] / df["step_ms_median"] * 1e-6
    df["ms_per_gflop"] = df["step_ms_median"] / (df["flops"] * 1e-9)
    return df


def _text(column: pd.Series, default: str) -> pd.Series:
    """A text column with ``default`` where it is null, whatever dtype it was read as
    (a column with no value at all reads as float64 NaN, and a float column cannot be
    filled with text)."""
    return column.astype(object).where(column.notna(), default).astype(str)


def as_list(value) -> list:
    """A list column value (list, numpy array, JSON text, None) as a plain list."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return []
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        return []  # None, NaN: nothing recorded
    return [as_list(v) if isinstance(v, (list, tuple, np.ndarray)) else v for v in value]


def options(value) -> dict:
    """Strategy/task options (dict, JSON text, pairs, Parquet struct) as a dict."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError:
            return {"": value}
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        value = dict(value)
    if not isinstance(value, dict):
        return {"": value}
    # Parquet structs come back with every known key, absent ones as None.
    return {k: v for k, v in value.items() if v is not None}


def _label(name, opts_value) -> str:
    """'truncated_bptt(k=32)', or just the name when there are no options."""
    opts = options(opts_value)
    if not opts:
        return str(name)
    inner = ", ".join(f"{k}={v}" if k else str(v) for k, v in sorted(opts.items()))
    return f"{name}({inner})"
