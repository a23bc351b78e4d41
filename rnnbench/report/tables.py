"""Tables built with pandas: seeds aggregated, speedups, time-parallel runs, failures.

Every function takes the tidy rows of :func:`rnnbench.report.load.load` and
returns a numeric DataFrame (``<measure>_mean``, ``<measure>_sd``, ``n_seeds``);
:func:`display` turns one into ``mean ± sd`` strings for Markdown and HTML.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# A configuration without its seed: rows sharing these are repeats over seeds.
CONFIG = ["model", "strategy_label", "task_label", "tau", "batch", "hidden", "device",
          "threads", "workers", "split", "dtype", "train_steps"]
# What a timing is compared across: everything but model and strategy.
SETTING = ["task_label", "batch", "hidden", "device", "threads", "dtype"]

MEASURES = ("step_ms_median", "step_ms_iqr", "fwd_ms_median", "bwd_ms_median", "saved_bytes",
            "peak_bytes", "flops", "depth", "loss_tf", "loss_free", "acc_tf", "acc_free",
            "comm_ms_median")

# measure -> (display name, scale applied for display)
UNITS = {
    "step_ms_median": ("step time (ms)", 1.0),
    "step_ms_iqr": ("step IQR (ms)", 1.0),
    "fwd_ms_median": ("forward (ms)", 1.0),
    "bwd_ms_median": ("backward (ms)", 1.0),
    "saved_bytes": ("saved (MiB)", 2.0 ** -20),
    "peak_bytes": ("peak (MiB)", 2.0 ** -20),
    "flops": ("GFLOP", 1e-9),
    "depth": ("depth (steps)", 1.0),
    "loss_tf": ("loss TF (nats/token)", 1.0),
    "loss_free": ("loss free (nats/token)", 1.0),
    "acc_tf": ("acc TF", 1.0),
    "acc_free": ("acc free", 1.0),
    "comm_ms_median": ("comm (ms)", 1.0),
    "speedup": ("speedup (×)", 1.0),
    "efficiency": ("efficiency", 1.0),
}


def ok_rows(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows["status"] == "ok"]


def aggregate(rows: pd.DataFrame, keys: list[str], measures=MEASURES) -> pd.DataFrame:
    """Mean and sample standard deviation over the rows sharing ``keys`` (the seeds)."""
    measures = [m for m in measures if m in rows.columns]
    grouped = rows.groupby(keys, dropna=False, sort=True)
    mean = grouped[measures].mean().add_suffix("_mean")
    sd = grouped[measures].std(ddof=1).add_suffix("_sd")
    out = pd.concat([mean, sd], axis=1)
    out["n_seeds"] = grouped.size()
    order = [c for m in measures for c in (f"{m}_mean", f"{m}_sd")]
    return out[order + ["n_seeds"]].reset_index()


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per model × strategy × τ (and the rest of the configuration): seeds aggregated."""
    ok = ok_rows(rows)
    if ok.empty:
        return pd.DataFrame(columns=CONFIG + ["n_seeds"])
    table = aggregate(ok, CONFIG)
    measured = [c for c in table.columns if c.endswith("_mean") and table[c].notna().any()]
    keep = [c for c in table.columns
            if c in CONFIG or c == "n_seeds" or c.rsplit("_", 1)[0] + "_mean" in measured]
    return table[keep]


def _timing(rows: pd.DataFrame, mask) -> pd.DataFrame:
    """Mean and sd of the median step time per setting and τ for the rows in ``mask``."""
    sel = ok_rows(rows)[mask(ok_rows(rows))]
    sel = sel[(sel["workers"] == 1) & sel["step_ms_median"].notna()]
    keys = SETTING + ["tau", "strategy_label"]
    if sel.empty:
        return pd.DataFrame(columns=keys + ["ms", "sd"])
    agg = aggregate(sel, keys, ["step_ms_median"])
    return agg.rename(columns={"step_ms_median_mean": "ms", "step_ms_median_sd": "sd"})


BASELINES = ("bptt", "bptt_fused")


