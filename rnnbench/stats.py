"""The statistics every verdict uses, in one place: 95% intervals over independent
repetitions, and the two laws fitted in τ (torch-free; scipy's Student t).

- :func:`mean_ci` — the mean of values, one per repetition (a loss, an accuracy, a gap).
- :func:`diff_ci` — the difference of two means over independent repetitions (Welch).
- :func:`ratio_ci` — a ratio from repetitions of it (replicates' speedups): the
  t-interval of the mean log ratio, as a ratio (the geometric mean with its interval).
- :func:`log_ratio_ci` — the ratio of two sides' geometric means (Welch on logs).
- :func:`power_fit` — y = a·τ^k by least squares in log-log axes, k with its interval.
- :func:`overhead_fit` — T = a + b·τ + c·τ², the τ² term's share of T(τ_max) and the fixed
  cost a, with their intervals.

None of them is the spread inside one repetition: each needs at least two repetitions and
returns ``None`` below that.  The repetition is a replicate (a fresh process) or a seed;
the paired blocks inside one process give each replicate its point estimate, not an
interval.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as st

LEVEL = 0.95


@functools.lru_cache(maxsize=1024)
def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p for Student's t with ``df`` degrees of freedom."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile: need 0 < p < 1 and df > 0, got p={p}, df={df}")
    return float(st.t.ppf(p, df))


# --------------------------------------------------------------------------- intervals


@dataclass(frozen=True)
class Interval:
    """``estimate`` with its ``level`` interval [low, high] from ``n`` repetitions."""

    estimate: float
    low: float
    high: float
    n: int
    level: float = LEVEL

    def above(self, threshold: float) -> bool:
        return self.low > threshold

    def below(self, threshold: float) -> bool:
        return self.high < threshold

    def within(self, low: float, high: float) -> bool:
        return low <= self.low and self.high <= high

    def text(self, fmt: str = "{:.3g}", unit: str = "") -> str:
        return (
            f"{fmt.format(self.estimate)}{unit} [{fmt.format(self.low)}, "
            f"{fmt.format(self.high)}]{unit} (95% CI, n={self.n})"
        )


def _finite(values: Iterable[float | None]) -> np.ndarray:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    finite: np.ndarray = v[np.isfinite(v)]
    return finite


def mean_ci(values: Iterable[float | None], level: float = LEVEL) -> Interval | None:
    """t-interval of the mean of independent repetitions; None under two."""
    v = _finite(values)
    if v.size < 2:
        return None
    mean = float(v.mean())
    half = t_quantile(0.5 + level / 2, v.size - 1) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return Interval(mean, mean - half, mean + half, int(v.size), level)


def diff_ci(
    a: Iterable[float | None], b: Iterable[float | None], level: float = LEVEL
) -> Interval | None:
    """Welch t-interval of mean(a) − mean(b) over independent seeds; None when either
    side has fewer than two."""
    a, b = _finite(a), _finite(b)
    if a.size < 2 or b.size < 2:
        return None
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    diff = float(a.mean() - b.mean())
    se = math.sqrt(va + vb)
    if se == 0.0:
        return Interval(diff, diff, diff, int(min(a.size, b.size)), level)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = t_quantile(0.5 + level / 2, df) * se
    return Interval(diff, diff - half, diff + half, int(min(a.size, b.size)), level)


def ratio_ci(ratios: Iterable[float], level: float = LEVEL) -> Interval | None:
    """Geometric-mean speedup of paired block ratios with the t-interval of its log;
    None with fewer than two ratios."""
    r = _finite(ratios)
    r = r[r > 0]
    m = mean_ci(np.log(r), level) if r.size else None
    if m is None:
        return None
    return Interval(math.exp(m.estimate), math.exp(m.low), math.exp(m.high), m.n, level)


def log_ratio_ci(
    new: Iterable[float], base: Iterable[float], level: float = LEVEL
) -> Interval | None:
    """geomean(new) / geomean(base) with the Welch t-interval of the difference of the
    mean logs, as a ratio; None when either side has fewer than two positive values."""
    a = [math.log(v) for v in new if v is not None and v > 0 and math.isfinite(v)]
    b = [math.log(v) for v in base if v is not None and v > 0 and math.isfinite(v)]
    ci = diff_ci(a, b, level)
    if ci is None:
        return None
    return Interval(math.exp(ci.estimate), math.exp(ci.low), math.exp(ci.high), ci.n, level)


def mann_whitney_p(a: Iterable[float], b: Iterable[float]) -> float:
    """Two-sided Mann–Whitney U test p-value of the two samples (NaN under two a side)."""
    x = [v for v in a if v is not None and math.isfinite(v)]
    y = [v for v in b if v is not None and math.isfinite(v)]
    if len(x) < 2 or len(y) < 2:
        return math.nan
    return float(st.mannwhitneyu(x, y, alternative="two-sided").pvalue)


# --------------------------------------------------------------------------- laws in tau


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

    def predict(self, tau: float | Iterable[float]) -> np.ndarray:
        return self.prefactor * np.asarray(tau, dtype=float) ** self.exponent


def power_fit(tau: Iterable[float], y: Iterable[float], level: float = LEVEL) -> PowerFit | None:
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
    # 0: fitted over cells, each its own process (a, b in the cells' unit); n: fitted
    # inside each of n processes and averaged (a, b, y_min in units of T(τ_max), the
    # intervals over the processes: :func:`process_law`)
    runs: int = 0
    quad_sd: float = math.nan  # the τ² share's spread between processes (process_law)


def _wls(X: np.ndarray, Y: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Weighted least squares of each row of ``Y`` (d, n) on ``X`` (n, p) with weights
    ``W`` (d, n), all d at once: coefficients (d, p), their covariances (d, p, p), the
    residual degrees of freedom."""
    sw = np.sqrt(W)
    Xw, yw = X[None] * sw[..., None], Y * sw
    inv = np.linalg.pinv(np.einsum("dnp,dnq->dpq", Xw, Xw))
    coef = np.einsum("dpq,dnq,dn->dp", inv, Xw, yw)
    df = Y.shape[1] - X.shape[1]
    resid = yw - np.einsum("dnp,dp->dn", Xw, coef)
    sigma2 = (resid**2).sum(axis=1) / df if df > 0 else np.full(len(Y), math.nan)
    return coef, sigma2[:, None, None] * inv, df


