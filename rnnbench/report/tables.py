"""Tables built with pandas: seeds aggregated, speedups, time-parallel runs, failures.

Every function takes the tidy rows of :func:`rnnbench.report.tidy.load` and
returns a numeric DataFrame (``<measure>_mean``, ``<measure>_sd``, ``n_seeds``);
:func:`display` turns one into ``mean ± sd`` strings for Markdown and HTML.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rnnbench.facts import COMPUTATION, NOISY_IQR, OK, SEQUENTIAL_BPTT
from rnnbench.results.labels import baseline_text

# A configuration without its seed: rows sharing these are repeats over seeds.
CONFIG = [*COMPUTATION, "train_steps", "baseline"]
# What a timing is compared across: everything but model and strategy.
SETTING = ["task_label", "batch", "hidden", "device", "threads", "dtype"]

MEASURES = (
    "step_ms_median",
    "step_ms_iqr",
    "bound_ms",
    "bound_ratio",
    "fwd_ms_median",
    "bwd_ms_median",
    "saved_bytes",
    "peak_bytes",
    "peak_rss_bytes",
    "minor_faults_per_step",
    "flops",
    "gflop_per_s",
    "ms_per_gflop",
    "depth",
    "loss_tf",
    "loss_free",
    "acc_tf",
    "acc_free",
    "comm_ms_median",
    "speedup_median",
)

# measure -> (display name, scale applied for display)
UNITS = {
    "step_ms_median": ("step time (ms)", 1.0),
    "step_ms_iqr": ("step IQR (ms)", 1.0),
    "bound_ms": ("compute-bound (ms)", 1.0),
    "bound_ratio": ("step / bound (×)", 1.0),
    "fwd_ms_median": ("forward (ms)", 1.0),
    "bwd_ms_median": ("backward (ms)", 1.0),
    "saved_bytes": ("saved (MiB)", 2.0**-20),
    "peak_bytes": ("profiler peak (MiB)", 2.0**-20),
    "peak_rss_bytes": ("peak RSS (MiB)", 2.0**-20),
    "minor_faults_per_step": ("minor faults/step", 1.0),
    "flops": ("GFLOP", 1e-9),
    "gflop_per_s": ("achieved GFLOP/s", 1.0),
    "ms_per_gflop": ("ms per GFLOP", 1.0),
    "speedup_median": ("paired speedup (×)", 1.0),
    "baseline_step_ms_median": ("baseline step (ms)", 1.0),
    "baseline_minor_faults_per_step": ("baseline minor faults/step", 1.0),
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
    return rows[rows["status"] == OK]


def single(rows: pd.DataFrame) -> pd.Series:
    """Mask of the rows timed in one process (one worker, no worker-group harness)."""
    return (rows["workers"] == 1) & (rows["split"] == "none")


def aggregate(rows: pd.DataFrame, keys: list[str], measures=MEASURES) -> pd.DataFrame:
    """Mean and sample standard deviation over the rows sharing ``keys`` (the seeds)."""
    measures = [m for m in measures if m in rows.columns]
    grouped = rows.groupby(keys, dropna=False, sort=True)
    mean = grouped[measures].mean().add_suffix("_mean")
    sd = grouped[measures].std(ddof=1).add_suffix("_sd")
    out = pd.concat([mean, sd], axis=1)
    out["n_seeds"] = grouped.size()
    # One seed has no spread: NaN (shown as nothing), never a zero uncertainty.
    out.loc[out["n_seeds"] < 2, sd.columns] = np.nan
    order = [c for m in measures for c in (f"{m}_mean", f"{m}_sd")]
    return out[order + ["n_seeds"]].reset_index()


def noisy(rows: pd.DataFrame) -> pd.Series:
    """Mask of the rows whose step-time IQR exceeds NOISY_IQR of its median."""
    return (rows["step_ms_iqr"] / rows["step_ms_median"]) > NOISY_IQR


def with_bound(rows: pd.DataFrame) -> pd.DataFrame:
    """``bound_ms``: the step's FLOPs at the node's measured GEMM rate,
    flops / (gemm_gflops * 1e9), in ms - the time of a compute-bound step; and
    ``bound_ratio``: the step time over it (NaN where either is unknown)."""
    rate = rows["gemm_gflops"] if "gemm_gflops" in rows.columns else np.nan
    bound = rows["flops"] / (rate * 1e9) * 1e3
    return rows.assign(bound_ms=bound, bound_ratio=rows["step_ms_median"] / bound)


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per model × strategy × τ (and the rest of the configuration): seeds aggregated,
    with the compute-bound time beside the step time (:func:`with_bound`);
    ``noisy``: how many of its rows have a step-time IQR above NOISY_IQR of the median."""
    ok = with_bound(ok_rows(rows))
    if ok.empty:
        return pd.DataFrame(columns=CONFIG + ["n_seeds", "noisy"])
    table = aggregate(ok, CONFIG)
    measured = [c for c in table.columns if c.endswith("_mean") and table[c].notna().any()]
    keep = [
        c
        for c in table.columns
        if c in CONFIG or c == "n_seeds" or c.rsplit("_", 1)[0] + "_mean" in measured
    ]
    table = table[keep]
    flags = ok.assign(noisy=noisy(ok)).groupby(CONFIG, dropna=False, sort=True)["noisy"].sum()
    return table.merge(flags.astype(int).reset_index(), on=CONFIG, how="left")


