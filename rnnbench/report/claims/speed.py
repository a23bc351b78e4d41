"""Decisions about time and parallel hardware: the sequential chain on more cores,
teacher forcing on more hardware, and teacher forcing against the best BPTT on the device
at its best.  (The claims' texts: :mod:`.catalogue`; the O(τ) laws: :mod:`.laws`.)"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from rnnbench.facts import (
    BY_CONSTRUCTION,
    COMPILED_BPTT,
    COMPUTATION,
    FAILS,
    HOLDS,
    NEWTON_SOLVERS,
    NOT_MEASURED,
    SEQUENTIAL_BPTT,
)
from rnnbench.report import tidy
from rnnbench.report.claims import power
from rnnbench.report.claims.rules import (
    Decision,
    Part,
    Rules,
    above_verdict,
    baseline_key,
    below_verdict,
    ci_text,
    column,
    contended_note,
    decision,
    every_setting,
    evidence_text,
    is_tf,
    median_of,
    numeric,
    replicate_ci,
    setting_text,
    some_setting,
    speedup,
    timing_cells,
)
from rnnbench.report.tables import ok_rows

# --------------------------------------------------------------------------- the chain


HW_KEYS = list(COMPUTATION)
THREADS_ONE = json.dumps({"threads": 1})


def chain_parts(
    rows: pd.DataFrame, r: Rules
) -> tuple[list[Part], list[str], list[pd.DataFrame], list[Any]]:
    """Each sequential BPTT timed on P cores against 1 (baseline {threads: 1}), with its
    chain and its control paired too: per replicate the chain's speedup over one step's
    operations' speedup; the interval over replicates."""
    t = timing_cells(rows).copy()
    t["baseline_key"] = baseline_key(t)
    t = t[
        (t["model"].isin(["elman", "single_output"]))
        & (t["threads"] > 1)
        & (t["baseline_key"] == THREADS_ONE)
    ]
    t["chain_x"] = column(t, "chain_speedup_samples", None).map(median_of)
    t["op_x"] = column(t, "op_speedup_samples", None).map(median_of)
    t["beyond_x"] = [
        _by_round(c, o) for c, o in zip(t["chain_speedup_samples"], t["op_speedup_samples"])
    ]
    t = t[t["chain_x"].notna() & t["op_x"].notna()]
    parts, skipped, used, values = [], [], [], []
    for key, g in t.groupby(HW_KEYS, dropna=False, sort=True):
        row = dict(zip(HW_KEYS, key))
        where = (
            f"{row['model']} + {row['strategy_label']}, {row['threads']:g} threads vs 1 "
            f"(τ={row['tau']:g}, B={row['batch']:g}, H={row['hidden']:g})"
        )
        beyond, how = replicate_ci(g["beyond_x"], r)
        if beyond is None:
            skipped.append(f"{where}: {how}")
            continue
        chain, _ = replicate_ci(g["chain_x"], r)
        ops, _ = replicate_ci(g["op_x"], r)
        step, _ = replicate_ci(numeric(g, "speedup_median"), r)
        used.append(g)
        values.append((beyond, chain, ops, step, row))
        text = (
            f"{where}: the chain {ci_text(chain) if chain else 'n/a'}, one step's "
            f"operations {ci_text(ops) if ops else 'n/a'}: the chain beyond its steps "
            f"{ci_text(beyond)} ({how}); the whole step, context only: "
            f"{ci_text(step) if step else 'n/a'}"
        )
        parts.append((below_verdict(beyond, r.no_gain), text))
    return parts, skipped, used, values


def _by_round(chain: Any, ops: Any) -> float:
    """A replicate's chain speedup over its control's: the median over rounds of their
    ratio (the k-th samples of both lists come from one round:
    :func:`rnnbench.harness.single.time_chain`), else the ratio of their medians."""
    c, o = tidy.as_list(chain), tidy.as_list(ops)
    if len(c) == len(o) and len(c) > 0:
        return median_of([a / b for a, b in zip(c, o) if b])
    return median_of(c) / median_of(o)


