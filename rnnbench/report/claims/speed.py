"""Claims about time, memory and parallel hardware: the O(τ) laws, more workers and
cores, teacher forcing against BPTT on one device, and parallel-in-time BPTT (DEER).
Each :class:`~.rules.Rule` stands beside the function that decides it."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from rnnbench.facts import (
    BY_CONSTRUCTION,
    FAILS,
    HOLDS,
    NEWTON_SOLVERS,
    NOT_MEASURED,
    SEQUENTIAL_BPTT,
    scan_depth,
)
from rnnbench.report.claims.rules import (
    Decision,
    Rule,
    Rules,
    above_verdict,
    baseline_key,
    ci_text,
    column,
    decision,
    every_setting,
    evidence_text,
    fmt,
    is_tf,
    law_gate,
    numeric,
    setting_text,
    some_setting,
    speedup,
    timing_cells,
    truth,
)
from rnnbench.report.tables import ok_rows
from rnnbench.stats import overhead_fit, power_fit

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


def linear_law(rows: pd.DataFrame, measure: str, strategies, rules: Rules) -> Decision:
    """Per setting: T = a + b·τ + c·τ² over the timing cells; linear when the τ² share
    at τ_max lies within ± the band and a is not below 0; in every setting."""
    t = timing_cells(rows)
    t = t[(t["model"] == "elman") & t["strategy"].isin(strategies) & t[measure].notna()]
    skipped = []
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
    if t.empty:
        return Decision(
            NOT_MEASURED,
            evidence=evidence_text(
                [], skipped + [f"no Elman {'/'.join(strategies)} timing cells with {measure}"]
            ),
        )
    band = rules.linear_band
    parts, used, shares = [], [], []
    for key, g in t.groupby(LAW_KEYS, dropna=False, sort=True):
        row = dict(zip(LAW_KEYS, key))
        where = setting_text(row, ("strategy_label", "task_label", "batch", "hidden", "threads"))
        why = law_gate(g, rules)
        f = None if why else overhead_fit(g["tau"], g[measure])
        if f is None:
            skipped.append(f"{where} ({why or 'no fit'})")
            continue
        used.append(g)
        shares.append(f.quad_share)
        # a ≥ 0 not rejected (to 1% of the smallest time: an exact count has no noise)
        if f.quad_low >= -band and f.quad_high <= band and f.a_high >= -0.01 * f.y_min:
            verdict = HOLDS
        elif f.quad_low > band or f.quad_high < -band:
            verdict = FAILS
        else:
            verdict = NOT_MEASURED
        parts.append(
            (
                verdict,
                f"{where}: τ² share {f.quad_share:+.3f} "
                f"[{f.quad_low:+.3f}, {f.quad_high:+.3f}], fixed cost a = "
                f"{fmt(f.a)} [{fmt(f.a_low)}, {fmt(f.a_high)}], marginal exponent "
                f"{f.marginal_k:.2f} at τ={f.tau_max:g} (τ {f.tau_min:g}–"
                f"{f.tau_max:g}, {f.n_points} cells)",
            )
        )
    verdict = every_setting(parts)
    value = max(shares, key=abs) if shares else math.nan
    return decision(verdict, value, "τ² share of T(τ_max), largest", parts, skipped, used)


def _law_how(what: str):
    return lambda r: (
        f"{what} of Elman BPTT ({', '.join(SEQUENTIAL_BPTT)}) per setting, fitted as "
        f"T = a + b·τ + c·τ² (weights 1/T²): linear when the τ² term's share of "
        f"T(τ_max) has its 95% CI inside ±{r.linear_band} and a ≥ 0 is not "
        f"rejected (the 95% CI of a in T = a + b·τ reaches −1% of the smallest "
        f"T); not linear when the CI lies outside the band; holds in every "
        "judged setting"
    )


def _law_gate_text(r: Rules) -> str:
    return (
        f"timing cells only (train_steps = 0, one process; for time, cells that ran "
        f"alone on their node: --exclusive); per setting ≥ {r.min_taus} distinct τ "
        f"spanning ≥ {r.min_tau_ratio:g}× and ≥ {r.min_cells} cells"
    )


BPTT_TIME = Rule(
    "bptt_time_linear",
    "chapter",
    "BPTT's run time is O(τ): it grows linearly with the sequence length.",
    _law_how("step time"),
    _law_gate_text,
    lambda rows, r: linear_law(rows, "step_ms_median", SEQUENTIAL_BPTT, r),
)


BPTT_MEMORY = Rule(
    "bptt_memory_linear",
    "chapter",
    "BPTT's memory is O(τ): the states of every step are kept for the backward pass.",
    _law_how("saved bytes"),
    _law_gate_text,
    lambda rows, r: linear_law(rows, "saved_bytes", SEQUENTIAL_BPTT, r),
)


# --------------------------------------------------------------------------- more hardware


HW_KEYS = [
    "model",
    "strategy_label",
    "task_label",
    "tau",
    "batch",
    "hidden",
    "device",
    "threads",
    "workers",
    "split",
    "dtype",
]


def _hardware_parts(rows: pd.DataFrame, rules: Rules, models_strategies) -> list[dict]:
    """Every comparison of more hardware against less: all cores against one
    (``baseline`` {threads: 1}) and N workers against one (``baseline`` {workers: 1}, or
    the 1-worker cell of the same harness), for the rows ``models_strategies`` selects."""
    ok = ok_rows(rows)
    ok = ok[ok["train_steps"].fillna(0) == 0].copy()
    ok["baseline_key"] = baseline_key(ok)
    sel = ok[models_strategies(ok)]
    out = []
    cores = sel[(sel["threads"] > 1) & (sel["baseline_key"] == json.dumps({"threads": 1}))]
    for key, g in cores.groupby(HW_KEYS, dropna=False, sort=True):
        row = dict(zip(HW_KEYS, key))
        ci, how = speedup(g, None, rules)
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
        for k in (
            "model",
            "strategy_label",
            "task_label",
            "tau",
            "batch",
            "hidden",
            "device",
            "threads",
            "dtype",
        ):
            one = one[one[k] == row[k]]
        ci, how = speedup(g, one, rules)
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


def _part_text(p) -> str:
    r = p["row"]
    head = (
        f"{r['model']} + {r['strategy_label']}, {p['what']} (τ={r['tau']:g}, "
        f"B={r['batch']:g}, H={r['hidden']:g})"
    )
    if p["ci"] is None:
        return f"{head}: {p['how']}"
    return f"{head}: {ci_text(p['ci'])} ({p['how']})"


def bptt_hardware(rows: pd.DataFrame, r: Rules) -> Decision:
    def bptt(x):
        elman = (x["model"] == "elman") & x["strategy"].isin(
            SEQUENTIAL_BPTT + ("scan_bptt",) + NEWTON_SOLVERS
        )
        # Elman split by batch at B < workers idles workers by construction: no evidence.
        return elman & ~((x["split"] == "batch") & (x["batch"] < x["workers"]))

    parts_bptt = _hardware_parts(rows, r, bptt)
    controls = [p for p in _hardware_parts(rows, r, is_tf) if p["ci"] is not None]
    ok = ok_rows(rows)
    batch_split = ok[
        (ok["model"] == "elman") & (ok["split"] == "batch") & (ok["batch"] < ok["workers"])
    ]
    skipped = []
    if len(batch_split):
        skipped.append(
            f"{len(batch_split)} Elman cell(s) split by batch with fewer sequences "
            "than workers (idle workers by construction, not evidence)"
        )
    if not parts_bptt:
        return Decision(
            NOT_MEASURED,
            evidence=evidence_text(
                [],
                skipped
                + [
                    "no Elman BPTT cells on all cores against 1 thread, nor split along time over "
                    "workers against 1 worker"
                ],
            ),
        )
    parts, used = [], []
    for p in parts_bptt:
        if p["ci"] is None:
            skipped.append(_part_text(p))
            continue
        used.append(p["rows"])
        if p["ci"].above(r.no_gain):
            parts.append((FAILS, _part_text(p) + f": more {p['kind']} helped BPTT"))
            continue
        same = [
            c
            for c in controls
            if c["kind"] == p["kind"]
            and c["row"]["device"] == p["row"]["device"]
            and (c["row"]["threads"] if p["kind"] == "cores" else c["row"]["workers"])
            == (p["row"]["threads"] if p["kind"] == "cores" else p["row"]["workers"])
        ]
        best = max(same, key=lambda c: c["ci"].low) if same else None
        if best is not None:
            used.append(best["rows"])
        control = (
            f"; control Jordan + teacher forcing {best['what']}: {ci_text(best['ci'])}"
            if best is not None
            else "; no teacher-forcing control on this hardware"
        )
        if p["ci"].high <= r.no_gain and best is not None and best["ci"].above(r.no_gain):
            parts.append((HOLDS, _part_text(p) + control))
        else:
            why = "" if p["ci"].high <= r.no_gain else f" (interval straddles {r.no_gain}×)"
            parts.append(
                (
                    NOT_MEASURED,
                    _part_text(p)
                    + why
                    + control
                    + (
                        ""
                        if why or (best is not None and best["ci"].above(r.no_gain))
                        else " (the control shows no gain: this hardware could not show one)"
                    ),
                )
            )
    verdict = every_setting(parts)
    best = max((p["ci"].estimate for p in parts_bptt if p["ci"] is not None), default=math.nan)
    return decision(verdict, best, "× speedup (largest)", parts, skipped, used)


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
        verdict = above_verdict(p["ci"], r.no_gain)
        parts.append((verdict, _part_text(p)))
    best = max((p["ci"].estimate for p in ps if p["ci"] is not None), default=math.nan)
    return decision(some_setting(parts), best, "× speedup (largest)", parts, skipped, used)


def _hw_gate(r: Rules) -> str:
    return (
        f"≥ {r.min_pairs} paired block ratios per cell (baseline {{threads: 1}} or "
        "{workers: 1} timed in the same process or worker group), or ≥ 2 seeds of both "
        "sides; timing cells only"
    )


BPTT_HARDWARE = Rule(
    "bptt_not_parallel",
    "chapter",
    "BPTT's O(τ) time cannot be reduced by parallel hardware (more workers or more cores): "
    "the forward graph is inherently sequential.",
    lambda r: (
        f"Elman BPTT on all cores against 1 thread, and Elman split along time "
        f"(scan_bptt, deer) over N workers against 1: holds when in every "
        f"comparison the speedup's 95% CI lies at or below {r.no_gain}× while "
        f"Jordan + teacher forcing on the same hardware (the positive control) "
        f"gains above {r.no_gain}×; does not hold when a BPTT speedup's CI lies "
        f"above {r.no_gain}×. Elman split by batch with fewer sequences than "
        f"workers is left out (it cannot gain by construction)"
    ),
    _hw_gate,
    bptt_hardware,
)


TF_HARDWARE = Rule(
    "tf_parallel_workers",
    "chapter",
    "With teacher forcing the time steps can be computed in parallel: more workers or "
    "more cores, less time.",
    lambda r: (
        f"Jordan + teacher forcing split along time over N workers against 1, and "
        f"on all cores against 1 thread: holds when in some comparison the "
        f"speedup's 95% CI lies above {r.no_gain}×; does not hold when in every "
        f"comparison it lies at or below"
    ),
    _hw_gate,
    tf_hardware,
)


# --------------------------------------------------------------------------- one device


SPEED_KEYS = ["task_label", "batch", "hidden", "device", "threads", "dtype"]


def _against(rows: pd.DataFrame, new_mask, base_strategies, r: Rules) -> list[dict]:
    """Per setting and τ: the speedup of the ``new_mask`` rows over each Elman baseline in
    ``base_strategies`` (paired blocks when the row names it as ``baseline``, else the
    baseline's own cells over seeds)."""
    t = timing_cells(rows).copy()
    t["baseline_key"] = baseline_key(t)
    new = t[new_mask(t)]
    out = []
    for key, g in new.groupby(SPEED_KEYS + ["tau", "strategy_label"], dropna=False, sort=True):
        row = dict(zip(SPEED_KEYS + ["tau", "strategy_label"], key))
        for base in base_strategies:
            b = t[(t["model"] == "elman") & (t["strategy"] == base) & (t["baseline_key"] == "")]
            for k in SPEED_KEYS + ["tau"]:
                b = b[b[k] == row[k]]
            paired = g[
                g["baseline_key"].map(
                    lambda s, base=base: (
                        bool(s)
                        and json.loads(s).get("strategy") == base
                        and json.loads(s).get("model", "elman") == "elman"
                    )
                )
            ]
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


def _fastest_base(
    comps: list[dict], where: str, r: Rules, skipped: list, used: list, values: list
) -> tuple[dict | None, str]:
    """The comparison against the fastest baseline measured (the smallest speedup over
    it) and its verdict, faster than it or not; its rows go to ``used`` and its estimate
    to ``values``. (None, "") and a note in ``skipped`` when no comparison has an interval."""
    known = [c for c in comps if c["ci"] is not None]
    if not known:
        skipped.append(f"{where} ({comps[0]['how']})")
        return None, ""
    best = min(known, key=lambda c: c["ci"].estimate)
    used.append(best["rows"])
    values.append(best["ci"].estimate)
    return best, above_verdict(best["ci"], r.faster)


def tf_faster(rows: pd.DataFrame, r: Rules) -> Decision:
    comps = _against(rows, is_tf, SEQUENTIAL_BPTT, r)
    if not comps:
        return Decision(
            NOT_MEASURED, evidence="no τ at which both teacher forcing and BPTT were timed"
        )
    by = {}
    for c in comps:
        by.setdefault(tuple(str(c["row"][k]) for k in SPEED_KEYS), []).append(c)
    parts, skipped, used, values = [], [], [], []
    for _, group in sorted(by.items()):
        top = max(c["row"]["tau"] for c in group)
        at = [c for c in group if c["row"]["tau"] == top]
        where = setting_text(at[0]["row"], ("task_label", "batch", "hidden", "threads", "tau"))
        best, verdict = _fastest_base(at, where, r, skipped, used, values)
        if best is None:
            continue
        others = ", ".join(
            f"vs {c['base']} {ci_text(c['ci'])}"
            for c in at
            if c["ci"] is not None and c is not best
        )
        parts.append(
            (
                verdict,
                f"{where}: vs the fastest BPTT ({best['base']}) "
                f"{ci_text(best['ci'])} ({best['how']})" + (f"; {others}" if others else ""),
            )
        )
    return decision(
        every_setting(parts),
        min(values) if values else math.nan,
        "× speedup over the fastest BPTT (smallest)",
        parts,
        skipped,
        used,
    )


def tf_not_overhead(rows: pd.DataFrame, r: Rules) -> Decision:
    comps = _against(rows, is_tf, ("bptt", "bptt_compiled"), r)
    by = {}
    for c in comps:
        row = c["row"]
        by.setdefault(
            (
                row["task_label"],
                row["batch"],
                row["hidden"],
                row["device"],
                row["threads"],
                row["dtype"],
                row["tau"],
            ),
            {},
        )[c["base"]] = c
    parts, skipped, used, shares = [], [], [], []
    for _, pair in sorted(by.items(), key=lambda kv: str(kv[0])):
        where = setting_text(
            next(iter(pair.values()))["row"], ("task_label", "batch", "hidden", "threads", "tau")
        )
        comp = pair.get("bptt_compiled")
        loop = pair.get("bptt")
        if comp is None or comp["ci"] is None:
            if loop is not None:
                skipped.append(
                    f"{where} (no bptt_compiled beside the framework loop"
                    + (f": {comp['how']}" if comp else "")
                    + ")"
                )
            continue
        used.append(comp["rows"])
        verdict = above_verdict(comp["ci"], r.faster)
        text = f"{where}: vs compiled loop {ci_text(comp['ci'])}"
        if loop is not None and loop["ci"] is not None:
            used.append(loop["rows"])
            x, y = loop["ci"].estimate, comp["ci"].estimate
            text += f", vs framework loop {ci_text(loop['ci'])}"
            if x > 1:
                share = min(max(math.log(x / y) / math.log(x), 0.0), 1.0) if y > 0 else 1.0
                shares.append(share)
                text += (
                    f" — of the {x:.3g}× a factor {x / y:.3g} is the framework loop's "
                    f"per-step overhead (framework vs compiled loop) and {y:.3g}× remains "
                    f"against compiled code (parallel work): {100 * share:.0f}% overhead "
                    "in log terms"
                )
        parts.append((verdict, text))
    if not parts and not skipped:
        return Decision(
            NOT_MEASURED,
            evidence="no teacher-forcing cell timed beside "
            "bptt_compiled (the compiled sequential loop)",
        )
    return decision(
        every_setting(parts),
        max(shares) if shares else math.nan,
        "overhead share of the speedup (largest)",
        parts,
        skipped,
        used,
    )


def _speed_gate(r: Rules) -> str:
    return (
        f"timing cells at the same setting and τ; ≥ {r.min_pairs} paired block ratios "
        "(the cell's baseline) or ≥ 2 seeds of both sides"
    )


TF_FASTER = Rule(
    "tf_faster_one_device",
    "consequence",
    "On one device, teacher forcing's batched steps train faster than sequential BPTT, "
    "even against the best BPTT implementation, from some τ on.",
    lambda r: (
        f"speedup of Jordan + teacher forcing over the fastest Elman BPTT measured "
        f"({', '.join(SEQUENTIAL_BPTT)}) at the largest τ of every setting (threads, B, H): "
        f"holds when its 95% CI lies above {r.faster:g}× in every setting; does not "
        f"hold when it lies at or below {r.faster:g}× in one"
    ),
    _speed_gate,
    tf_faster,
)


TF_NOT_OVERHEAD = Rule(
    "tf_speedup_not_overhead",
    "consequence",
    "Teacher forcing's speedup over BPTT is parallel work, not the sequential loop's "
    "framework overhead: it remains against a compiled sequential loop.",
    lambda r: (
        f"per setting (1 thread and all cores, B = 1 and B = 32), teacher forcing "
        f"against the framework loop (bptt) and the compiled loop "
        f"(bptt_compiled): holds when the speedup over the compiled loop has its "
        f"95% CI above {r.faster:g}× in every setting; does not hold when it lies "
        f"at or below in one. The evidence splits the framework-loop speedup into "
        "overhead (framework / compiled loop) and what remains (parallel work)"
    ),
    _speed_gate,
    tf_not_overhead,
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
    return Decision(verdict, used["depth"].max(), "sequential steps", evidence, used)


DEER_KEYS = ["strategy_label", "task_label", "batch", "hidden", "device", "dtype", "rho"]


def deer_depth(rows: pd.DataFrame, r: Rules) -> Decision:
    ok = ok_rows(rows).copy()
    ok["rho"] = numeric(ok, "rho")
    ok["iterations"] = numeric(ok, "iterations")
    d = ok[
        (ok["model"] == "elman") & ok["strategy"].isin(NEWTON_SOLVERS) & ok["iterations"].notna()
    ]
    if d.empty:
        return Decision(NOT_MEASURED, evidence="no Elman deer / quasi_deer rows with iterations")
    parts, skipped, used = [], [], []
    for key, g in d.groupby(DEER_KEYS, dropna=False, sort=True):
        row = dict(zip(DEER_KEYS, key))
        where = setting_text(row, ("strategy_label", "hidden", "batch", "rho"))
        conv = column(g, "converged", None).map(truth)
        if np.isfinite(row["rho"]) and row["rho"] >= r.contracting:
            skipped.append(
                f"{where} (ρ ≥ {r.contracting:g}, outside the claim: "
                f"{int((conv == False).sum())} of {len(g)} runs not converged, "  # noqa: E712
                f"iterations up to {g['iterations'].max():g})"
            )
            continue
        why = law_gate(g, r)
        if why:
            skipped.append(f"{where} ({why})")
            continue
        used.append(g)
        f = power_fit(g["tau"], g["iterations"])
        top = g[g["tau"] == g["tau"].max()]
        depth = float(top["iterations"].max()) * scan_depth(int(top["tau"].max()))
        text = (
            f"{where}: iterations {g['iterations'].min():g}–{g['iterations'].max():g} over τ "
            f"{g['tau'].min():g}–{g['tau'].max():g}, growth τ^{f.exponent:.2f} "
            f"[{f.ci_low:.2f}, {f.ci_high:.2f}], depth k·(2⌈log₂τ⌉ − 1) = {depth:g} vs τ = "
            f"{top['tau'].max():g}"
        )
        if (conv == False).any():  # noqa: E712
            parts.append(
                (
                    FAILS,
                    text + f"; {int((conv == False).sum())} run(s) not "  # noqa: E712
                    "converged",
                )
            )
        elif f.ci_low > r.growth or depth >= top["tau"].max():
            parts.append((FAILS, text))
        elif f.ci_high < r.growth and depth < top["tau"].max() and (conv == True).all():  # noqa: E712
            parts.append((HOLDS, text))
        else:
            parts.append(
                (
                    NOT_MEASURED,
                    text
                    + (
                        ""
                        if (conv == True).all()  # noqa: E712
                        else "; convergence not recorded"
                    ),
                )
            )
    return decision(
        every_setting(parts),
        max((g["iterations"].max() for g in used), default=math.nan),
        "Newton iterations (largest)",
        parts,
        skipped,
        used,
    )


def _converged(rows: pd.DataFrame) -> pd.Series:
    """Whether each row records a converged solve (unrecorded counts as not)."""
    return column(rows, "converged", None).map(truth).eq(True)


def deer_faster(rows: pd.DataFrame, r: Rules) -> Decision:
    def deer(x):
        return (x["model"] == "elman") & x["strategy"].isin(NEWTON_SOLVERS)

    t = timing_cells(rows)
    wrong = t[deer(t) & ~_converged(t)]
    # a solve stopped at max_iter short of the answer is fast and wrong: no evidence of speed
    skipped = [
        f"{setting_text(x, ('strategy_label', 'batch', 'hidden', 'threads', 'tau'))} "
        + (
            f"(not converged after {x['iterations']:g} iterations: "
            if np.isfinite(x["iterations"])
            else "(no convergence recorded: "
        )
        + "a wrong answer's speed is not evidence)"
        for _, x in wrong.iterrows()
    ]
    skipped = list(dict.fromkeys(skipped))  # one line per setting, not per seed
    comps = _against(rows, lambda x: deer(x) & _converged(x), SEQUENTIAL_BPTT, r)
    if not comps:
        return Decision(
            NOT_MEASURED,
            evidence=evidence_text(
                [], skipped + ["no converged deer / quasi_deer cell timed beside BPTT"]
            ),
        )
    by = {}
    for c in comps:
        row = c["row"]
        by.setdefault(
            tuple(str(row[k]) for k in SPEED_KEYS + ["tau", "strategy_label"]), []
        ).append(c)
    parts, used, values = [], [], []
    for _, group in sorted(by.items()):
        where = setting_text(
            group[0]["row"], ("strategy_label", "batch", "hidden", "threads", "tau")
        )
        best, verdict = _fastest_base(group, where, r, skipped, used, values)
        if best is None:
            continue
        parts.append(
            (
                verdict,
                f"{where}: vs the fastest BPTT ({best['base']}) "
                f"{ci_text(best['ci'])} ({best['how']})",
            )
        )
    return decision(
        some_setting(parts),
        max(values) if values else math.nan,
        "× speedup over the fastest BPTT (largest)",
        parts,
        skipped,
        used,
    )


TF_DEPTH = Rule(
    "tf_depth_one",
    "chapter",
    "Teacher forcing decouples the time steps: the sequential depth is 1, not τ.",
    lambda r: (
        "depth of every Jordan + teacher-forcing cell, a constant of the strategy "
        "registry copied into each row: 'by construction' when it is 1 at every τ "
        "(the timings vs workers and cores are the measured evidence); does not "
        "hold when the registry says otherwise"
    ),
    lambda r: "any Jordan + teacher-forcing row",
    tf_depth,
)


DEER_DEPTH = Rule(
    "deer_depth",
    "consequence",
    "Elman's sequential depth can be cut to O(k log τ) by parallel Newton iterations "
    "(DEER) when its dynamics contract (spectral radius ρ < 1).",
    lambda r: (
        f"Elman + deer / quasi_deer at ρ < {r.contracting:g} (or the default init), "
        f"per setting: holds when every run converged, the iteration count k grows "
        f"slower than τ^{r.growth} (95% CI of its log-log slope below {r.growth}) "
        f"and k·(2⌈log₂τ⌉ − 1) < τ at the largest τ; does not hold when a run did not "
        f"converge, k grows faster (CI above {r.growth}) or k·(2⌈log₂τ⌉ − 1) ≥ τ; in every "
        f"setting. Settings with ρ ≥ {r.contracting:g} are shown, not judged"
    ),
    lambda r: (
        f"≥ {r.min_taus} distinct τ spanning ≥ {r.min_tau_ratio:g}× and ≥ "
        f"{r.min_cells} cells per setting, with iterations and converged recorded"
    ),
    deer_depth,
)


DEER_FASTER = Rule(
    "deer_faster",
    "consequence",
    "… and on this device DEER is faster than sequential BPTT.",
    lambda r: (
        f"speedup of Elman + deer / quasi_deer over the fastest Elman BPTT measured, "
        f"per setting and τ, converged runs only (a run stopped at max_iter short "
        f"of the answer is not judged): holds when in some setting its 95% CI lies "
        f"above {r.faster:g}×; does not hold when in every setting it lies at or "
        f"below"
    ),
    _speed_gate,
    deer_faster,
)
