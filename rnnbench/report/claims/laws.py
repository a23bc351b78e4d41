"""Decisions about the O(τ) laws: BPTT's time and memory against τ, fitted as
T = a + b·τ + c·τ² per setting, over cells or inside each process of a law cell.
(The claims' texts: :mod:`.catalogue`.)"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from rnnbench.facts import (
    COMPILED_BPTT,
    FAILS,
    HOLDS,
    NO_GRAPH_BPTT,
    NOT_MEASURED,
    SEQUENTIAL_BPTT,
)
from rnnbench.report.claims import power
from rnnbench.report.claims.rules import (
    Decision,
    Part,
    Rules,
    column,
    contended_note,
    decision,
    every_setting,
    evidence_text,
    fmt,
    law_gate,
    numeric,
    setting_text,
    timing_cells,
)
from rnnbench.stats import (
    LINEAR,
    NOT_LINEAR,
    OverheadFit,
    law_verdict,
    overhead_fit,
    process_law,
)

# --------------------------------------------------------------------------- O(τ) laws

TIME_MEASURES = ("step_ms_median",)  # measures a neighbouring cell can slow down
LAW_KEYS = [
    "model",
    "strategy_label",
    "task_label",
    "batch",
    "hidden",
    "device",
    "threads",
    "dtype",
]
VERDICT_OF = {LINEAR: HOLDS, NOT_LINEAR: FAILS}


def _fit_text(where: str, fit: OverheadFit) -> str:
    """A fitted law in words: the τ² share and fixed cost with their intervals (in units
    of T(τ_max) for a fit inside processes), the marginal exponent, what it is over."""
    unit = " of T(τ_max)" if fit.runs else ""
    a = (fit.a, fit.a_low, fit.a_high)
    low_a = [f"{v:.3f}" if fit.runs else fmt(v) for v in a]
    over = (
        f"{fit.runs} processes, the interval over them"
        if fit.runs
        else f"τ {fit.tau_min:g}–{fit.tau_max:g}, {fit.n_points} cells"
    )
    return (
        f"{where}: τ² share {fit.quad_share:+.3f} [{fit.quad_low:+.3f}, "
        f"{fit.quad_high:+.3f}]{unit}, fixed cost a = {low_a[0]} [{low_a[1]}, {low_a[2]}]"
        f"{unit}, marginal exponent {fit.marginal_k:.2f} at τ={fit.tau_max:g} ({over})"
    )


def law_cells(t: pd.DataFrame) -> pd.Series:
    """Which rows are law cells: their ``law_step_ms`` holds the step time at 3 τ or more,
    timed in one process (:func:`rnnbench.harness.single.time_law`)."""
    return column(t, "law_step_ms", None).map(
        lambda v: isinstance(v, (list, tuple, np.ndarray)) and len(v) >= 3
    )


def _process_part(
    g: pd.DataFrame, where: str, r: Rules
) -> tuple[Part | None, str | None, dict[str, Any]]:
    """One setting's law from its law cells (:func:`rnnbench.stats.process_law`): each
    process's τ values taken in turns, the interval over processes (replicates)."""
    taus = g["law_taus"].map(lambda v: tuple(int(x) for x in v))
    same = g[taus == taus.value_counts().index[0]]  # the design most processes ran
    design = list(taus.value_counts().index[0])
    where = f"{where}, τ {'/'.join(map(str, design))} taking turns in each process"
    if len(same) < r.min_replicates:
        return None, f"{where} ({len(same)} process(es), gate {r.min_replicates})", {}
    if design[-1] / design[0] < r.min_tau_ratio:
        return None, f"{where} (τ range under {r.min_tau_ratio:g}×)", {}
    fit = process_law(design, [list(v) for v in same["law_step_ms"]])
    if fit is None:
        return None, f"{where} (no fit)", {}
    verdict = VERDICT_OF.get(law_verdict(fit, r.linear_band), NOT_MEASURED)
    text = _fit_text(where, fit)
    p = power.process_law_power(fit.runs, fit.quad_sd, r.linear_band)
    extra = {"fit": fit, "noise": fit.quad_sd, "power": p, "cells": same}
    return (verdict, text), None, extra


def _law_part(
    g: pd.DataFrame, measure: str, where: str, r: Rules
) -> tuple[Part | None, str | None, dict[str, Any]]:
    """One setting's law: (verdict, text), or why it was not judged; and its power.  Where
    the setting has law cells, they decide; the cells each timed in its own process are
    then context (a process's speed is part of their spread)."""
    law = law_cells(g)
    if measure in TIME_MEASURES and law.any():
        part, why, extra = _process_part(g[law], where, r)
        apart = g[~law]
        if part is not None and not law_gate(apart, r):
            fit = overhead_fit(apart["tau"], apart[measure])
            if fit is not None:
                extra["context"] = (
                    f"{where}, each τ in its own process: τ² share {fit.quad_share:+.3f} "
                    f"[{fit.quad_low:+.3f}, {fit.quad_high:+.3f}] "
                    f"({law_verdict(fit, r.linear_band)}; shown, not deciding)"
                )
        return part, why, extra
    why = law_gate(g, r)
    fit = None if why else overhead_fit(g["tau"], g[measure])
    if fit is None:
        return None, f"{where} ({why or 'no fit'})", {}
    verdict = VERDICT_OF.get(law_verdict(fit, r.linear_band), NOT_MEASURED)
    text = _fit_text(where, fit)
    noise = power.spread([grp[measure].tolist() for _, grp in g.groupby("tau")])
    if not np.isfinite(noise):  # one cell a τ: the spread of the cells around the line
        line = np.maximum(fit.a, 1e-12) + fit.b * g["tau"].to_numpy(dtype=float)
        logs = np.log(g[measure].to_numpy(dtype=float) / line)
        noise = float(np.std(logs, ddof=2)) if len(logs) > 2 else math.nan
    extra = {"fit": fit, "noise": noise}
    if measure in TIME_MEASURES and np.isfinite(noise):
        extra["power"] = power.law_power(g["tau"].tolist(), fit.a, fit.b, noise, r.linear_band)
    return (verdict, text), None, extra


