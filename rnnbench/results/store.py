"""Results on disk: one JSON file per cell, consolidated to Parquet.

Layout of a results folder ``DIR``::

    DIR/rows/<cell_id>.json   one row each, written to a temp file then renamed
    DIR/rows/.broken/         row files that failed validation, moved aside by ``run``
    DIR/results.parquet       all rows, rewritten by :func:`consolidate`
    DIR/.rnnbench.lock        held (``flock``) by the one ``rnnbench run`` writing here

``results.parquet`` has one column per row key, each with the type the row schema
declares (:data:`rnnbench.results.rows.SCHEMA`) even when every value is null, so any
number of runs read together (pandas, ``pyarrow.dataset``, DuckDB, Polars).  The
options (``strategy_options``, ``task_options``) are JSON text, ``timestamp`` a UTC
timestamp, the list columns Parquet lists.

A row file appears whole or not at all, so a run killed at any moment leaves
only complete rows, and a rerun skips them.  A row counts as stored only when
it parses as a JSON object whose ``cell_id`` is its file name and that has
:data:`rnnbench.facts.REQUIRED_ROW_KEYS` (:func:`scan`); anything else (truncated, hand-edited, a
copy under another name) is broken: skipped, and moved aside by ``run`` so its
cell runs again.  :func:`load` reads a run finished or not.  Everything is read
as data (JSON, Parquet) — nothing is unpickled.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable, Iterator
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rnnbench.errors import UsageError
from rnnbench.facts import REQUIRED_ROW_KEYS
from rnnbench.results.rows import FLOAT_KEYS, ROW_KEYS, SCHEMA, Row

ROWS = "rows"
BROKEN = ".broken"
PARQUET = "results.parquet"
LOCK = ".rnnbench.lock"
OPTION_COLUMNS = ("strategy_options", "task_options")


def _plain(value: Any) -> Any:
    """JSON fallback for numpy scalars/arrays, paths and other odd values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def check_writable(out: str | Path) -> None:
    """Make ``DIR/rows`` and write a probe file there; UsageError (one line) if the
    folder cannot hold results (a file, under a file, read-only, ...)."""
    out = Path(out)
    try:
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out}: is a file, not a folder")
        (out / ROWS).mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out / ROWS, prefix=".probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write results there "
                         f"({exc.strerror or type(exc).__name__})") from None


_HELD: dict[str, int] = {}  # real path of a results folder -> its lock file's fd