def time_split_parts(
    rows: pd.DataFrame, r: Rules
) -> tuple[list[Part], list[str], list[pd.DataFrame]]:
    """Elman split along time (scan_bptt, deer, quasi_deer) over N workers against 1: a
    gain means parallel hardware cut the sequential chain."""
    ok = ok_rows(rows)
    ok = ok[ok["train_steps"].fillna(0) == 0]
    split = ok[
        (ok["model"] == "elman")
        & ok["strategy"].isin(("scan_bptt", *NEWTON_SOLVERS))
        & (ok["split"] == "time")
        & (ok["workers"] > 1)
    ]
    parts, skipped, used = [], [], []
    for key, g in split.groupby(HW_KEYS, dropna=False, sort=True):
        row = dict(zip(HW_KEYS, key))
        one = ok[(ok["workers"] == 1) & (ok["split"] == "time")]
        for k in HW_KEYS:
            if k not in ("threads", "workers", "split"):
                one = one[one[k] == row[k]]
        ci, how = speedup(g, one, r)
        where = (
            f"elman + {row['strategy_label']} split along time, {row['workers']:g} "
            f"workers vs 1 (τ={row['tau']:g}, B={row['batch']:g}, H={row['hidden']:g})"
        )
        if ci is None:
            skipped.append(f"{where}: {how}")
            continue
        used.append(pd.concat([g, one]))
        parts.append((below_verdict(ci, r.no_gain), f"{where}: {ci_text(ci)} ({how})"))
    return parts, skipped, used


def bptt_hardware(rows: pd.DataFrame, r: Rules) -> Decision:
    parts, skipped, used, values = chain_parts(rows, r)
    split_parts, split_skipped, split_used = time_split_parts(rows, r)
    parts, skipped, used = parts + split_parts, skipped + split_skipped, used + split_used
    if not parts and not skipped:
        return Decision(
            NOT_MEASURED,
            evidence=evidence_text(
                [],
                contended_note(rows)
                + [
                    "no sequential BPTT timed with its chain on all cores against 1 thread, and no "
                    "Elman split along time over workers against 1 worker"
                ],
            ),
        )
    verdict = every_setting(parts)
    finding = ""
    if values:
        beyond, chain, ops, step, row = max(values, key=lambda v: v[0].estimate)
        finding = (
            f"On {row['threads']:g} cores the sequential chain of "
            f"{row['strategy_label']} gains {ci_text(chain) if chain else 'n/a'} and one "
            f"step's operations {ci_text(ops) if ops else 'n/a'} (τ = {row['tau']:g}, "
            f"B = {row['batch']:g}): more cores speed up each step"
            + (", not the O(τ) chain of steps" if verdict == HOLDS else "")
            + (f"; the whole training step gains {ci_text(step)}" if step else "")
            + "."
        )
    best = max((v[0].estimate for v in values), default=math.nan)
    return decision(
        verdict,
        best,
        "× the chain's speedup over its steps' (largest)",
        parts,
        contended_note(rows) + skipped,
        used,
        finding,
    )


# --------------------------------------------------------------------------- more hardware


def _hardware_parts(
    rows: pd.DataFrame, r: Rules, select: Callable[[pd.DataFrame], pd.DataFrame]
) -> list[dict[str, Any]]:
    """Every comparison of more hardware against less for the rows ``select`` picks: all
    cores against one (baseline {threads: 1}), N workers against one (baseline
    {workers: 1}, or the 1-worker cell of the same harness)."""
    ok = ok_rows(rows)
    ok = ok[
        (ok["train_steps"].fillna(0) == 0)
        & ~column(ok, "contended", False).fillna(False).astype(bool)
    ].copy()
    ok["baseline_key"] = baseline_key(ok)
    sel = ok[select(ok)]
    out = []
    cores = sel[(sel["threads"] > 1) & (sel["baseline_key"] == THREADS_ONE)]
    for key, g in cores.groupby(HW_KEYS, dropna=False, sort=True):
        row = dict(zip(HW_KEYS, key))
        ci, how = speedup(g, None, r)
        out.append(
            {
                "kind": "cores",
                "row": row,
                "ci": ci,
                "how": how,
                "rows": g,
                "what": f"{row['threads']:g} threads vs 1",
            }
        )
    group = sel[(sel["split"] != "none") & (sel["workers"] > 1)]
    for key, g in group.groupby(HW_KEYS, dropna=False, sort=True):
        row = dict(zip(HW_KEYS, key))
        one = ok[(ok["workers"] == 1) & (ok["split"] == row["split"])]
        for k in HW_KEYS:
            if k not in ("workers", "split"):
                one = one[one[k] == row[k]]
        ci, how = speedup(g, one, r)
        out.append(
            {
                "kind": "workers",
                "row": row,
                "ci": ci,
                "how": how,
                "rows": pd.concat([g, one]),
                "what": f"{row['workers']:g} workers vs 1, split {row['split']}",
            }
        )
    return out


