"""Decisions about parallel-in-time BPTT (DEER, quasi-DEER), one solver at a time: does the
Newton iteration count stay bounded as τ grows (so the depth is O(k log τ)), and is the
solver faster than the best sequential BPTT on this device.  A run stopped by its
iteration cap without converging is censored (k > cap): listed, never fitted."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from rnnbench.facts import FAILS, HOLDS, NEWTON_SOLVERS, NOT_MEASURED, SEQUENTIAL_BPTT, scan_depth
from rnnbench.report.claims import rules
from rnnbench.report.claims.rules import (
    Decision,
    Part,
    Rules,
    above_verdict,
    ci_text,
    column,
    decision,
    evidence_text,
    law_gate,
    numeric,
    setting_text,
    some_setting,
    timing_cells,
    truth,
)
from rnnbench.report.claims.speed import against, device_decision, on_the_device
from rnnbench.report.tables import ok_rows
from rnnbench.stats import power_fit

DEER_KEYS = ["strategy_label", "task_label", "batch", "hidden", "device", "dtype", "rho"]


def converged(rows: pd.DataFrame) -> pd.Series:
    """Whether each row records a converged solve (unrecorded counts as not)."""
    return column(rows, "converged", None).map(truth).eq(True)


def contracting(g: pd.DataFrame, rho: float, r: Rules) -> tuple[bool, str]:
    """Whether a setting's dynamics contract: its largest Lyapunov exponent below 0 where
    the rows record it (what predicts Newton's cost), else ρ below ``contracting`` (the
    default init counts as contracting); and the words that say which."""
    lam = numeric(g, "lyapunov").dropna()
    if len(lam):
        return float(lam.mean()) < 0, f"λ = {lam.mean():+.3f}"
    if np.isfinite(rho):
        return rho < r.contracting, f"ρ = {rho:g}, no λ recorded"
    return True, "default init, no λ recorded"


def depth_parts(
    rows: pd.DataFrame, solver: str, r: Rules
) -> tuple[list[Part], list[str], list[pd.DataFrame], list[float]]:
    """Per setting of ``solver``: the growth of its iterations k with τ (converged runs
    only), bounded when the 95% CI of the log-log slope lies below ``growth`` over τ
    spanning ``growth_tau_ratio``, and k·scan_depth(τ) < τ at the largest τ."""
    ok = ok_rows(rows).copy()
    ok["rho"] = numeric(ok, "rho")
    ok["iterations"] = numeric(ok, "iterations")
    d = ok[(ok["model"] == "elman") & (ok["strategy"] == solver) & ok["iterations"].notna()]
    parts, skipped, used, ks = [], [], [], []
    for key, g in d.groupby(DEER_KEYS, dropna=False, sort=True):
        row = dict(zip(DEER_KEYS, key))
        where = setting_text(row, ("strategy_label", "hidden", "batch", "rho"))
        yes, dynamics = contracting(g, row["rho"], r)
        done = converged(g)
        censored = g[~done]
        if not yes:
            skipped.append(
                f"{where} ({dynamics}: not contracting, outside the claim; "
                f"{len(censored)} of {len(g)} runs stopped unconverged, iterations "
                f"up to {g['iterations'].max():g})"
            )
            continue
        fitted = g[done]
        capped = ", ".join(
            f"τ={t:g}: k > {k:g}" for t, k in zip(censored["tau"], censored["iterations"])
        )
        why = law_gate(fitted, r, r.growth_tau_ratio)
        if why:
            skipped.append(
                f"{where} ({dynamics}; {why}" + (f"; censored {capped}" if capped else "") + ")"
            )
            continue
        f = power_fit(fitted["tau"], fitted["iterations"])
        assert f is not None  # the gate asks for three distinct τ
        top = fitted[fitted["tau"] == fitted["tau"].max()]
        tau_max = int(top["tau"].max())
        depth = float(top["iterations"].max()) * scan_depth(tau_max)
        used.append(g)
        ks.append(float(g["iterations"].max()))
        text = (
            f"{where} ({dynamics}): iterations {fitted['iterations'].min():g}–"
            f"{fitted['iterations'].max():g} over τ {fitted['tau'].min():g}–{tau_max:g}, "
            f"growth τ^{f.exponent:.2f} [{f.ci_low:.2f}, {f.ci_high:.2f}], depth "
            f"k·(2⌈log₂τ⌉ − 1) = {depth:g} vs τ = {tau_max}"
        )
        if capped:
            text += f"; censored (stopped at the cap unconverged): {capped}"
        if f.ci_low > r.growth or depth >= tau_max:
            parts.append((FAILS, text))
        elif f.ci_high < r.growth and depth < tau_max and not capped:
            parts.append((HOLDS, text))
        else:
            parts.append((NOT_MEASURED, text))
    return parts, skipped, used, ks


def solver_depth(solver: str) -> Callable[[pd.DataFrame, Rules], Decision]:
    """The decision of one solver's depth claim."""

    def decide(rows: pd.DataFrame, r: Rules) -> Decision:
        parts, skipped, used, ks = depth_parts(rows, solver, r)
        if not parts and not skipped:
            return Decision(NOT_MEASURED, evidence=f"no Elman {solver} rows with iterations")
        verdict = rules.every_setting(parts)
        finding = ""
        if parts:
            finding = (
                f"{solver}'s Newton iterations "
                + (
                    "stay bounded as τ grows: its depth is O(k log τ)"
                    if verdict == HOLDS
                    else "were not shown to stay bounded"
                )
                + f" (at most {max(ks):g} iterations)."
            )
        return decision(
            verdict,
            max(ks, default=math.nan),
            "Newton iterations (largest)",
            parts,
            skipped,
            used,
            finding,
        )

    return decide