# Why a cell of a table can be empty, by the measure it shows.
BLANK_REASONS = {
    "loss": "loss and accuracy need train_steps > 0",
    "acc": "loss and accuracy need train_steps > 0",
    "comm": "only time-parallel rows (worker-group harness) have a communication time",
    "speedup": "a speedup needs both sides measured at the same setting",
    "one": "no 1-worker row of the same harness to compare with",
    "bptt": "no Elman + BPTT (or fused) row at that setting",
    "tau_cross": "no cross-over inside the τ range measured",
}


def blank_note(shown: pd.DataFrame) -> str:
    """A sentence naming the display columns that are wholly empty, and why cells can be."""
    if shown.empty:
        return ""
    blank = shown.map(
        lambda v: v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() == ""
    )
    empty = [str(c) for c in shown.columns if blank[c].all()]
    some = [str(c) for c in shown.columns if blank[c].any() and not blank[c].all()]
    if not empty and not some:
        return ""
    why = sorted(
        {r for c in empty + some for k, r in BLANK_REASONS.items() if c.lower().startswith(k)}
    )
    parts = []
    if empty:
        parts.append("Empty columns (nothing measured in these rows): " + ", ".join(empty) + ".")
    parts.append(
        "An empty cell means not measured"
        + (f" ({'; '.join(why)})" if why else "")
        + "; no ± means a single seed."
    )
    return " ".join(parts)


# Fewer raw samples than this (all seeds pooled) give no quartiles.
MIN_SAMPLES = 3


def quartiles(rows: pd.DataFrame) -> tuple[float, float]:
    """Lower and upper quartile of the step time in ``rows``: over every raw sample
    (``step_ms_samples``, all seeds pooled); a row without samples contributes
    median ∓ IQR/2. (NaN, NaN) when there is neither: no interval to decide on."""
    pooled, lows, highs = [], [], []
    for samples, med, iqr in zip(
        rows["step_ms_samples"], rows["step_ms_median"], rows["step_ms_iqr"]
    ):
        vals = np.array([v for v in samples if isinstance(v, (int, float))], dtype=float)
        vals = vals[np.isfinite(vals)]
        if vals.size:
            pooled.append(vals)
        elif np.isfinite(med) and np.isfinite(iqr):
            lows.append(med - iqr / 2)
            highs.append(med + iqr / 2)
    if pooled:
        allv = np.concatenate(pooled)
        if allv.size >= MIN_SAMPLES:
            q1, q3 = np.quantile(allv, [0.25, 0.75])
            lows.append(q1)
            highs.append(q3)
    if not lows:
        return np.nan, np.nan
    return float(min(lows)), float(max(highs))


