"""The pieces every claim is built from: thresholds and gates (:class:`Rules`), a
:class:`Rule` (claim text, decision rule and evidence gate in words, decision function),
its :class:`Decision`, and the helpers the decisions share — selecting timing and trained
cells, a speedup's interval over replicates, and combining settings ('in every setting',
'in some setting').

Every interval a verdict uses is taken over independent repetitions — replicates (each a
fresh process) or seeds, one point each — never over the paired blocks inside one process
(those give each replicate its point estimate).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from rnnbench.facts import FAILS, HOLDS, LINEAR_BAND, NOT_MEASURED, TEACHER_FORCING
from rnnbench.report import tidy
from rnnbench.report.tables import ok_rows, single
from rnnbench.stats import Interval, log_ratio_ci, ratio_ci

Part = tuple[str, str]  # (verdict, evidence text) of one judged setting


@dataclass(frozen=True)
class Rules:
    """The thresholds and evidence gates every verdict is decided by (shown on the page)."""

    linear_band: float = LINEAR_BAND  # |τ² share of T(τ_max)| within this: linear in τ
    min_taus: int = 3  # distinct τ per fit
    min_tau_ratio: float = 8.0  # τ_max / τ_min per fit
    min_cells: int = 4  # cells per fit: one residual degree of freedom at least
    min_replicates: int = 3  # repetitions (replicates or seeds) per side of a timing verdict
    min_seeds: int = 3  # seeds per side of a loss or accuracy verdict
    min_train_steps: int = 200  # training steps per loss or accuracy verdict
    no_gain: float = 1.1  # a speedup at or below this is no speedup
    faster: float = 1.0  # a speedup above this: faster
    accuracy_gap: float = 0.05  # accuracy difference that counts as a gap
    learned_margin: float = 0.05  # above chance by this much: the task was learned
    solved: float = 0.9  # accuracy that counts as solving a task
    negligible_nats: float = 0.01  # a loss difference below this (nats/token) is none
    growth: float = 0.2  # Newton iterations growing slower than τ^this: bounded k
    growth_tau_ratio: float = 32.0  # τ_max / τ_min of a growth fit
    contracting: float = 1.0  # spectral radius below this: contracting (no λ recorded)


@dataclass(frozen=True)
class Decision:
    """A rule's verdict, its headline value, the evidence in words, the rows used, a plain
    sentence for the page, and how often the rule would decide at this run's noise."""

    verdict: str
    value: float = math.nan
    unit: str = ""
    evidence: str = ""
    cells: pd.DataFrame | None = None
    # one plain sentence a reader takes away, generated from the evidence (the page's
    # findings-first summary); empty: the engine writes a generic one
    finding: str = ""
    # the probability that the rule decides (holds or does not hold) at this run's noise,
    # simulated (:mod:`.power`), and the sentence that says so; NaN / "" when not known
    power: float = math.nan
    power_text: str = ""


@dataclass(frozen=True)
class Rule:
    """A claim with its rule text, its evidence gate and the function that decides it."""

    key: str
    source: str  # "chapter", "consequence", "common belief"
    text: str  # the claim, as quoted
    how: Callable[[Rules], str]  # the decision rule, in words
    gate: Callable[[Rules], str]  # the evidence needed, in words
    decide: Callable[[pd.DataFrame, Rules], Decision]


# --------------------------------------------------------------------------- columns


def fmt(x: float | None) -> str:
    return f"{x:.3g}" if x is not None and np.isfinite(x) else "n/a"


def column(rows: pd.DataFrame, name: str, default: Any = np.nan) -> pd.Series:
    """A column, or ``default`` everywhere when the rows predate it."""
    if name in rows.columns:
        return rows[name]
    return pd.Series(default, index=rows.index, dtype=object)