def _part_text(p: dict[str, Any]) -> str:
    row = p["row"]
    head = (
        f"{row['model']} + {row['strategy_label']}, {p['what']} (τ={row['tau']:g}, "
        f"B={row['batch']:g}, H={row['hidden']:g})"
    )
    return f"{head}: {p['how']}" if p["ci"] is None else f"{head}: {ci_text(p['ci'])} ({p['how']})"


def tf_hardware(rows: pd.DataFrame, r: Rules) -> Decision:
    ps = _hardware_parts(rows, r, lambda x: is_tf(x) & x["split"].isin(["none", "time"]))
    if not ps:
        return Decision(
            NOT_MEASURED,
            evidence="no Jordan + teacher-forcing cells split along "
            "time over workers, nor on all cores",
        )
    parts, skipped, used = [], [], []
    for p in ps:
        if p["ci"] is None:
            skipped.append(_part_text(p))
            continue
        used.append(p["rows"])
        parts.append((above_verdict(p["ci"], r.no_gain), _part_text(p)))
    known = [p for p in ps if p["ci"] is not None]
    best = max(known, key=lambda p: p["ci"].estimate) if known else None
    verdict = some_setting(parts)
    finding = (
        ""
        if best is None
        else (
            f"Teacher forcing gains {ci_text(best['ci'])} from {best['what']} at "
            f"τ = {best['row']['tau']:g}, B = {best['row']['batch']:g}: its time steps "
            + ("do run in parallel." if verdict == HOLDS else "did not measurably run in parallel.")
        )
    )
    return decision(
        verdict,
        best["ci"].estimate if best else math.nan,
        "× speedup (largest)",
        parts,
        skipped,
        used,
        finding,
    )


# --------------------------------------------------------------------------- one device

SPEED_KEYS = ["task_label", "batch", "hidden", "device", "threads", "dtype"]


def against(
    rows: pd.DataFrame, new_mask: Any, base_strategies: Any, r: Rules
) -> list[dict[str, Any]]:
    """Per setting and τ: the speedup of the ``new_mask`` rows over each Elman baseline in
    ``base_strategies`` (paired rows that name it as their baseline, else the baseline's
    own cells), over replicates."""
    t = timing_cells(rows).copy()
    t["baseline_key"] = baseline_key(t)
    new = t[new_mask(t)]
    keys = SPEED_KEYS + ["tau"]
    own = t[(t["model"] == "elman") & (t["baseline_key"] == "")]
    # each baseline's own cells by (strategy, setting, τ); a key with a missing value
    # matches nothing (dropna), as an equality test would
    cells = dict(list(own.groupby(["strategy"] + keys, sort=False)))
    out = []
    for key, g in new.groupby(keys + ["strategy_label"], dropna=False, sort=True):
        row = dict(zip(keys + ["strategy_label"], key))
        named = g["baseline_key"].map(_named_baseline)
        for base in base_strategies:
            b = cells.get((base, *key[:-1]), own.iloc[:0])
            paired = g[named == base]
            plain = g[g["baseline_key"] == ""]
            if paired.empty and (plain.empty or b.empty):
                continue
            ci, how = speedup(paired, None, r) if len(paired) else speedup(plain, b, r)
            out.append(
                {
                    "row": row,
                    "base": base,
                    "ci": ci,
                    "how": how,
                    "rows": pd.concat([paired if len(paired) else plain, b]),
                }
            )
    return out


def _named_baseline(key: str) -> str | None:
    """The Elman strategy a paired cell's baseline names (None: no baseline, or another
    model's)."""
    opts = json.loads(key) if key else {}
    return opts.get("strategy") if key and opts.get("model", "elman") == "elman" else None