def speedup(rows: pd.DataFrame) -> pd.DataFrame:
    """Speedup of Jordan + teacher forcing over Elman + bptt and + bptt_fused, per τ and batch.

    speedup = baseline time / teacher-forcing time (both the mean over seeds of the
    median step time); its sd follows from the two relative sds.
    """
    tf = _timing(rows, lambda r: (r["model"] == "jordan") & (r["strategy"] == "teacher_forcing"))
    tf = tf.rename(columns={"strategy_label": "teacher_forcing", "ms": "tf_ms", "sd": "tf_sd"})
    tf = tf.drop(columns=["n_seeds"], errors="ignore")
    for base in BASELINES:
        b = _timing(rows, lambda r, s=base: (r["model"] == "elman") & (r["strategy_label"] == s))
        b = b.drop(columns=["strategy_label", "n_seeds"], errors="ignore")
        b = b.rename(columns={"ms": f"{base}_ms", "sd": f"{base}_sd"})
        tf = tf.merge(b, on=SETTING + ["tau"], how="left")
        tf[[f"{base}_ms", f"{base}_sd"]] = tf[[f"{base}_ms", f"{base}_sd"]].astype(float)
        ratio = tf[f"{base}_ms"] / tf["tf_ms"]
        rel = np.sqrt((tf[f"{base}_sd"].fillna(0) / tf[f"{base}_ms"]) ** 2
                      + (tf["tf_sd"].fillna(0) / tf["tf_ms"]) ** 2)
        tf[f"speedup_vs_{base}"] = ratio
        tf[f"speedup_vs_{base}_sd"] = ratio * rel
    return tf.sort_values(SETTING + ["teacher_forcing", "tau"]).reset_index(drop=True)


def workers(rows: pd.DataFrame) -> pd.DataFrame:
    """Time-parallel runs: speedup and efficiency against the same cell on one worker."""
    ok = ok_rows(rows)
    keys = ["model", "strategy_label", "task_label", "tau", "batch", "hidden", "device",
            "threads", "dtype"]
    if not (ok["workers"] > 1).any():
        return pd.DataFrame(columns=keys + ["workers", "split", "speedup", "efficiency"])
    agg = aggregate(ok, keys + ["workers", "split"], ["step_ms_median", "comm_ms_median"])
    one = agg[agg["workers"] == 1][keys + ["step_ms_median_mean", "step_ms_median_sd"]]
    one = one.rename(columns={"step_ms_median_mean": "one_ms", "step_ms_median_sd": "one_sd"})
    # Only configurations that were run on several workers.
    multi = agg[agg["workers"] > 1][keys].drop_duplicates()
    table = agg.merge(multi, on=keys).merge(one, on=keys, how="left")
    table["speedup"] = table["one_ms"] / table["step_ms_median_mean"]
    table["efficiency"] = table["speedup"] / table["workers"]
    return table.sort_values(keys + ["split", "workers"]).reset_index(drop=True)


def failed(rows: pd.DataFrame) -> pd.DataFrame:
    """Every row that did not finish ok, with its status and the first line of its error."""
    cols = ["cell_id", "model", "strategy_label", "task_label", "tau", "batch", "hidden",
            "workers", "seed", "status", "error"]
    bad = rows[rows["status"] != "ok"][cols].copy()
    bad["error"] = (bad["error"].fillna("").astype(str).str.strip().str.split("\n").str[-1]
                    .str.slice(0, 200))
    return bad.sort_values(["model", "strategy_label", "tau"]).reset_index(drop=True)


# --------------------------------------------------------------------------- display


def _num(x: float) -> str:
    if x is None or not np.isfinite(x):
        return ""
    if x == 0:
        return "0"
    if float(x).is_integer():
        return f"{x:.0f}"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def _pair(col: str, columns) -> tuple[str, str | None]:
    """The measure name of a column and the column holding its sd, if any."""
    for suffix in ("_mean", "_ms", ""):
        if suffix and not col.endswith(suffix):
            continue
        base = col[: len(col) - len(suffix)] if suffix else col
        if f"{base}_sd" in columns and f"{base}_sd" != col:
            return (base if suffix != "_ms" else col), f"{base}_sd"
    return col, None


def _name(measure: str) -> str:
    if measure in UNITS:
        return UNITS[measure][0]
    if measure.endswith("_ms"):
        return measure[:-3].replace("_", " ") + " (ms)"
    if measure.startswith("speedup"):
        return measure.replace("_", " ") + " (×)"
    return measure.replace("_label", "")


def display(table: pd.DataFrame) -> pd.DataFrame:
    """Numeric columns in display units; mean/sd pairs as one 'mean ± sd' column."""
    pairs = {col: _pair(col, table.columns) for col in table.columns}
    partners = {sd for _, sd in pairs.values() if sd}
    out = pd.DataFrame(index=table.index)
    for col, (measure, sd_col) in pairs.items():
        if col in partners:
            continue
        scale = UNITS.get(measure, (None, 1.0))[1]
        if sd_col:
            mean, sd = table[col] * scale, table[sd_col] * scale
            out[_name(measure)] = [
                _num(a) + (f" ± {_num(b)}" if _num(a) and np.isfinite(b) else "")
                for a, b in zip(mean, sd)]
        elif pd.api.types.is_float_dtype(table[col]):
            out[_name(measure)] = (table[col] * scale).map(_num)
        else:
            out[_name(measure)] = table[col]
    return out
