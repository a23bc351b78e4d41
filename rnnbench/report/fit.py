"""The report's tables of laws in τ: a power-law fit per series and measure, and the τ
from which teacher forcing wins (the fits themselves: :mod:`rnnbench.stats`)."""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import pandas as pd

from rnnbench.facts import SEQUENTIAL_BPTT
from rnnbench.report.tables import SETTING, ok_rows, single
from rnnbench.stats import PowerFit, power_fit

FITTED = ("step_ms_median", "saved_bytes", "peak_bytes")


FIT_KEYS = ["model", "strategy_label", "series"] + SETTING


def fits(rows: pd.DataFrame, measures=FITTED) -> pd.DataFrame:
    """One power-law fit per model × strategy × setting × measure (single-worker rows)."""
    ok = ok_rows(rows)
    ok = ok[single(ok)]
    out = []
    for key, group in ok.groupby(FIT_KEYS, dropna=False, sort=True):
        for measure in measures:
            f = power_fit(group["tau"], group[measure])
            if f is not None:
                out.append({**dict(zip(FIT_KEYS, key)), "measure": measure, **asdict(f)})
    columns = FIT_KEYS + ["measure"] + list(PowerFit.__dataclass_fields__)
    return pd.DataFrame(out, columns=columns)


def find(fit_table: pd.DataFrame, measure: str, **where) -> pd.DataFrame:
    """The fits of ``measure`` whose columns equal ``where``."""
    sel = fit_table["measure"] == measure
    for col, value in where.items():
        sel &= fit_table[col] == value
    return fit_table[sel]


# --------------------------------------------------------------------------- cross-over


def _log_cross(t0: float, s0: float, t1: float, s1: float) -> float:
    """τ where log speedup crosses 0 on the segment between two measured points."""
    a, b = math.log(s0), math.log(s1)
    return math.exp(math.log(t0) + (math.log(t1) - math.log(t0)) * (-a) / (b - a))


def crossover(speedups: pd.DataFrame, fit_table: pd.DataFrame) -> pd.DataFrame:
    """Per setting and baseline: the τ from which teacher forcing is faster.

    ``tau_cross`` interpolates (log-log) between the last τ where the baseline
    wins and the first τ from which teacher forcing wins at every larger τ;
    ``tau_cross_fit`` intersects the two fitted power laws (only when the
    baseline grows faster, so that teacher forcing wins beyond it).
    """
    out = []
    keys = SETTING + ["teacher_forcing"]
    for key, group in speedups.groupby(keys, dropna=False, sort=True):
        setting = dict(zip(keys, key))
        for base in SEQUENTIAL_BPTT:
            g = group[["tau", f"speedup_vs_{base}"]].dropna().sort_values("tau")
            if g["tau"].nunique() < 2:
                continue  # a cross-over needs a range of τ
            taus, s = g["tau"].to_numpy(), g[f"speedup_vs_{base}"].to_numpy()
            row = {
                **setting,
                "baseline": base,
                "tau_min": taus[0],
                "tau_max": taus[-1],
                "tau_cross": math.nan,
                "tau_cross_fit": math.nan,
            }
            losing = np.flatnonzero(s <= 1.0)
            if s[-1] <= 1.0:
                row["finding"] = f"{base} is as fast or faster at the largest τ measured"
            elif losing.size == 0:
                row["finding"] = "teacher forcing is faster at every τ measured"
            else:
                i = losing[-1]
                row["tau_cross"] = _log_cross(taus[i], s[i], taus[i + 1], s[i + 1])
                row["finding"] = (
                    f"teacher forcing is faster from τ = {taus[i + 1]:g} on "
                    f"({base} faster at τ = {taus[i]:g})"
                )
            common = {c: setting[c] for c in SETTING}
            f_tf = find(
                fit_table,
                "step_ms_median",
                model="jordan",
                strategy_label=setting["teacher_forcing"],
                **common,
            )
            f_b = find(fit_table, "step_ms_median", model="elman", strategy_label=base, **common)
            if len(f_tf) and len(f_b):
                k_tf, k_b = f_tf["exponent"].iloc[0], f_b["exponent"].iloc[0]
                if k_b > k_tf:
                    row["tau_cross_fit"] = (
                        f_tf["prefactor"].iloc[0] / f_b["prefactor"].iloc[0]
                    ) ** (1.0 / (k_b - k_tf))
            out.append(row)
    columns = keys + ["baseline", "tau_min", "tau_max", "tau_cross", "tau_cross_fit", "finding"]
    return pd.DataFrame(out, columns=columns)


MEASURE_NAMES = {
    "step_ms_median": "step time",
    "saved_bytes": "saved bytes",
    "peak_bytes": "peak bytes",
}


def display(fit_table: pd.DataFrame) -> pd.DataFrame:
    """The fits as a reader's table: exponent with its 95% interval, range, cells."""
    f = fit_table
    return pd.DataFrame(
        {
            "model": f["model"],
            "strategy": f["strategy_label"],
            "task": f["task_label"],
            "B": f["batch"].map("{:g}".format),
            "H": f["hidden"].map("{:g}".format),
            "device": f["device"] + "×" + f["threads"].map("{:g}".format),
            "measure": f["measure"].map(lambda m: MEASURE_NAMES.get(m, m)),
            "exponent k": f["exponent"].map("{:.3f}".format),
            "95% CI": [
                f"[{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else "n/a (2 points)"
                for lo, hi in zip(f["ci_low"], f["ci_high"])
            ],
            "τ range": [f"{a:g}–{b:g}" for a, b in zip(f["tau_min"], f["tau_max"])],
            "cells": f["n_points"],
            "R²": f["r2"].map("{:.3f}".format),
        }
    )