@contextlib.contextmanager
def locked(out: str | Path) -> Iterator[None]:
    """Hold the results folder's lock (``flock`` on ``DIR/.rnnbench.lock``) while writing.

    Another process holding it gives a UsageError naming its pid, at once.
    Re-entrant within one process; released when the process dies, however.
    """
    key = os.path.realpath(out)
    if key in _HELD:
        yield
        return
    Path(out).mkdir(parents=True, exist_ok=True)
    fd = os.open(Path(out) / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise UsageError(f"--out {out}: another rnnbench run (pid {holder}) is writing to "
                         "this results folder; wait for it or give another --out") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[key] = fd
    try:
        yield
    finally:
        del _HELD[key]
        os.close(fd)  # releases the lock


def row_path(out: str | Path, cell_id: str) -> Path:
    return Path(out) / ROWS / f"{cell_id}.json"


def write_row(out: str | Path, row: Row) -> Path:
    """Write one row as ``DIR/rows/<cell_id>.json`` (temp file + rename)."""
    cell_id = row.get("cell_id")
    if not isinstance(cell_id, str) or not cell_id or "/" in cell_id or cell_id.startswith("."):
        raise ValueError(f"cell_id: a row needs a plain string cell_id, got {cell_id!r}")
    path = row_path(out, cell_id)
    _atomic_write(path, json.dumps(_strict(row), default=_plain, allow_nan=False).encode())
    return path


def _strict(value: Any) -> Any:
    """NaN and infinities as null, so row files are strict JSON (jq, other languages)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def _row_files(out: str | Path) -> list[Path]:
    rows = Path(out) / ROWS
    return sorted(rows.glob("*.json")) if rows.is_dir() else []


def _check(path: Path) -> tuple[Row, None] | tuple[None, str]:
    """(row, None) for a valid row file, (None, why) for a broken one."""
    try:
        row = json.loads(path.read_bytes())
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})"
    except (ValueError, RecursionError):
        return None, "not whole JSON"
    if not isinstance(row, dict):
        return None, f"not a JSON object ({type(row).__name__})"
    if row.get("cell_id") != path.stem:
        return None, "its cell_id is not its file name"
    missing = [k for k in REQUIRED_ROW_KEYS if k not in row]
    if missing:
        return None, f"no {missing[0]!r}"
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


def scan(out: str | Path, move_broken: bool = False) -> Listing:
    """Validate every row file; with ``move_broken``, move the broken ones to
    ``DIR/rows/.broken/`` (so their cells count as not stored)."""
    listing = Listing()
    for p in _row_files(out):
        row, why = _check(p)
        if why is None:
            assert row is not None
            listing.rows.append(row)
            continue
        if move_broken:
            aside = p.parent / BROKEN
            aside.mkdir(exist_ok=True)
            os.replace(p, aside / p.name)
        listing.broken.append((p, why))
    return listing


def stored_ids(out: str | Path) -> set[str]:
    """The cell ids that already have a valid row."""
    return {row["cell_id"] for row in scan(out).rows}


def read_rows(out: str | Path) -> list[Row]:
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
            df[col] = values.map(lambda v: v if isinstance(v, str) or v is None
                                 else json.dumps(v, sort_keys=True, default=_plain))
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


def load(out: str | Path) -> pd.DataFrame:
    """Read a results folder, finished or not: the row files when present,
    else ``results.parquet`` (for a folder that kept only the Parquet file)."""
    out = Path(out)
    if _row_files(out):
        return frame(read_rows(out))
    if (out / PARQUET).is_file():
        return read_parquet(out / PARQUET)
    return frame([])


def read_parquet(path: str | Path) -> pd.DataFrame:
    """One ``results.parquet`` file as a tidy frame (the timestamp as ISO text, as in
    a row file, so the frame has the same shape whatever the source)."""
    df = pq.read_table(path).to_pandas()
    for col in df.columns:
        if isinstance(df[col].dtype, pd.DatetimeTZDtype):
            df[col] = df[col].map(lambda t: None if pd.isna(t) else t.isoformat())
    return _tidy(df)


ARROW_TYPES = {
    "str": pa.string(), "json": pa.string(), "int": pa.int64(), "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("s", tz="UTC"), "list[float]": pa.list_(pa.float64()),
    "list[int]": pa.list_(pa.int64()), "list[list[float]]": pa.list_(pa.list_(pa.float64())),
}
ARROW_TYPES["list[str]"] = pa.list_(pa.string())  # the ranks' node ids and IPs


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT


def _typed(value: Any, kind: str) -> Any:
    """One value as the Python value of its declared kind (None when missing)."""
    if _missing(value):
        return None
    if kind == "json":
        return value if isinstance(value, str) else json.dumps(value, sort_keys=True,
                                                                default=_plain)
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
        return (stamp.tz_localize("UTC") if stamp.tzinfo is None
                else stamp.tz_convert("UTC")).to_pydatetime()
    inner = kind[len("list["):-1]  # list[...]
    return [_typed(v, inner) for v in _listify(value)]


def _column(values: list[Any], kind: str | None) -> pa.Array:
    """A pyarrow array for one column, of its declared type; a column the schema does
    not know is inferred (JSON text where types are too mixed, strings when all null)."""
    if kind is not None:
        try:
            return pa.array([_typed(v, kind) for v in values], type=ARROW_TYPES[kind])
        except (TypeError, ValueError, OverflowError, pa.ArrowException) as exc:
            warnings.warn(f"{PARQUET}: a value does not fit its declared type {kind} "
                          f"({exc}); the column is written as inferred", stacklevel=3)
    try:
        array = pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        array = pa.array([None if _missing(v) else json.dumps(v, default=_plain)
                          for v in values], type=pa.string())
    return array.cast(pa.string()) if pa.types.is_null(array.type) else array


def consolidate(out: str | Path) -> Path | None:
    """Write every stored row to ``DIR/results.parquet`` (temp + rename);
    return its path, or None when there are no rows yet."""
    df = load_rows_only(out)
    if df.empty:
        return None
    columns = list(df.columns) + [k for k in ROW_KEYS if k not in df.columns]
    table = pa.table({col: _column(df[col].tolist() if col in df.columns else [None] * len(df),
                                   SCHEMA.get(col)) for col in columns})
    path = Path(out) / PARQUET
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{PARQUET}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def parquet_stale(out: str | Path) -> bool:
    """True when ``results.parquet`` is missing or older than the rows (a row
    file, or the rows folder, which changes when a file is added or removed)."""
    rows = Path(out) / ROWS
    if not rows.is_dir():
        return False
    newest = max([rows.stat().st_mtime_ns] + [p.stat().st_mtime_ns for p in _row_files(out)])
    parquet = Path(out) / PARQUET
    return not parquet.is_file() or parquet.stat().st_mtime_ns < newest


def load_rows_only(out: str | Path) -> pd.DataFrame:
    """The row files only (never the Parquet file), as a tidy frame."""
    return frame(read_rows(out))


def clear(out: str | Path) -> int:
    """Remove stored rows and the Parquet file (``--fresh``); return how many rows went."""
    files = _row_files(out)
    for p in files:
        p.unlink(missing_ok=True)
    (Path(out) / PARQUET).unlink(missing_ok=True)
    return len(files)