def fastest_base(comps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The comparison against the fastest baseline measured: the smallest speedup over it
    (None when no comparison has an interval)."""
    known = [c for c in comps if c["ci"] is not None]
    return min(known, key=lambda c: c["ci"].estimate) if known else None


def device_decision(
    verdict: str,
    decided: list[tuple[dict[str, Any], str]],
    extreme: Callable[[list[float]], float],
    unit: str,
    parts: list[Part],
    skipped: list[str],
    used: list[pd.DataFrame],
    finding: str,
    power: float = math.nan,
    power_text: str = "",
) -> Decision:
    """The :class:`Decision` of a rule judged :func:`on_the_device`: its value is the
    ``extreme`` (``min`` or ``max``) of the decided settings' ratio estimates."""
    values = [c["ci"].estimate for c, _ in decided]
    value = extreme(values) if values else math.nan
    return decision(verdict, value, unit, parts, skipped, used, finding, power, power_text)


def on_the_device(
    comps: list[dict[str, Any]],
    r: Rules,
    verdict_of: Callable[..., str],
    quantify: Callable[..., Any],
    label: str,
) -> tuple[list[Part], list[str], list[pd.DataFrame], list[tuple[dict[str, Any], str]]]:
    """Judge ``comps`` (of :func:`against`) at the largest τ of each setting, against the
    fastest baseline: on more than one thread they decide; on one thread they are shown
    as diagnostics (one thread is not parallel hardware: it compares the two models' work)."""
    by: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for c in comps:
        by.setdefault(tuple(str(c["row"][k]) for k in SPEED_KEYS + ["strategy_label"]), []).append(
            c
        )
    parts, skipped, used, decided = [], [], [], []
    diagnostics = []
    for _, group in sorted(by.items()):
        top = max(c["row"]["tau"] for c in group)
        at = [c for c in group if c["row"]["tau"] == top]
        where = setting_text(
            at[0]["row"], ("strategy_label", "task_label", "batch", "hidden", "threads", "tau")
        )
        best = fastest_base(at)
        if best is None:
            skipped.append(f"{where} ({at[0]['how']})")
            continue
        others = ", ".join(
            f"vs {c['base']} {ci_text(c['ci'])}"
            for c in at
            if c["ci"] is not None and c is not best
        )
        text = (
            f"{where}: vs the fastest {label} ({best['base']}) {ci_text(best['ci'])} "
            f"({best['how']})" + (f"; {others}" if others else "")
        )
        if at[0]["row"]["threads"] <= 1:
            diagnostics.append(text)
            continue
        verdict = verdict_of(best["ci"])
        used.append(best["rows"])
        parts.append((verdict, text))
        decided.append((best, verdict))
    if diagnostics:
        skipped.append(
            "diagnostics on 1 thread (one thread is not parallel hardware: it "
            "compares the work of the two models, deciding nothing): " + "; ".join(diagnostics)
        )
    return parts, skipped, used, decided


def _speed_power(decided: list[tuple[dict[str, Any], str]], threshold: float) -> tuple[float, str]:
    """The least power among the judged settings, at their replicates' spread."""
    out = []
    for c, _ in decided:
        vals = numeric(c["rows"], "speedup_median").dropna()
        noise = power.spread([vals.tolist()])
        p = power.ratio_power(
            len(vals),
            c["ci"].estimate,
            noise,
            lambda lo, hi: "x" if lo > threshold or hi <= threshold else None,
        )
        if np.isfinite(p):
            out.append((p, noise))
    if not out:
        return math.nan, ""
    p, noise = min(out)
    return p, power.text(p, noise, "an effect the size of the one estimated")


def tf_faster(rows: pd.DataFrame, r: Rules) -> Decision:
    comps = against(rows, is_tf, SEQUENTIAL_BPTT, r)
    if not comps:
        return Decision(
            NOT_MEASURED, evidence="no τ at which both teacher forcing and BPTT were timed"
        )
    parts, skipped, used, decided = on_the_device(
        comps, r, lambda ci: above_verdict(ci, r.faster), every_setting, "BPTT"
    )
    if not parts and not skipped:
        skipped.append("no setting on more than one thread: one thread decides nothing")
    verdict = every_setting(parts)
    p, ptext = _speed_power(decided, r.faster)
    finding = ""
    if decided:
        c, _ = min(decided, key=lambda d: d[0]["ci"].estimate)
        row = c["row"]
        finding = (
            f"Teacher forcing on {row['threads']:g} cores is {ci_text(c['ci'])} "
            f"{'faster' if c['ci'].estimate > 1 else 'as fast as or slower'} than the "
            f"fastest BPTT ({c['base']}) at τ = {row['tau']:g}, B = {row['batch']:g}, "
            f"H = {row['hidden']:g}."
        )
    return device_decision(
        verdict,
        decided,
        min,
        "× speedup over the fastest BPTT (smallest)",
        parts,
        contended_note(rows) + skipped,
        used,
        finding,
        p,
        ptext,
    )


def tf_not_overhead(rows: pd.DataFrame, r: Rules) -> Decision:
    comps = against(rows, is_tf, ("bptt", COMPILED_BPTT), r)
    by: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = {}
    for c in comps:
        row = c["row"]
        by.setdefault(tuple(str(row[k]) for k in SPEED_KEYS + ["tau", "strategy_label"]), {})[
            c["base"]
        ] = c
    parts, skipped, used, shares, decided = [], [], [], [], []
    for _, pair in sorted(by.items()):
        row = next(iter(pair.values()))["row"]
        where = setting_text(
            row, ("strategy_label", "task_label", "batch", "hidden", "threads", "tau")
        )
        comp, loop = pair.get(COMPILED_BPTT), pair.get("bptt")
        if comp is None or comp["ci"] is None:
            if loop is not None:
                skipped.append(
                    f"{where} (no bptt_compiled beside the framework loop"
                    + (f": {comp['how']}" if comp else "")
                    + ")"
                )
            continue
        text = f"{where}: vs compiled loop {ci_text(comp['ci'])}"
        if loop is not None and loop["ci"] is not None:
            x, y = loop["ci"].estimate, comp["ci"].estimate
            text += f", vs framework loop {ci_text(loop['ci'])}"
            if x > 1:
                share = min(max(math.log(x / y) / math.log(x), 0.0), 1.0) if y > 0 else 1.0
                shares.append(share)
                text += (
                    f" — of the {x:.3g}× a factor {x / y:.3g} is the framework loop's "
                    f"per-step overhead and {y:.3g}× remains against compiled code: "
                    f"{100 * share:.0f}% overhead in log terms"
                )
        if row["threads"] <= 1:
            skipped.append(f"diagnostic on 1 thread (deciding nothing): {text}")
            continue
        used.append(comp["rows"])
        verdict = above_verdict(comp["ci"], r.faster)
        parts.append((verdict, text))
        decided.append((comp, verdict))
    if not parts and not skipped:
        return Decision(
            NOT_MEASURED,
            evidence="no teacher-forcing cell timed beside "
            "bptt_compiled (the compiled sequential loop)",
        )
    verdict = every_setting(parts)
    finding = ""
    if decided:
        c, _ = min(decided, key=lambda d: d[0]["ci"].estimate)
        finding = (
            f"Against the compiled loop, with no framework overhead left, teacher "
            f"forcing on {c['row']['threads']:g} cores is {ci_text(c['ci'])} as fast "
            f"(τ = {c['row']['tau']:g}, B = {c['row']['batch']:g})."
        )
    p, ptext = _speed_power(decided, r.faster)
    return decision(
        verdict,
        max(shares) if shares else math.nan,
        "overhead share of the framework-loop speedup (largest)",
        parts,
        skipped,
        used,
        finding,
        p,
        ptext,
    )


# --------------------------------------------------------------------------- depth


def tf_depth(rows: pd.DataFrame, r: Rules) -> Decision:
    ok = ok_rows(rows)
    used = ok[is_tf(ok) & ok["depth"].notna()]
    if used.empty:
        return Decision(
            NOT_MEASURED, evidence="no Jordan + teacher-forcing rows with a recorded depth"
        )
    verdict = BY_CONSTRUCTION if (used["depth"] == 1).all() else FAILS
    bptt = ok[(ok["model"] == "elman") & (ok["strategy"] == "bptt") & ok["depth"].notna()]
    extra = ""
    if len(bptt):
        big = bptt.loc[bptt["tau"].idxmax()]
        extra = f"; Elman + bptt: depth {big['depth']:g} at τ={big['tau']:g}"
    evidence = (
        "by construction (from the strategy registry), not measured: depth "
        f"{', '.join(f'{d:g}' for d in sorted(used['depth'].unique()))} over "
        f"τ {used['tau'].min():g}–{used['tau'].max():g}{extra}"
    )
    finding = (
        "Teacher forcing's steps have no sequential dependency: depth 1 at every τ, "
        "by construction."
    )
    return Decision(verdict, used["depth"].max(), "sequential steps", evidence, used, finding)
