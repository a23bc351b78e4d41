"""Confidence intervals over independent repetitions, for the claims' verdicts.

Three kinds, each a 95% interval from Student's t (:func:`rnnbench.report.fit.t_quantile`):

- :func:`mean_ci` — the mean of values, one per seed (a loss, an accuracy, a gap).
- :func:`diff_ci` — the difference of two means over independent seeds (Welch).
- :func:`ratio_ci` — a speedup from paired block ratios (baseline / this, taken in
  turns in one process): the t-interval of the mean log ratio, as a ratio (the
  geometric mean with its interval).

None of them is the spread inside one cell: each needs at least two repetitions
and returns ``None`` below that, so a verdict from one repetition is impossible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rnnbench.report.fit import LEVEL, t_quantile


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


def _finite(values) -> np.ndarray:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    return v[np.isfinite(v)]


def mean_ci(values, level: float = LEVEL) -> Interval | None:
    """t-interval of the mean of independent repetitions; None under two."""
    v = _finite(values)
    if v.size < 2:
        return None
    mean = float(v.mean())
    half = t_quantile(0.5 + level / 2, v.size - 1) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return Interval(mean, mean - half, mean + half, int(v.size), level)


def diff_ci(a, b, level: float = LEVEL) -> Interval | None:
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


def ratio_ci(ratios, level: float = LEVEL) -> Interval | None:
    """Geometric-mean speedup of paired block ratios with the t-interval of its log;
    None with fewer than two ratios."""
    r = _finite(ratios)
    r = r[r > 0]
    m = mean_ci(np.log(r), level) if r.size else None
    if m is None:
        return None
    return Interval(math.exp(m.estimate), math.exp(m.low), math.exp(m.high), m.n, level)