def _quartiles_by(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    out = [
        (*(k if isinstance(k, tuple) else (k,)), *quartiles(g))
        for k, g in rows.groupby(keys, dropna=False, sort=True)
    ]
    return pd.DataFrame(out, columns=keys + ["q1", "q3"])


def speedup_interval(base_q1, base_q3, new_q1, new_q3) -> tuple:
    """The speedup base/new from quartiles: (worst case, best case)."""
    return base_q1 / new_q3, base_q3 / new_q1


def _timing(rows: pd.DataFrame, mask) -> pd.DataFrame:
    """Mean and sd of the median step time per setting and τ for the rows in ``mask``,
    and the quartiles of the raw samples (q1, q3)."""
    sel = ok_rows(rows)[mask(ok_rows(rows))]
    sel = sel[single(sel) & sel["step_ms_median"].notna()]
    keys = SETTING + ["tau", "strategy_label"]
    if sel.empty:
        return pd.DataFrame(columns=keys + ["ms", "sd", "n_seeds", "q1", "q3"])
    agg = aggregate(sel, keys, ["step_ms_median"]).merge(_quartiles_by(sel, keys), on=keys)
    return agg.rename(columns={"step_ms_median_mean": "ms", "step_ms_median_sd": "sd"})


def _side(side: str, ms: str, sd: str) -> dict[str, str]:
    """Column names for one side of a ratio: its mean time ``ms``, its sd ``sd`` and
    its quartiles as ``<side>_ms``, ``<side>_sd``, ``<side>_q1``, ``<side>_q3``."""
    return {ms: f"{side}_ms", sd: f"{side}_sd", "q1": f"{side}_q1", "q3": f"{side}_q3"}


def speedup(rows: pd.DataFrame) -> pd.DataFrame:
    """Speedup of Jordan + teacher forcing over Elman + bptt and + bptt_fused, per τ and batch.

    speedup = baseline time / teacher-forcing time (both the mean over seeds of the
    median step time); its sd follows from the two relative sds, and only when both
    sides have two seeds or more (else NaN: one seed shows no spread). ``_lo`` and
    ``_hi`` bound it from the quartiles of the raw samples (:func:`speedup_interval`).
    """
    tf = _timing(rows, lambda r: (r["model"] == "jordan") & (r["strategy"] == "teacher_forcing"))
    tf = tf.rename(columns={"strategy_label": "teacher_forcing", **_side("tf", "ms", "sd")})
    tf = tf.drop(columns=["n_seeds"], errors="ignore")
    for base in SEQUENTIAL_BPTT:
        b = _timing(rows, lambda r, s=base: (r["model"] == "elman") & (r["strategy_label"] == s))
        b = b.drop(columns=["strategy_label", "n_seeds"], errors="ignore")
        cols = {c: f"{base}_{c}" for c in ("ms", "sd", "q1", "q3")}
        b = b.rename(columns=cols)
        tf = tf.merge(b, on=SETTING + ["tau"], how="left")
        tf[list(cols.values())] = tf[list(cols.values())].astype(float)
        ratio = tf[f"{base}_ms"] / tf["tf_ms"]
        rel = np.sqrt((tf[f"{base}_sd"] / tf[f"{base}_ms"]) ** 2 + (tf["tf_sd"] / tf["tf_ms"]) ** 2)
        tf[f"speedup_vs_{base}"] = ratio
        tf[f"speedup_vs_{base}_sd"] = ratio * rel
        tf[f"speedup_vs_{base}_lo"], tf[f"speedup_vs_{base}_hi"] = speedup_interval(
            tf[f"{base}_q1"], tf[f"{base}_q3"], tf["tf_q1"], tf["tf_q3"]
        )
    return tf.sort_values(SETTING + ["teacher_forcing", "tau"]).reset_index(drop=True)


WORKER_KEYS = [k for k in COMPUTATION if k not in ("workers", "split")]
WORKER_COLUMNS = WORKER_KEYS + [
    "workers",
    "split",
    "step_ms_median_mean",
    "step_ms_median_sd",
    "comm_ms_median_mean",
    "comm_ms_median_sd",
    "n_seeds",
    "q1",
    "q3",
    "one_ms",
    "one_sd",
    "one_q1",
    "one_q3",
    "speedup",
    "speedup_lo",
    "speedup_hi",
    "efficiency",
]


def workers(rows: pd.DataFrame) -> pd.DataFrame:
    """Time-parallel runs: speedup and efficiency against the same cell on one worker.

    Like is paired with like: only rows timed by the worker-group harness (``split``
    'time' or 'batch', never 'none') enter, and an N-worker row is compared with the
    1-worker row of the same harness and split; without one its speedup is NaN (the
    single-process rows are not a fallback). ``speedup_lo``/``_hi``: the speedup from
    the quartiles of the raw samples (:func:`speedup_interval`).
    """
    ok = ok_rows(rows)
    group = ok[(ok["split"] != "none") & ok["step_ms_median"].notna()]
    if not (group["workers"] > 1).any():
        return pd.DataFrame(columns=WORKER_COLUMNS)
    keys = WORKER_KEYS + ["split"]
    agg = aggregate(group, keys + ["workers"], ["step_ms_median", "comm_ms_median"])
    agg = agg.merge(_quartiles_by(group, keys + ["workers"]), on=keys + ["workers"])
    one = agg[agg["workers"] == 1][keys + ["step_ms_median_mean", "step_ms_median_sd", "q1", "q3"]]
    one = one.rename(columns=_side("one", "step_ms_median_mean", "step_ms_median_sd"))
    # Only configurations that were run on several workers.
    multi = agg[agg["workers"] > 1][keys].drop_duplicates()
    table = agg.merge(multi, on=keys).merge(one, on=keys, how="left")
    for col in ("one_ms", "one_sd", "one_q1", "one_q3"):
        table[col] = table[col].astype(float)
    table["speedup"] = table["one_ms"] / table["step_ms_median_mean"]
    table["speedup_lo"], table["speedup_hi"] = speedup_interval(
        table["one_q1"], table["one_q3"], table["q1"], table["q3"]
    )
    table["efficiency"] = table["speedup"] / table["workers"]
    table = table.reindex(columns=[c for c in WORKER_COLUMNS if c in table.columns])
    return table.sort_values(keys + ["workers"]).reset_index(drop=True)


PAIRED = [*WORKER_KEYS[:-1], "workers", "baseline", "baseline_config"]


def paired(rows: pd.DataFrame) -> pd.DataFrame:
    """Cells timed beside their baseline, taking turns (rnnbench.harness.paired): speedup =
    baseline / cell per block pair, its median and quartiles pooled over the seeds'
    pairs; step times and achieved GFLOP/s of both sides (the baseline's FLOPs are
    its own row's where the job has one) and minor page faults per step."""
    ok = ok_rows(rows)
    sel = ok[ok["baseline"].astype(str) != ""] if "baseline" in ok else ok.iloc[:0]
    cols = PAIRED + [
        "step_ms_median",
        "baseline_step_ms_median",
        "speedup_median",
        "speedup_lo",
        "speedup_hi",
        "n_pairs",
        "gflop_per_s",
        "minor_faults_per_step",
        "baseline_minor_faults_per_step",
        "baseline_error",
    ]
    if sel.empty:
        return pd.DataFrame(columns=cols)
    out = []
    for key, g in sel.groupby(PAIRED, dropna=False, sort=True):
        ratios = np.array(
            [
                v
                for s in g["speedup_samples"]
                for v in s
                if isinstance(v, (int, float)) and np.isfinite(v)
            ],
            dtype=float,
        )
        q1, med, q3 = (
            np.quantile(ratios, [0.25, 0.5, 0.75]) if ratios.size else (np.nan, np.nan, np.nan)
        )
        errors = "; ".join(sorted({e for e in g["baseline_error"] if isinstance(e, str) and e}))
        out.append(
            (
                *key,
                g["step_ms_median"].mean(),
                g["baseline_step_ms_median"].mean(),
                med,
                q1,
                q3,
                int(ratios.size),
                g["gflop_per_s"].mean(),
                g["minor_faults_per_step"].mean(),
                g["baseline_minor_faults_per_step"].mean(),
                errors or None,
            )
        )
    return pd.DataFrame(out, columns=cols)


def failed(rows: pd.DataFrame) -> pd.DataFrame:
    """Every row that did not finish ok, with its status and the first line of its error."""
    cols = [
        "cell_id",
        "model",
        "strategy_label",
        "task_label",
        "tau",
        "batch",
        "hidden",
        "workers",
        "seed",
        "status",
        "error",
    ]
    bad = rows[rows["status"] != OK][cols].copy()
    bad["error"] = (
        bad["error"].fillna("").astype(str).str.strip().str.split("\n").str[-1].str.slice(0, 200)
    )
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
    if measure.endswith(("q1", "q3")):  # quartiles of the raw step-time samples
        return (measure.replace("_", " ") + " (ms)").replace("q1", "Q1").replace("q3", "Q3")
    if measure.startswith("speedup"):
        return measure.replace("_", " ") + " (×)"
    return measure.replace("_label", "")


# Columns holding a baseline's field overrides (JSON in the rows and the CSV tables).
BASELINE_COLUMNS = ("baseline", "baseline_config")


def display(table: pd.DataFrame) -> pd.DataFrame:
    """Numeric columns in display units; mean/sd pairs as one 'mean ± sd' column;
    a baseline as text (``threads=1``, ``-`` for a plain cell)."""
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
                for a, b in zip(mean, sd)
            ]
        elif col in BASELINE_COLUMNS:  # field overrides as text: threads=1, '-' for none
            out[_name(measure)] = table[col].map(baseline_text)
        elif pd.api.types.is_float_dtype(table[col]):
            out[_name(measure)] = (table[col] * scale).map(_num)
        else:
            out[_name(measure)] = table[col]
    return out
