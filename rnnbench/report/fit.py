"""Scaling exponents (log-log slopes in τ, with a confidence interval) and cross-over τ.

A power law ``y = a·τ^k`` is a straight line in log-log axes; ``k`` is fitted by
least squares on every ok row (one point per seed) and its interval uses the
Student t quantile with n-2 degrees of freedom, computed here from the
regularised incomplete beta function (no SciPy needed).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from rnnbench.facts import SEQUENTIAL_BPTT
from rnnbench.report.tables import SETTING, ok_rows, single

LEVEL = 0.95
FITTED = ("step_ms_median", "saved_bytes", "peak_bytes")


# --------------------------------------------------------------------------- Student t


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for aa in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


@functools.lru_cache(maxsize=256)
def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p, by bisection on :func:`t_cdf`."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile: need 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


# --------------------------------------------------------------------------- power laws


@dataclass(frozen=True)
class PowerFit:
    """y = prefactor · τ^exponent; [ci_low, ci_high] is the interval at ``level``."""

    exponent: float
    ci_low: float
    ci_high: float
    prefactor: float
    n_points: int
    n_tau: int
    tau_min: float
    tau_max: float
    r2: float
    level: float = LEVEL

    def predict(self, tau) -> np.ndarray:
        return self.prefactor * np.asarray(tau, dtype=float) ** self.exponent


def power_fit(tau, y, level: float = LEVEL) -> PowerFit | None:
    """Least-squares slope of log y on log τ; None with fewer than 2 distinct τ."""
    tau, y = np.asarray(tau, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(tau) & np.isfinite(y) & (tau > 0) & (y > 0)
    x, z = np.log(tau[keep]), np.log(y[keep])
    n, n_tau = len(x), len(np.unique(x))
    if n_tau < 2:
        return None
    xm, zm = x.mean(), z.mean()
    sxx = float(((x - xm) ** 2).sum())
    slope = float(((x - xm) * (z - zm)).sum() / sxx)
    intercept = zm - slope * xm
    resid = z - (intercept + slope * x)
    sst = float(((z - zm) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / sst if sst > 0 else 1.0
    if n > 2:
        se = math.sqrt(float((resid**2).sum()) / (n - 2) / sxx)
        half = t_quantile(0.5 + level / 2.0, n - 2) * se
    else:
        half = math.nan  # a line through two points has no interval
    return PowerFit(
        slope,
        slope - half,
        slope + half,
        math.exp(intercept),
        n,
        n_tau,
        float(tau[keep].min()),
        float(tau[keep].max()),
        r2,
        level,
    )


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


# --------------------------------------------------------------------------- fixed cost + τ


@dataclass(frozen=True)
class OverheadFit:
    """T = a + b·τ + c·τ², weighted by 1/T² (relative noise), over the cells' τ.

    ``quad_share`` is c·τ_max² / T̂(τ_max): the part of the time at the largest τ that
    only a τ² term explains, with its ``level`` interval [quad_low, quad_high] from
    Student's t with n − 3 degrees of freedom. ``a`` is the fixed cost per step (ms or
    bytes), ``a_low``/``a_high`` its interval from the straight line T = a + b·τ alone.
    ``marginal_k`` = d log T̂ / d log τ at τ_max (1 when per-step work dominates).
    """

    a: float
    a_low: float
    a_high: float
    b: float
    quad_share: float
    quad_low: float
    quad_high: float
    marginal_k: float
    n_points: int
    n_tau: int
    tau_min: float
    tau_max: float
    y_min: float
    level: float = LEVEL


def _wls(X: np.ndarray, y: np.ndarray, w: np.ndarray):
    """Weighted least squares: coefficients, their covariance, residual df."""
    sw = np.sqrt(w)
    Xw, yw = X * sw[:, None], y * sw
    coef, *_ = np.linalg.lstsq(Xw, yw, rcond=None)
    df = len(y) - X.shape[1]
    resid = yw - Xw @ coef
    sigma2 = float(resid @ resid) / df if df > 0 else math.nan
    cov = sigma2 * np.linalg.pinv(Xw.T @ Xw)
    return coef, cov, df


def overhead_fit(tau, y, level: float = LEVEL) -> OverheadFit | None:
    """:class:`OverheadFit` of ``y`` over ``tau``; None with fewer than 3 distinct τ or
    no residual degree of freedom (4 cells at least): no interval from too few points."""
    tau, y = np.asarray(tau, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(tau) & np.isfinite(y) & (tau > 0) & (y > 0)
    tau, y = tau[keep], y[keep]
    if len(np.unique(tau)) < 3 or len(y) < 4:
        return None
    top = tau.max()
    s = tau / top  # conditioned: τ in units of τ_max
    w = 1.0 / y**2
    quad, cov, df = _wls(np.column_stack([np.ones_like(s), s, s * s]), y, w)
    a, b, c = (float(v) for v in quad)
    t_max = a + b + c
    q = c / t_max
    half_q = t_quantile(0.5 + level / 2, df) * math.sqrt(max(cov[2, 2], 0.0)) / abs(t_max)
    line, cov_l, df_l = _wls(np.column_stack([np.ones_like(s), s]), y, w)
    half_a = t_quantile(0.5 + level / 2, df_l) * math.sqrt(max(cov_l[0, 0], 0.0))
    return OverheadFit(
        float(line[0]),
        float(line[0]) - half_a,
        float(line[0]) + half_a,
        float(line[1]) / top,
        q,
        q - half_q,
        q + half_q,
        (b + 2 * c) / t_max,
        int(len(y)),
        int(len(np.unique(tau))),
        float(tau.min()),
        float(top),
        float(y.min()),
        level,
    )