def deer_depth(rows: pd.DataFrame, r: Rules) -> Decision:
    """The depth can be cut when some exact solver cuts it in every setting it ran."""
    parts, used = [], []
    for solver in NEWTON_SOLVERS:
        d = solver_depth(solver)(rows, r)
        if d.verdict != NOT_MEASURED or "no Elman" not in d.evidence:
            parts.append((d.verdict, f"{solver}: {d.verdict}"))
        if d.cells is not None:
            used.append(d.cells)
    if not parts:
        return Decision(NOT_MEASURED, evidence="no Elman deer / quasi_deer rows with iterations")
    verdict = some_setting(parts)
    cutting = [t.split(":")[0] for v, t in parts if v == HOLDS]
    finding = (
        f"Parallel Newton iterations cut Elman's sequential depth to O(k log τ) "
        f"({', '.join(cutting)})."
        if cutting
        else "No solver was shown to cut Elman's sequential depth to O(k log τ)."
    )
    return decision(verdict, math.nan, "", parts, [], used, finding)


def deer_faster(rows: pd.DataFrame, r: Rules) -> Decision:
    def deer(x: pd.DataFrame) -> pd.Series:
        return (x["model"] == "elman") & x["strategy"].isin(NEWTON_SOLVERS)

    t = timing_cells(rows)
    wrong = t[deer(t) & ~converged(t)]
    # a solve stopped at max_iter short of the answer is fast and wrong: no evidence of speed
    skipped = list(
        dict.fromkeys(
            f"{setting_text(x, ('strategy_label', 'batch', 'hidden', 'threads', 'tau', 'rho'))} "
            + (
                f"(not converged after {x['iterations']:g} iterations: "
                if np.isfinite(x["iterations"])
                else "(no convergence recorded: "
            )
            + "a wrong answer's speed is not evidence)"
            for _, x in wrong.iterrows()
        )
    )
    comps = against(rows, lambda x: deer(x) & converged(x), SEQUENTIAL_BPTT, r)
    if not comps:
        return Decision(
            NOT_MEASURED,
            evidence=evidence_text(
                [], skipped + ["no converged deer / quasi_deer cell timed beside BPTT"]
            ),
        )
    parts, more, used, decided = on_the_device(
        comps, r, lambda ci: above_verdict(ci, r.faster), some_setting, "BPTT"
    )
    verdict = some_setting(parts)
    best = max(decided, key=lambda d: d[0]["ci"].estimate, default=None)
    finding = ""
    if best is not None:
        c = best[0]
        finding = (
            f"The best parallel-in-time solver ({c['row']['strategy_label']}) runs "
            f"{ci_text(c['ci'])} the speed of the fastest BPTT ({c['base']}) on "
            f"{c['row']['threads']:g} cores at H = {c['row']['hidden']:g}, "
            f"τ = {c['row']['tau']:g}."
        )
    return device_decision(
        verdict,
        decided,
        max,
        "× speedup over the fastest BPTT (largest)",
        parts,
        rules.contended_note(rows) + skipped + more,
        used,
        finding,
    )
