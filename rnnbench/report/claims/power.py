"""How often a timing rule decides at the noise a run actually had: its power, simulated.

A *not measured* verdict means the evidence did not decide — but was there any chance it
would?  For each timing rule the same decision is applied to simulated data: the design
the run had (its τ values and repetitions, or its number of replicates), the noise it
showed (the spread of its replicates), and a true effect (a law that is truly linear; a
ratio equal to the one estimated).  The share of simulated runs the rule decides is its
power at this noise: "at this run's 8% spread the O(τ) rule decides a truly linear law
in 71% of runs".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from rnnbench.stats import LEVEL, LINEAR, law_verdict, overhead_fits, t_quantile

DRAWS = 400  # simulated runs per estimate
SEED = 0  # the simulations are seeded: a report is the same every time it is made


def spread(values_by_point: Sequence[Sequence[float]]) -> float:
    """The pooled standard deviation of the log values within each point (a τ, a setting)
    with two or more repetitions: the run's relative noise; NaN when no point has two."""
    num = den = 0.0
    for values in values_by_point:
        logs = np.log([v for v in values if v > 0])
        if len(logs) >= 2:
            num += float(((logs - logs.mean()) ** 2).sum())
            den += len(logs) - 1
    return math.sqrt(num / den) if den else math.nan


def law_power(taus: Sequence[float], a: float, b: float, noise: float, band: float) -> float:
    """The share of simulated runs with this design (``taus``: one entry per cell) whose
    times follow T = a + b·τ exactly, times log-normal noise of sd ``noise``, that the
    O(τ) rule judges linear."""
    if not (np.isfinite(noise) and noise > 0 and b > 0):
        return math.nan
    t = np.asarray(taus, dtype=float)
    if len(np.unique(t)) < 3 or len(t) < 4:
        return 0.0  # the rule fits no law to this design: it never decides
    rng = np.random.default_rng(SEED)
    truth = np.maximum(a, 0.0) + b * t
    draws = truth * np.exp(rng.normal(0.0, noise, (DRAWS, len(t))))
    return sum(law_verdict(fit, band) == LINEAR for fit in overhead_fits(t, draws)) / DRAWS


def process_law_power(n: int, noise: float, band: float) -> float:
    """The share of simulated sets of ``n`` processes, each measuring a truly linear law
    (τ² share 0) with normal noise of sd ``noise`` on its share, whose t-interval of the
    mean share lies within ±``band``: how often :func:`rnnbench.stats.process_law`'s
    verdict says linear."""
    if n < 2 or not (np.isfinite(noise) and noise > 0):
        return math.nan
    rng = np.random.default_rng(SEED)
    shares = rng.normal(0.0, noise, (DRAWS, n))
    mean, sd = shares.mean(axis=1), shares.std(axis=1, ddof=1)
    half = t_quantile(0.5 + LEVEL / 2, n - 1) * sd / math.sqrt(n)
    return float(np.mean(np.abs(mean) + half <= band))


def ratio_power(
    n: int, estimate: float, noise: float, decide: Callable[[float, float], str | None]
) -> float:
    """The share of simulated sets of ``n`` replicates, log-normal around ``estimate`` with
    sd ``noise``, whose interval (:func:`rnnbench.stats.ratio_ci`: the t-interval of the
    mean log) the rule decides (``decide(low, high)`` returns a verdict, or None when it
    leaves it undecided)."""
    if n < 2 or not (np.isfinite(noise) and noise > 0 and estimate > 0):
        return math.nan
    rng = np.random.default_rng(SEED)
    logs = math.log(estimate) + rng.normal(0.0, noise, (DRAWS, n))
    mean, sd = logs.mean(axis=1), logs.std(axis=1, ddof=1)
    half = t_quantile(0.5 + LEVEL / 2, n - 1) * sd / math.sqrt(n)
    lows, highs = np.exp(mean - half), np.exp(mean + half)
    return sum(decide(lo, hi) is not None for lo, hi in zip(lows, highs)) / DRAWS


def text(power: float, noise: float, what: str) -> str:
    """'at this run's 8% spread the rule decides <what> in 71% of runs'."""
    if not np.isfinite(power):
        return ""
    return (
        f"power: at this run's {100 * noise:.0f}% spread the rule decides {what} in "
        f"{100 * power:.0f}% of runs"
    )
