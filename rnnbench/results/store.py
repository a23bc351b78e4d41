"""Results in a folder (local, or any URI :mod:`rnnbench.results.location` accepts):
one JSON file per cell, consolidated to Parquet.

Layout of a results folder ``DIR``::

    DIR/rows/<cell_id>.json   one row each, written whole or not at all (location.py)
    DIR/rows/.broken/         row files that failed validation, moved aside by ``run``
    DIR/results.parquet       all rows, rewritten by :func:`consolidate`
    DIR/.rnnbench.lock        held by the one ``rnnbench run`` writing here (lock.py)

``results.parquet`` has one column per row key, each with the type the row schema
declares (:data:`rnnbench.results.rows.SCHEMA`) even when every value is null, so any
number of runs read together (pandas, ``pyarrow.dataset``, DuckDB, Polars).  The
options (``strategy_options``, ``task_options``) are JSON text, ``timestamp`` a UTC
timestamp, the list columns Parquet lists.

A row file appears whole or not at all, so a run killed at any moment leaves
only complete rows, and a rerun skips them.  A row counts as stored only when
it is a regular file of at most :data:`ROW_LIMIT` bytes that parses as a JSON object
whose ``cell_id`` is its file name and that passes :func:`rnnbench.results.validate.problem`
(:func:`scan`); anything else (truncated, hand-edited, a copy under another name, wrong
types, a FIFO or a link) is broken: skipped, and moved aside by ``run`` so its cell runs
again.  :func:`load` reads a run finished or not.  Everything is read as data (JSON,
Parquet) — nothing is unpickled.

Links are never followed (docs/storage.md): a folder whose ``rows/``, ``rows/.broken/``,
``report/``, ``report/tables`` or ``report/plots`` is a link, or whose lock is a link, is
refused with one line (exit 2).  A run never creates its folder again once it has
started: a folder removed or replaced mid-run ends it (:func:`check`, exit 3).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rnnbench.errors import UsageError
from rnnbench.results import location
from rnnbench.results import lock as lock_mod
from rnnbench.results.location import Location
from rnnbench.results.rows import FLOAT_KEYS, ROW_KEYS, SCHEMA, Row
from rnnbench.results.validate import problem

ROWS = "rows"
BROKEN = ".broken"
PARQUET = "results.parquet"
LOCK = lock_mod.LOCK
REPORT = "report"
OPTION_COLUMNS = ("strategy_options", "task_options")
ROW_LIMIT = 16 * 2**20  # bytes: a row file larger than this is broken, and not read
# the sub-folders that must never be links (a link there would send writes elsewhere)
NO_LINKS = (ROWS, f"{ROWS}/{BROKEN}", REPORT, f"{REPORT}/tables", f"{REPORT}/plots", LOCK)

Out = str | os.PathLike[str] | Location


def where(out: Out, field: str = "--out") -> Location:
    """The Location of a results folder given as a path, a URI or a Location."""
    return out if isinstance(out, Location) else location.of(out, field)


def refuse_links(out: Out, field: str = "--out") -> None:
    """UsageError (one line) when one of :data:`NO_LINKS` is a link (local folders)."""
    loc = where(out, field)
    if not loc.local:
        return
    for sub in NO_LINKS:
        if loc.kind(sub) == "link":
            raise UsageError(
                f"{field} {loc}: {sub} is a link; rnnbench never follows links in a "
                "results folder (replace it with a real folder, or copy without links)"
            )


def _plain(value: Any) -> Any:
    """JSON fallback for numpy scalars/arrays, paths and other odd values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


def check_writable(out: Out) -> None:
    """Make ``DIR/rows`` and write a probe file there; UsageError (one line) if the
    folder cannot hold results (a file, under a file, read-only, a link inside,
    unreachable storage, ...)."""
    loc = where(out)
    try:
        if loc.kind() == "file":
            raise UsageError(f"--out {loc}: is a file, not a folder")
        refuse_links(loc)
        loc.make_dir(parents=True)
        loc.make_dir(ROWS)
        loc.child(ROWS).probe()
    except UsageError:
        raise
    except (OSError, ValueError) as exc:
        text = str(exc).strip().splitlines()
        why = getattr(exc, "strerror", None) or (text[0] if text else type(exc).__name__)
        raise UsageError(f"--out {loc}: cannot write results there ({why})") from None


def clean_tmp(out: Out) -> int:
    """Remove this module's temp files left by a killed run (``DIR/.*.tmp``,
    ``DIR/rows/.*.tmp``); return how many.  Only under the folder's lock."""
    loc = where(out)
    gone = 0
    for folder in (loc, loc.child(ROWS)):
        for name in folder.names():
            if location.is_tmp(name) and folder.kind(name) == "file":
                folder.remove(name)
                gone += 1
    return gone


@contextlib.contextmanager
def locked(out: Out) -> Iterator[None]:
    """Hold the results folder's lock (:mod:`rnnbench.results.lock`) while writing; the
    folder and its ``rows/`` are made first when missing, and leftover temp files are
    removed once held.

    Another process holding it gives a UsageError naming it, at once.
    Re-entrant within one process.
    """
    loc = where(out)
    refuse_links(loc)
    first = not lock_mod.holds(loc)  # taken now (not re-entered): the run's start
    if first:
        loc.make_dir(parents=True)
    with lock_mod.locked(loc):
        if first:
            loc.make_dir(ROWS)
            clean_tmp(loc)
        yield


