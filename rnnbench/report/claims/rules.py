"""The pieces every claim is built from: thresholds and gates (:class:`Rules`), a
:class:`Rule` (claim text, decision rule and evidence gate in words, decision function),
its :class:`Decision`, and the helpers the decisions share — selecting timing and
trained cells, comparing two timings with a confidence interval, and combining
settings ('in every setting', 'in some setting').
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rnnbench.facts import FAILS, HOLDS, NOT_MEASURED, TEACHER_FORCING
from rnnbench.report import tidy
from rnnbench.report.tables import ok_rows, single
from rnnbench.stats import Interval, diff_ci, ratio_ci


@dataclass(frozen=True)
class Rules:
    """The thresholds and evidence gates every verdict is decided by (shown on the page)."""

    linear_band: float = 0.2  # |τ² share of T(τ_max)| within this: linear in τ
    min_taus: int = 3  # distinct τ per fit
    min_tau_ratio: float = 8.0  # τ_max / τ_min per fit
    min_cells: int = 4  # cells per fit: one residual degree of freedom at least
    min_seeds: int = 3  # seeds per side of a loss or accuracy verdict
    min_train_steps: int = 200  # training steps per loss or accuracy verdict
    min_pairs: int = 3  # paired block ratios per speedup
    no_gain: float = 1.1  # a speedup at or below this is no speedup
    faster: float = 1.0  # a speedup above this: faster
    accuracy_gap: float = 0.05  # accuracy difference that counts as a gap
    learned_margin: float = 0.05  # above chance by this much: the task was learned
    solved: float = 0.9  # accuracy that counts as solving a task
    negligible_nats: float = 0.01  # a loss difference below this (nats/token) is none
    growth: float = 0.5  # iterations growing slower than τ^this: bounded k
    contracting: float = 1.0  # spectral radius below this: contracting dynamics


@dataclass(frozen=True)
class Decision:
    verdict: str
    value: float = math.nan
    unit: str = ""
    evidence: str = ""
    cells: pd.DataFrame | None = None
    # one plain sentence a reader takes away, generated from the evidence (the page's
    # findings-first summary); empty: the engine writes a generic one
    finding: str = ""


@dataclass(frozen=True)
class Rule:
    """A claim with its rule text, its evidence gate and the function that decides it."""

    key: str
    source: str  # "chapter", "consequence", "common belief"
    text: str  # the claim, as quoted
    how: Callable[[Rules], str]  # the decision rule, in words
    gate: Callable[[Rules], str]  # the evidence needed, in words
    decide: Callable[[pd.DataFrame, Rules], Decision]


def fmt(x: float) -> str:
    return f"{x:.3g}" if x is not None and np.isfinite(x) else "n/a"


def column(rows: pd.DataFrame, name: str, default=np.nan) -> pd.Series:
    """A column, or ``default`` everywhere when the rows predate it."""
    return (
        rows[name] if name in rows.columns else pd.Series(default, index=rows.index, dtype=object)
    )


def numeric(rows: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(column(rows, name), errors="coerce")


def baseline_key(rows: pd.DataFrame) -> pd.Series:
    """The baseline of each row as canonical JSON ('' for none): the overrides asked for
    (``baseline``), with the fields as resolved in the run (``baseline_config``: e.g. the
    strategy ``best_bptt`` stood for) on top."""

    def canon(asked, resolved):
        opts = {k: v for k, v in tidy.options(asked).items() if k}
        if opts:
            opts.update({k: v for k, v in tidy.options(resolved).items() if k})
        return json.dumps(opts, sort_keys=True) if opts else ""

    return pd.Series(
        [
            canon(a, r)
            for a, r in zip(column(rows, "baseline", None), column(rows, "baseline_config", None))
        ],
        index=rows.index,
        dtype=object,
    )


def paired_ratios(rows: pd.DataFrame) -> list[float]:
    return [
        float(r)
        for v in column(rows, "speedup_samples", None)
        for r in tidy.as_list(v)
        if isinstance(r, (int, float)) and np.isfinite(r)
    ]


def truth(value) -> bool | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def setting_text(row, keys=("task_label", "batch", "hidden", "threads")) -> str:
    names = {
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
    parts = []
    for k in keys:
        v = row.get(k) if hasattr(row, "get") else row[k]
        if v is None or (isinstance(v, float) and math.isnan(v)):
            v = "default" if k == "rho" else "?"
        parts.append(
            f"{names.get(k, k + '=')}{v:g}"
            if isinstance(v, (int, float)) and not isinstance(v, bool)
            else f"{names.get(k, k + '=')}{v}"
        )
    return ", ".join(parts)


def timing_cells(rows: pd.DataFrame) -> pd.DataFrame:
    """Timing cells: ok, untrained, timed in one process."""
    ok = ok_rows(rows)
    return ok[(ok["train_steps"].fillna(0) == 0) & single(ok)]


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


def _quantified(parts: list[tuple[str, str]], decides: str, needs_all: str) -> str:
    """One verdict from the settings' verdicts: ``decides`` in one setting decides; else
    ``needs_all`` when every judged setting says it; else not measured."""
    verdicts = [v for v, _ in parts]
    if decides in verdicts:
        return decides
    return needs_all if verdicts and all(v == needs_all for v in verdicts) else NOT_MEASURED


def every_setting(parts: list[tuple[str, str]]) -> str:
    """'In every setting': holds only when each judged setting holds; one that does not
    hold decides; any undecided setting leaves the claim not measured."""
    return _quantified(parts, FAILS, HOLDS)


def some_setting(parts: list[tuple[str, str]]) -> str:
    """'In some setting': holds when one judged setting holds; does not hold when every
    judged setting does not."""
    return _quantified(parts, HOLDS, FAILS)


def decision(
    verdict: str,
    value: float,
    unit: str,
    parts: list[tuple[str, str]],
    skipped: list[str],
    used: list[pd.DataFrame],
) -> Decision:
    """A rule's :class:`Decision` from what it gathered setting by setting: the judged
    settings (``parts``), those not judged and why (``skipped``) and the rows it used."""
    return Decision(
        verdict, value, unit, evidence_text(parts, skipped), pd.concat(used) if used else None
    )


def above_verdict(ci: Interval, threshold: float) -> str:
    """Holds when the 95% CI lies above ``threshold``; does not hold when it lies at or
    below; else not measured."""
    return HOLDS if ci.above(threshold) else FAILS if ci.high <= threshold else NOT_MEASURED


def evidence_text(parts: list[tuple[str, str]], skipped: list[str]) -> str:
    text = "; ".join(f"{t} → {v}" for v, t in parts)
    if skipped:
        text += ("; " if text else "") + "not judged: " + "; ".join(skipped)
    return text


def log_ci(ci: Interval) -> Interval:
    return Interval(math.exp(ci.estimate), math.exp(ci.low), math.exp(ci.high), ci.n, ci.level)


def speedup(
    new: pd.DataFrame, base: pd.DataFrame | None, rules: Rules
) -> tuple[Interval | None, str]:
    """Speedup base/new with its interval: from paired block ratios when ``new`` was timed
    against its baseline in one process, else over the seeds of two separate cells.
    (None, why) below the gate."""
    ratios = paired_ratios(new)
    if len(ratios) >= rules.min_pairs:
        return ratio_ci(ratios), "paired blocks"
    if base is None or base.empty:
        return None, "no paired blocks and no baseline cell"
    a = np.log(base["step_ms_median"].dropna().to_numpy(dtype=float))
    b = np.log(new["step_ms_median"].dropna().to_numpy(dtype=float))
    ci = diff_ci(a, b)
    if ci is None:
        return None, (
            f"unpaired cells with {len(b)} and {len(a)} seed(s): no interval "
            "(no paired blocks; under 2 seeds a side)"
        )
    return log_ci(ci), "seeds, unpaired"


def ci_text(ci: Interval) -> str:
    return f"{ci.estimate:.3g}× [{ci.low:.3g}, {ci.high:.3g}]"


def is_tf(rows):
    return (rows["model"] == "jordan") & (rows["strategy"] == TEACHER_FORCING)


def law_gate(group: pd.DataFrame, rules: Rules) -> str | None:
    taus = group["tau"].dropna().unique()
    if len(taus) < rules.min_taus:
        return f"{len(taus)} distinct τ (gate {rules.min_taus})"
    if taus.max() / taus.min() < rules.min_tau_ratio:
        return f"τ range {taus.min():g}–{taus.max():g} under {rules.min_tau_ratio:g}×"
    if len(group) < rules.min_cells:
        return f"{len(group)} cells (gate {rules.min_cells}: one residual degree of freedom)"
    return None