def overhead_fit(
    tau: Iterable[float], y: Iterable[float], level: float = LEVEL
) -> OverheadFit | None:
    """:class:`OverheadFit` of ``y`` over ``tau``; None with fewer than 3 distinct τ or
    no residual degree of freedom (4 cells at least): no interval from too few points."""
    t_all, y_all = np.asarray(tau, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(t_all) & np.isfinite(y_all) & (t_all > 0) & (y_all > 0)
    t, v = t_all[keep], y_all[keep]
    if len(np.unique(t)) < 3 or len(v) < 4:
        return None
    return overhead_fits(t, v[None], level)[0]


def overhead_fits(tau: np.ndarray, Y: np.ndarray, level: float = LEVEL) -> list[OverheadFit]:
    """:func:`overhead_fit` of each row of ``Y`` (d, n: finite, positive) over the same
    ``tau`` (n: 3 distinct values at least, n ≥ 4), all d fitted at once (a power
    simulation's draws)."""
    t, V = np.asarray(tau, dtype=float), np.asarray(Y, dtype=float)
    top = t.max()
    s = t / top  # conditioned: τ in units of τ_max
    W = 1.0 / V**2
    quad, cov, df = _wls(np.column_stack([np.ones_like(s), s, s * s]), V, W)
    a, b, c = quad.T
    t_max = a + b + c
    q = c / t_max
    half_q = t_quantile(0.5 + level / 2, df) * np.sqrt(np.maximum(cov[:, 2, 2], 0.0)) / abs(t_max)
    line, cov_l, df_l = _wls(np.column_stack([np.ones_like(s), s]), V, W)
    half_a = t_quantile(0.5 + level / 2, df_l) * np.sqrt(np.maximum(cov_l[:, 0, 0], 0.0))
    n_tau, y_min = len(np.unique(t)), V.min(axis=1)
    return [
        OverheadFit(
            float(line[i, 0]),
            float(line[i, 0] - half_a[i]),
            float(line[i, 0] + half_a[i]),
            float(line[i, 1]) / top,
            float(q[i]),
            float(q[i] - half_q[i]),
            float(q[i] + half_q[i]),
            float((b[i] + 2 * c[i]) / t_max[i]),
            len(t),
            n_tau,
            float(t.min()),
            float(top),
            float(y_min[i]),
            level,
        )
        for i in range(len(V))
    ]


def process_law(
    taus: Sequence[float], runs: Sequence[Sequence[float]], level: float = LEVEL
) -> OverheadFit | None:
    """T = a + b·τ + c·τ² fitted inside each process: ``runs`` holds each process's times
    at ``taus``, taken in turns (:func:`rnnbench.harness.single.time_law`), so whatever
    speed a process ran at multiplies all of them alike.  Each run's fit is divided by
    its own fitted T(τ_max), which cancels that speed; the :class:`OverheadFit` holds the
    means over runs with their t-intervals (n − 1 degrees of freedom): the τ² share, the
    fixed cost a and the slope b in units of T(τ_max).  None with fewer than 3 distinct τ
    or 2 runs."""
    t = np.asarray(taus, dtype=float)
    if len(np.unique(t)) < 3 or np.any(t <= 0):
        return None
    top = t.max()
    s = t / top
    quad_x = np.column_stack([np.ones_like(s), s, s * s])
    line_x = quad_x[:, :2]
    shares, fixed, slopes, marginal, lows = [], [], [], [], []
    for run in runs:
        v = np.asarray(run, dtype=float)
        if v.shape != t.shape or not np.all(np.isfinite(v) & (v > 0)):
            continue
        w = 1.0 / v
        (a, b, c), *_ = np.linalg.lstsq(quad_x * w[:, None], v * w, rcond=None)
        (a1, b1), *_ = np.linalg.lstsq(line_x * w[:, None], v * w, rcond=None)
        shares.append(c / (a + b + c))
        marginal.append((b + 2 * c) / (a + b + c))
        fixed.append(a1 / (a1 + b1))
        slopes.append(b1 / (a1 + b1) / top)
        lows.append(v.min() / (a1 + b1))
    q, fa = mean_ci(shares, level), mean_ci(fixed, level)
    if q is None or fa is None:
        return None
    return OverheadFit(
        fa.estimate,
        fa.low,
        fa.high,
        float(np.mean(slopes)),
        q.estimate,
        q.low,
        q.high,
        float(np.mean(marginal)),
        len(shares) * len(t),
        len(np.unique(t)),
        float(t.min()),
        float(top),
        float(min(lows)),
        level,
        runs=len(shares),
        quad_sd=float(np.std(shares, ddof=1)),
    )


LINEAR, NOT_LINEAR, UNDECIDED = "linear", "not linear", "undecided"


def law_verdict(fit: OverheadFit, band: float) -> str:
    """Whether a fitted T = a + b·τ + c·τ² is linear in τ: the τ² term's share of T(τ_max)
    has its interval inside ±``band`` and the fixed cost a ≥ 0 is not rejected (its
    interval reaches −1% of the smallest T: an exact count has no noise) — linear; the
    interval wholly outside the band — not linear; else undecided."""
    if fit.quad_low >= -band and fit.quad_high <= band and fit.a_high >= -0.01 * fit.y_min:
        return LINEAR
    if fit.quad_low > band or fit.quad_high < -band:
        return NOT_LINEAR
    return UNDECIDED
