"""Results on disk: one JSON file per cell, consolidated to Parquet.

Layout of a results folder ``DIR``::

    DIR/rows/<cell_id>.json   one row each, written to a temp file then renamed
    DIR/results.parquet       all rows, rewritten by :func:`consolidate`

A row file appears whole or not at all, so a run killed at any moment leaves
only complete rows, and a rerun skips them.  :func:`load` reads a run finished
or not.  Everything is read as data (JSON, Parquet) — nothing is unpickled.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .rows import FLOAT_KEYS, ROW_KEYS

ROWS = "rows"
PARQUET = "results.parquet"
OPTION_COLUMNS = ("strategy_options", "task_options")


def _plain(value: Any):
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


def row_path(out: str | Path, cell_id: str) -> Path:
    return Path(out) / ROWS / f"{cell_id}.json"


def write_row(out: str | Path, row: dict) -> Path:
    """Write one row as ``DIR/rows/<cell_id>.json`` (temp file + rename)."""
    cell_id = row.get("cell_id")
    if not isinstance(cell_id, str) or not cell_id or "/" in cell_id or cell_id.startswith("."):
        raise ValueError(f"cell_id: a row needs a plain string cell_id, got {cell_id!r}")
    path = row_path(out, cell_id)
    _atomic_write(path, json.dumps(_strict(row), default=_plain, allow_nan=False).encode())
    return path


def _strict(value):
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


def stored_ids(out: str | Path) -> set[str]:
    """The cell ids that already have a row."""
    return {p.stem for p in _row_files(out)}


def read_rows(out: str | Path) -> list[dict]:
    """Every complete row file under ``DIR/rows`` (an unreadable one is skipped, with a warning)."""
    rows = []
    for p in _row_files(out):
        try:
            rows.append(json.loads(p.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            warnings.warn(f"{p}: skipped, not a readable row ({exc})", stacklevel=2)
    return rows


def _listify(value):
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


def frame(rows: Iterable[dict]) -> pd.DataFrame:
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
        return _tidy(pq.read_table(out / PARQUET).to_pandas())
    return frame([])


def _column(values: list):
    """A pyarrow array for one column; JSON text where types are too mixed."""
    try:
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return pa.array([None if v is None or (isinstance(v, float) and math.isnan(v))
                         else json.dumps(v, default=_plain) for v in values], type=pa.string())


def consolidate(out: str | Path) -> Path | None:
    """Write every stored row to ``DIR/results.parquet`` (temp + rename);
    return its path, or None when there are no rows yet."""
    df = load_rows_only(out)
    if df.empty:
        return None
    table = pa.table({col: _column(df[col].tolist()) for col in df.columns})
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