def numeric(rows: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(column(rows, name), errors="coerce")


def truth(value: Any) -> bool | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def baseline_key(rows: pd.DataFrame) -> pd.Series:
    """The baseline of each row as canonical JSON ('' for none): the overrides asked for
    (``baseline``), with the fields as resolved in the run (``baseline_config``: e.g. the
    strategy ``best_bptt`` stood for) on top."""

    def canon(asked: Any, resolved: Any) -> str:
        opts = {k: v for k, v in tidy.options(asked).items() if k}
        if opts:
            opts.update({k: v for k, v in tidy.options(resolved).items() if k})
        return json.dumps(opts, sort_keys=True) if opts else ""

    pairs = zip(column(rows, "baseline", None), column(rows, "baseline_config", None))
    return pd.Series([canon(a, r) for a, r in pairs], index=rows.index, dtype=object)


def median_of(values: Any) -> float:
    """The median of a list column's finite numbers (NaN when none)."""
    nums = [float(v) for v in tidy.as_list(values) if isinstance(v, (int, float))]
    nums = [v for v in nums if np.isfinite(v)]
    return float(np.median(nums)) if nums else math.nan


NAMES = {
    "task_label": "",
    "batch": "B=",
    "hidden": "H=",
    "threads": "threads=",
    "tau": "τ=",
    "workers": "workers=",
    "rho": "ρ=",
    "strategy_label": "",
    "model": "",
}


def setting_text(
    row: Any, keys: Iterable[str] = ("task_label", "batch", "hidden", "threads")
) -> str:
    parts = []
    for k in keys:
        v = row.get(k) if hasattr(row, "get") else row[k]
        if v is None or (isinstance(v, float) and math.isnan(v)):
            v = "default" if k == "rho" else "?"
        number = isinstance(v, (int, float)) and not isinstance(v, bool)
        parts.append(f"{NAMES.get(k, k + '=')}{v:g}" if number else f"{NAMES.get(k, k + '=')}{v}")
    return ", ".join(parts)


# --------------------------------------------------------------------------- cells


def timing_cells(rows: pd.DataFrame) -> pd.DataFrame:
    """Timing cells: ok, untrained, timed in one process, not contended (a row whose
    threads waited for a CPU, or whose node was loaded, is left out of every time
    verdict: :func:`rnnbench.results.rows.contended`)."""
    ok = ok_rows(rows)
    ok = ok[(ok["train_steps"].fillna(0) == 0) & single(ok)]
    return ok[~column(ok, "contended", False).fillna(False).astype(bool)]


def contended_note(rows: pd.DataFrame) -> list[str]:
    """'n row(s) timed contended ...: left out', when there are any."""
    ok = ok_rows(rows)
    n = int(column(ok, "contended", False).fillna(False).astype(bool).sum())
    return (
        [
            f"{n} row(s) timed while the machine was contended (threads waiting for a CPU, "
            "or a loaded node): left out of the time verdicts"
        ]
        if n
        else []
    )


def trained_cells(rows: pd.DataFrame, rules: Rules) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trained contenders, W = 0 controls): ok rows trained at least a little."""
    ok = ok_rows(rows)
    ok = ok[ok["train_steps"].fillna(0) > 0].copy()
    ok["acc_gen"] = ok["acc_free"].fillna(ok["acc_tf"])
    ok["loss_gen"] = ok["loss_free"].fillna(ok["loss_tf"])
    control = (
        ok["strategy_options"]
        .map(lambda o: truth(tidy.options(o).get("w_zero")) is True)
        .astype(bool)
    )
    return ok[~control], ok[control]


def training_gate(rows: pd.DataFrame, rules: Rules) -> str | None:
    """Why rows of one side are below the loss gate (None: they pass)."""
    if rows.empty:
        return "no rows"
    seeds = rows["seed"].nunique()
    steps = rows["train_steps"].min()
    if seeds < rules.min_seeds:
        return f"{seeds} seed(s), the gate is {rules.min_seeds}"
    if steps < rules.min_train_steps:
        return f"{steps:g} training steps, the gate is {rules.min_train_steps}"
    return None


def is_tf(rows: pd.DataFrame) -> pd.Series:
    return (rows["model"] == "jordan") & (rows["strategy"] == TEACHER_FORCING)


def law_gate(group: pd.DataFrame, rules: Rules, tau_ratio: float | None = None) -> str | None:
    taus = group["tau"].dropna().unique()
    ratio = rules.min_tau_ratio if tau_ratio is None else tau_ratio
    if len(taus) < rules.min_taus:
        return f"{len(taus)} distinct τ (gate {rules.min_taus})"
    if taus.max() / taus.min() < ratio:
        return f"τ range {taus.min():g}–{taus.max():g} under {ratio:g}×"
    if len(group) < rules.min_cells:
        return f"{len(group)} cells (gate {rules.min_cells}: one residual degree of freedom)"
    return None


# --------------------------------------------------------------------------- speedups


def replicate_ci(values: Iterable[float], rules: Rules) -> tuple[Interval | None, str]:
    """A ratio's interval over its repetitions (one value per replicate or seed: a row's
    median of paired-block ratios, say): (None, why) below the gate."""
    vals = [float(v) for v in values if v is not None and np.isfinite(v) and v > 0]
    if len(vals) < rules.min_replicates:
        return None, (
            f"{len(vals)} replicate(s) (gate {rules.min_replicates}: the interval is "
            "taken over replicates, fresh processes, not over the pairs in one)"
        )
    return ratio_ci(vals), f"{len(vals)} replicates"


def speedup(
    new: pd.DataFrame, base: pd.DataFrame | None, rules: Rules
) -> tuple[Interval | None, str]:
    """Speedup base/new with its interval over repetitions: each ``new`` row's paired
    speedup (its blocks taking turns with its baseline in one process) is one
    replicate's point; without paired rows, the geometric means of two separate cells'
    step times over their replicates (Welch).  (None, why) below the gate."""
    paired = numeric(new, "speedup_median").dropna()
    if len(paired):
        return replicate_ci(paired, rules)
    if base is None or base.empty:
        return None, "no paired rows and no baseline cell"
    b, n = base["step_ms_median"].dropna(), new["step_ms_median"].dropna()
    if min(len(b), len(n)) < rules.min_replicates:
        return None, (
            f"unpaired cells with {len(n)} and {len(b)} replicate(s) (gate "
            f"{rules.min_replicates} a side)"
        )
    ci = log_ratio_ci(b, n)  # geomean(base) / geomean(new)
    return ci, f"unpaired, {len(n)} and {len(b)} replicates"


def ci_text(ci: Interval) -> str:
    return f"{ci.estimate:.3g}× [{ci.low:.3g}, {ci.high:.3g}]"


def above_verdict(ci: Interval, threshold: float) -> str:
    """Holds when the 95% CI lies above ``threshold``; does not hold when it lies at or
    below; else not measured."""
    return HOLDS if ci.above(threshold) else FAILS if ci.high <= threshold else NOT_MEASURED


def below_verdict(ci: Interval, threshold: float) -> str:
    """Holds when the 95% CI lies at or below ``threshold``; does not hold when it lies
    above; else not measured."""
    return HOLDS if ci.high <= threshold else FAILS if ci.above(threshold) else NOT_MEASURED


# --------------------------------------------------------------------------- settings


def _quantified(parts: list[Part], decides: str, needs_all: str) -> str:
    """One verdict from the settings' verdicts: ``decides`` in one setting decides; else
    ``needs_all`` when every judged setting says it; else not measured."""
    verdicts = [v for v, _ in parts]
    if decides in verdicts:
        return decides
    return needs_all if verdicts and all(v == needs_all for v in verdicts) else NOT_MEASURED


def every_setting(parts: list[Part]) -> str:
    """'In every setting': holds only when each judged setting holds; one that does not
    hold decides; any undecided setting leaves the claim not measured."""
    return _quantified(parts, FAILS, HOLDS)


def some_setting(parts: list[Part]) -> str:
    """'In some setting': holds when one judged setting holds; does not hold when every
    judged setting does not."""
    return _quantified(parts, HOLDS, FAILS)


def evidence_text(parts: list[Part], skipped: list[str]) -> str:
    text = "; ".join(f"{t} → {v}" for v, t in parts)
    if skipped:
        text += ("; " if text else "") + "not judged: " + "; ".join(skipped)
    return text


def decision(
    verdict: str,
    value: float,
    unit: str,
    parts: list[Part],
    skipped: list[str],
    used: list[pd.DataFrame],
    finding: str = "",
    power: float = math.nan,
    power_text: str = "",
) -> Decision:
    """A rule's :class:`Decision` from what it gathered setting by setting: the judged
    settings (``parts``), those not judged and why (``skipped``) and the rows it used."""
    return Decision(
        verdict,
        value,
        unit,
        evidence_text(parts, skipped),
        pd.concat(used) if used else None,
        finding,
        power,
        power_text,
    )
