"""The environment the rows were measured in, to head every page of a report."""

from __future__ import annotations

import platform

import matplotlib
import numpy as np
import pandas as pd

FIELDS = (
    ("CPU", "cpu_model"),
    ("GPU", "gpu_name"),
    ("device", "device"),
    ("threads", "threads"),
    ("workers", "workers"),
    ("host", "host"),
    ("python", "python"),
    ("torch", "torch"),
    ("ray", "ray"),
    ("rnnbench", "rnnbench"),
    ("git commit", "git_commit"),
    ("allocator", "allocator"),
)


def _values(series: pd.Series) -> str:
    vals = series.dropna()
    vals = vals[vals.astype(str).str.strip() != ""]
    if vals.empty:
        return "not recorded"
    if pd.api.types.is_numeric_dtype(vals):
        vals = vals.astype(int)
    return ", ".join(str(v) for v in sorted(vals.unique(), key=str))


def nodes(rows: pd.DataFrame) -> str:
    """How many Ray nodes the rows ran on: the distinct ``node_id`` of the rows and of
    every rank of a worker-group cell (``rank_node_ids``), with their IP addresses."""
    ids: set[str] = set()
    ips: set[str] = set()
    for col, into in (("node_id", ids), ("node_ip", ips)):
        if col in rows.columns:
            into.update(str(v) for v in rows[col].dropna() if str(v).strip())
    for col, into in (("rank_node_ids", ids), ("rank_node_ips", ips)):
        if col in rows.columns:
            for value in rows[col].dropna():
                if isinstance(value, (list, tuple, np.ndarray)):
                    into.update(str(v) for v in value if v is not None and str(v).strip())
    if not ids:
        return "not recorded"
    where = f" ({', '.join(sorted(ips))})" if ips else ""
    return f"{len(ids)} Ray node{'s' if len(ids) != 1 else ''}{where}"


def environment(rows: pd.DataFrame) -> dict[str, str]:
    """Label -> the distinct values recorded in the rows (measurement environment)."""
    env = {
        label: _values(rows[col]) if col in rows.columns else "not recorded"
        for label, col in FIELDS
    }
    if env["GPU"] == "not recorded" and set(rows["device"].dropna().astype(str)) <= {"cpu"}:
        env["GPU"] = "none (CPU only)"  # no row ran on a GPU: nothing to record
    stamps = pd.to_datetime(rows["timestamp"], errors="coerce", utc=True, format="mixed").dropna()
    env["measured"] = (
        f"{stamps.min():%Y-%m-%d %H:%M} – {stamps.max():%Y-%m-%d %H:%M} UTC"
        if len(stamps)
        else "not recorded"
    )
    env["rows"] = f"{len(rows)} ({int((rows['status'] == 'ok').sum())} ok)"
    env["nodes"] = nodes(rows)
    env["report made with"] = (
        f"python {platform.python_version()}, pandas {pd.__version__}, numpy {np.__version__}, "
        f"matplotlib {matplotlib.__version__}"
    )
    return env
