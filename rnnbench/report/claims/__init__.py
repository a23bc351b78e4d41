"""Each claim of the chapter beside the measured evidence and a verdict.

A claim is a :class:`~.rules.Rule` — its text, the rule that decides it, the evidence gate
it needs (:mod:`.catalogue`) and the function that decides (:mod:`.speed`, :mod:`.deer`,
:mod:`.capability`); the page prints the rule and the gate the code applies.  A verdict is
``holds``, ``does not hold`` or ``not measured`` (below the gate, or an interval that
straddles the threshold; the evidence says which, and for a timing rule how often it would
decide at this run's noise: :mod:`.power`); ``by construction`` marks a constant of the
strategy registry.

Public entry point: :func:`evaluate` (result rows -> list of :class:`Claim` records).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from rnnbench.facts import BY_CONSTRUCTION, FAILS, HOLDS, NOT_MEASURED, VERDICTS
from rnnbench.report import tidy
from rnnbench.report.claims.catalogue import RULES
from rnnbench.report.claims.rules import Decision, Rule, Rules, every_setting, some_setting

__all__ = [
    "BY_CONSTRUCTION",
    "FAILS",
    "HOLDS",
    "METHOD",
    "NOT_MEASURED",
    "RULES",
    "VERDICTS",
    "Claim",
    "Decision",
    "Evidence",
    "Rule",
    "Rules",
    "evaluate",
    "every_setting",
    "generic_finding",
    "judge",
    "some_setting",
    "table",
]

METHOD = (
    "Intervals are 95% confidence intervals over independent repetitions: replicates "
    "(each cell measured again in a fresh process, interleaved with the job's other cells) "
    "or seeds — Student's t; Welch's for a difference of two means; for a speedup, the "
    "t-interval of the mean log of the replicates' speedups (each replicate's point: the "
    "median of its paired blocks, the cell and its baseline taking turns A B B A in one "
    "process). The pairs inside one process give a point, never an interval. Rows timed "
    "while the machine was contended (threads waiting for a CPU, a loaded node) are left "
    "out of every time verdict. A claim judged 'in every setting' holds only when every "
    "setting that passes its evidence gate holds; settings below the gate are listed as not "
    "judged. O(τ) laws: T = a + b·τ + c·τ² weighted by 1/T², over timing cells only (for "
    "time, only cells that ran alone on their node); linear when the τ² term's share of the "
    "time at the largest τ has its 95% interval inside the stated band and the fixed cost a "
    "of T = a + b·τ is not below 0. A timing rule's power — how often it decides at this "
    "run's noise, simulated — is printed beside its verdict."
)


@dataclass(frozen=True)
class Claim:
    """One verdict record (a row of the claims table)."""

    key: str
    source: str
    claim: str
    rule: str
    gate: str
    verdict: str
    value: float
    unit: str
    evidence: str
    cells: int
    cell_ids: tuple[str, ...] = ()
    finding: str = ""  # one plain sentence from the evidence (findings first on the page)
    power: float = math.nan  # how often the rule decides at this run's noise (timing rules)
    power_text: str = ""


def generic_finding(rule: Rule, d: Decision) -> str:
    """A plain sentence for a rule that wrote none: the verdict and its headline value."""
    value = f" ({d.value:.3g} {d.unit})" if np.isfinite(d.value) else ""
    return f"{rule.text.split(':')[0].rstrip('.')}: {d.verdict}{value}."


def judge(rule: Rule, rows: pd.DataFrame, rules: Rules | None = None) -> Claim:
    rules = rules or Rules()
    d = rule.decide(rows, rules)
    if d.verdict not in VERDICTS:
        raise ValueError(f"verdict: {d.verdict!r} is not one of {VERDICTS}")
    cells = d.cells if d.cells is not None else rows.iloc[:0]
    cells = cells.drop_duplicates("cell_id") if "cell_id" in cells.columns else cells
    ids = tuple(sorted(cells["cell_id"].dropna().astype(str))) if "cell_id" in cells else ()
    value = float(d.value) if d.value is not None and np.isfinite(d.value) else math.nan
    evidence = d.evidence or "no evidence"
    if d.power_text:
        evidence += f" ({d.power_text})"
    return Claim(
        rule.key,
        rule.source,
        rule.text,
        rule.how(rules),
        rule.gate(rules),
        d.verdict,
        value,
        d.unit,
        evidence,
        len(cells),
        ids,
        d.finding or generic_finding(rule, d),
        float(d.power),
        d.power_text,
    )


@dataclass(frozen=True)
class Evidence:
    """The rows the claims are judged on (other derived tables are the report's)."""

    rows: pd.DataFrame
    fits: pd.DataFrame | None = None
    speedup: pd.DataFrame | None = None
    crossover: pd.DataFrame | None = None
    workers: pd.DataFrame | None = None
    rules: Rules = field(default_factory=Rules)


def evaluate(source: pd.DataFrame | Evidence, rules: Rules | None = None) -> list[Claim]:
    """Every claim judged on ``source``: result rows (a DataFrame, raw or loaded) or an
    :class:`Evidence`. Returns one :class:`Claim` record per rule, in page order."""
    if isinstance(source, Evidence):
        rows, rules = source.rows, rules or source.rules
    else:
        rows = source
    if "strategy_label" not in rows.columns:
        rows = tidy.load(rows)
    rules = rules or Rules()
    return [judge(rule, rows, rules) for rule in RULES]


def table(claims: list[Claim]) -> pd.DataFrame:
    df = pd.DataFrame([asdict(c) for c in claims])
    df["cell_ids"] = df["cell_ids"].map(" ".join)
    return df