def check(out: Out) -> None:
    """StorageError when the lock this process holds on ``out`` no longer stands (the
    folder removed or replaced, a lease lost): the run must stop (exit 3)."""
    lock_mod.check(where(out))


def write_row(out: Out, row: Row) -> Location:
    """Write one row as ``DIR/rows/<cell_id>.json`` (whole or not at all).  While this
    process holds the folder's lock (a run) the folder is never created here: one removed
    mid-run stays removed."""
    cell_id = row.get("cell_id")
    if not isinstance(cell_id, str) or not cell_id or "/" in cell_id or cell_id.startswith("."):
        raise ValueError(f"cell_id: a row needs a plain string cell_id, got {cell_id!r}")
    loc = where(out)
    if not lock_mod.holds(loc):  # outside a run (a tool, a test): the folder is made
        loc.make_dir(ROWS, parents=True)
    rows = loc.child(ROWS)
    rows.write(
        f"{cell_id}.json", json.dumps(_strict(row), default=_plain, allow_nan=False).encode()
    )
    return rows.child(f"{cell_id}.json")


def _strict(value: Any) -> Any:
    """NaN and infinities as null, so row files are strict JSON (jq, other languages)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def _row_files(out: Out) -> list[str]:
    """The names of the row files (``rows/*.json``, hidden ones aside)."""
    return [n for n in where(out).names(ROWS) if n.endswith(".json") and not n.startswith(".")]


def _check(rows: Location, name: str) -> tuple[Row, None] | tuple[None, str]:
    """(row, None) for a valid row file, (None, why) for a broken one."""
    try:
        data = rows.read(name, ROW_LIMIT)
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})"
    try:
        row = json.loads(data)
    except (ValueError, RecursionError):
        return None, "not whole JSON"
    why = problem(row)
    if why is not None:
        return None, why
    if row.get("cell_id") != name[: -len(".json")]:
        return None, "its cell_id is not its file name"
    return row, None


@dataclass
class Listing:
    """The valid rows of a results folder, and the broken row files (path, why)."""

    rows: list[Row] = field(default_factory=list)
    broken: list[tuple[Path, str]] = field(default_factory=list)

    def broken_line(self, action: str) -> str:
        """The broken files in one line, e.g. "2 broken row file(s) <action>: a.json (not
        whole JSON), b.json (...)" (the first five named)."""
        named = ", ".join(f"{p.name} ({why})" for p, why in self.broken[:5])
        more = f", and {len(self.broken) - 5} more" if len(self.broken) > 5 else ""
        return f"{len(self.broken)} broken row file(s) {action}: {named}{more}"


def scan(out: Out, move_broken: bool = False) -> Listing:
    """Validate every row file; with ``move_broken``, move the broken ones to
    ``DIR/rows/.broken/`` (so their cells count as not stored).  A folder with a link
    where :data:`NO_LINKS` are is refused (UsageError)."""
    loc = where(out)
    refuse_links(loc, "results")
    rows = loc.child(ROWS)
    listing = Listing()
    for name in _row_files(loc):
        row, why = _check(rows, name)
        if why is None:
            assert row is not None
            listing.rows.append(row)
            continue
        if move_broken:
            rows.make_dir(BROKEN)
            rows.move(name, f"{BROKEN}/{name}" if not rows.local else os.path.join(BROKEN, name))
        listing.broken.append((Path(rows.child(name).path), why))
    return listing


def stored_ids(out: Out) -> set[str]:
    """The cell ids that already have a valid row."""
    return {row["cell_id"] for row in scan(out).rows}


def read_rows(out: Out) -> list[Row]:
    """Every valid row under ``DIR/rows`` (broken files are skipped, with one warning)."""
    listing = scan(out)
    if listing.broken:
        warnings.warn(listing.broken_line("skipped"), stacklevel=2)
    return listing.rows


def _listify(value: Any) -> Any:
    """numpy arrays (nested ones too, as Parquet list columns come back) as lists."""
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    if isinstance(value, list):
        return [_listify(v) for v in value]
    return value


def _tidy(df: pd.DataFrame) -> pd.DataFrame:
    """Same shape whatever the source: option mappings as sorted JSON text,
    list columns as Python lists, ROW_KEYS first."""
    for col in df.columns:
        values = df[col]
        if col in OPTION_COLUMNS or values.map(lambda v: isinstance(v, dict)).any():
            df[col] = values.map(
                lambda v: (
                    v
                    if isinstance(v, str) or v is None
                    else json.dumps(v, sort_keys=True, default=_plain)
                )
            )
        elif values.map(lambda v: hasattr(v, "tolist") and not isinstance(v, str)).any():
            df[col] = values.map(_listify)
    for col in FLOAT_KEYS:  # null in a row file is NaN in the frame, even in an all-null column
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    first = [k for k in ROW_KEYS if k in df.columns]
    return df[first + [c for c in df.columns if c not in first]]


def frame(rows: Iterable[Row]) -> pd.DataFrame:
    """Rows as a tidy DataFrame (one row per cell)."""
    rows = list(rows)
    if not rows:
        return pd.DataFrame(columns=list(ROW_KEYS))
    return _tidy(pd.DataFrame.from_records(rows))


def load(out: Out) -> pd.DataFrame:
    """Read a results folder, finished or not: the row files when present,
    else ``results.parquet`` (for a folder that kept only the Parquet file)."""
    loc = where(out, "results")
    if _row_files(loc):
        return frame(read_rows(loc))
    if loc.kind(PARQUET) == "file":
        return read_parquet(loc.child(PARQUET))
    return frame([])


def read_parquet(path: Out) -> pd.DataFrame:
    """One ``results.parquet`` file as a tidy frame (the timestamp as ISO text, as in
    a row file, so the frame has the same shape whatever the source).  A local file is
    read only when it is a regular file (not a link, a FIFO or a device)."""
    loc = where(path, "results")
    if loc.local:
        if loc.kind() != "file":
            raise OSError(f"{loc}: not a regular file")
        table = pq.read_table(loc.path)
    else:
        table = pq.read_table(loc.path, filesystem=loc.fs)
    df = table.to_pandas()
    for col in df.columns:
        if isinstance(df[col].dtype, pd.DatetimeTZDtype):
            df[col] = df[col].map(lambda t: None if pd.isna(t) else t.isoformat())
    return _tidy(df)


ARROW_TYPES = {
    "str": pa.string(),
    "json": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("s", tz="UTC"),
    "list[float]": pa.list_(pa.float64()),
    "list[int]": pa.list_(pa.int64()),
    "list[list[float]]": pa.list_(pa.list_(pa.float64())),
}
ARROW_TYPES["list[str]"] = pa.list_(pa.string())  # the ranks' node ids and IPs


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT


def _typed(value: Any, kind: str) -> Any:
    """One value as the Python value of its declared kind (None when missing)."""
    if _missing(value):
        return None
    if kind == "json":
        return (
            value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=_plain)
        )
    if kind == "str":
        return str(value)
    if kind == "int":
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{value!r} is not an integer")
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "bool":
        if value not in (True, False, 0, 1):
            raise ValueError(f"{value!r} is not a boolean")
        return bool(value)
    if kind == "timestamp":
        stamp = pd.Timestamp(value)
        return (
            stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        ).to_pydatetime()
    inner = kind[len("list[") : -1]  # list[...]
    return [_typed(v, inner) for v in _listify(value)]


def _column(values: list[Any], kind: str | None) -> pa.Array:
    """A pyarrow array for one column, of its declared type; a column the schema does
    not know is inferred (JSON text where types are too mixed, strings when all null)."""
    if kind is not None:
        try:
            return pa.array([_typed(v, kind) for v in values], type=ARROW_TYPES[kind])
        except (TypeError, ValueError, OverflowError, pa.ArrowException) as exc:
            warnings.warn(
                f"{PARQUET}: a value does not fit its declared type {kind} "
                f"({exc}); the column is written as inferred",
                stacklevel=3,
            )
    try:
        array = pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        array = pa.array(
            [None if _missing(v) else json.dumps(v, default=_plain) for v in values],
            type=pa.string(),
        )
    return array.cast(pa.string()) if pa.types.is_null(array.type) else array


def consolidate(out: Out) -> Location | None:
    """Write every stored row to ``DIR/results.parquet`` (whole or not at all);
    return where, or None when there are no rows yet."""
    loc = where(out)
    df = load_rows_only(loc)
    if df.empty:
        return None
    columns = list(df.columns) + [k for k in ROW_KEYS if k not in df.columns]
    table = pa.table(
        {
            col: _column(
                df[col].tolist() if col in df.columns else [None] * len(df), SCHEMA.get(col)
            )
            for col in columns
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    loc.write(PARQUET, buffer.getvalue())
    return loc.child(PARQUET)


def parquet_stale(out: Out) -> bool:
    """True when ``results.parquet`` is missing or older than the rows (a row
    file, or the rows folder, which changes when a file is added or removed).  On an
    object store, whose folders have no times, always True when there are rows."""
    loc = where(out)
    if loc.kind(ROWS) != "dir":
        return False
    if not loc.local:
        return bool(_row_files(loc))
    rows = loc.child(ROWS)
    newest = max([loc.mtime_ns(ROWS)] + [rows.mtime_ns(n) for n in _row_files(loc)])
    return loc.kind(PARQUET) != "file" or loc.mtime_ns(PARQUET) < newest


def load_rows_only(out: Out) -> pd.DataFrame:
    """The row files only (never the Parquet file), as a tidy frame."""
    return frame(read_rows(out))


def clear(out: Out) -> int:
    """Remove stored rows and the Parquet file (``--fresh``); return how many rows went."""
    loc = where(out)
    files = _row_files(loc)
    for name in files:
        loc.child(ROWS).remove(name)
    loc.remove(PARQUET)
    return len(files)