def linear_law(
    rows: pd.DataFrame,
    measure: str,
    strategies: tuple[str, ...],
    r: Rules,
    deciding: tuple[str, ...] | None = None,
) -> Decision:
    """Per setting: T = a + b·τ + c·τ² over the timing cells (:func:`rnnbench.stats.law_verdict`);
    in every setting of the ``deciding`` strategies (default: all of them); the others'
    fits are shown as the implementation's effects, deciding nothing."""
    deciding = strategies if deciding is None else deciding
    t = timing_cells(rows)
    t = t[
        t["model"].isin(["elman", "single_output"])
        & t["strategy"].isin(strategies)
        & t[measure].notna()
    ]
    skipped = contended_note(rows) if measure in TIME_MEASURES else []
    if measure in TIME_MEASURES:
        # a cell that shared its node was slowed by its neighbours by an amount of their
        # own: one such cell at the largest τ bends the fit (bytes are not affected)
        shared = numeric(t, "neighbours").fillna(0) > 0
        if shared.any():
            skipped.append(
                f"{int(shared.sum())} cell(s) timed beside other cells (the sweep "
                "was not --exclusive): left out of the time fits"
            )
        t = t[~shared]
    if t.empty or not t["strategy"].isin(deciding).any():
        return Decision(
            NOT_MEASURED,
            evidence=evidence_text(
                [], skipped + [f"no Elman {'/'.join(deciding)} timing cells with {measure}"]
            ),
        )
    judged, context = [], []
    for key, g in t.groupby(LAW_KEYS, dropna=False, sort=True):
        row = dict(zip(LAW_KEYS, key))
        where = setting_text(row, ("strategy_label", "task_label", "batch", "hidden", "threads"))
        part, why, extra = _law_part(g, measure, where, r)
        decides = row["strategy_label"] in deciding
        if part is None:
            if decides:
                skipped.append(why or where)
            continue
        if not decides:
            context.append(part[1] + f" ({part[0]})")
            continue
        if "context" in extra:
            context.append(extra["context"])
        judged.append((part, extra, g, where))
    # where law cells (τ taking turns in one process) decide, a setting of cells each in its
    # own process that the noise between processes leaves undecided is shown beside them;
    # one that decides (linear or not) still counts
    if any(e["fit"].runs for _, e, _, _ in judged):
        apart = [j for j in judged if not j[1]["fit"].runs and j[0][0] == NOT_MEASURED]
        context += [f"{j[0][1]} ({j[0][0]}; undecided beside the law cells)" for j in apart]
        judged = [j for j in judged if j not in apart]
    parts = [part for part, _, _, _ in judged]
    used = [e.get("cells", g) for _, e, g, _ in judged]
    fits = [(e["fit"], where, part[0]) for part, e, _, where in judged]
    shares = [e["fit"].quad_share for _, e, _, _ in judged]
    powers = [(e["power"], e["noise"]) for _, e, _, _ in judged if "power" in e]
    verdict = every_setting(parts)
    value = max(shares, key=abs) if shares else math.nan
    if context:
        skipped.append(
            "shown, not deciding (implementation effects of other loops, and cells each "
            "timed in its own process): " + "; ".join(context)
        )
    p, noise = min(powers) if powers else (math.nan, math.nan)
    return decision(
        verdict,
        value,
        "τ² share of T(τ_max), largest",
        parts,
        skipped,
        used,
        _law_finding(fits, measure, r.linear_band),
        power=p,
        power_text=power.text(p, noise, "a truly linear law"),
    )


def _law_finding(fits: list[tuple[OverheadFit, str, str]], measure: str, band: float) -> str:
    """One sentence from the setting whose τ² share is known best: its fit, its interval
    against the band, its verdict."""
    if not fits:
        return ""
    fit, where, verdict = min(fits, key=lambda f: f[0].quad_high - f[0].quad_low)
    what = "time" if measure in TIME_MEASURES else "memory"
    if fit.runs:
        where += f"; the τ values taking turns in each of {fit.runs} processes"
    return (
        f"Over τ = {fit.tau_min:g}–{fit.tau_max:g} ({where}) a τ² term explains "
        f"{fit.quad_share:+.2f} [{fit.quad_low:+.2f}, {fit.quad_high:+.2f}] of the {what} at "
        f"the largest τ (linear: the interval within ±{band:g}): {verdict}."
    )


def bptt_time(rows: pd.DataFrame, r: Rules) -> Decision:
    """O(τ) time, decided on the compiled loop (the algorithm without a framework); the
    framework loops' curvature and the no-autograd control shown beside it."""
    return linear_law(
        rows, "step_ms_median", (*SEQUENTIAL_BPTT, NO_GRAPH_BPTT), r, deciding=(COMPILED_BPTT,)
    )


def bptt_memory(rows: pd.DataFrame, r: Rules) -> Decision:
    d = linear_law(rows, "saved_bytes", SEQUENTIAL_BPTT, r)
    finding = (
        "Every BPTT keeps bytes for backward in exact proportion to τ."
        if d.verdict == HOLDS
        else d.finding
    )
    return Decision(d.verdict, d.value, d.unit, d.evidence, d.cells, finding)
