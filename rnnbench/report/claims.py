"""Each claim of the chapter beside the measured evidence and a verdict.

A claim is a :class:`Rule`: its text, the rule that decides it, the evidence gate it
needs, and the decision function — in one place, and the page prints the rule and
the gate the code applies. A verdict is ``holds``, ``does not hold`` or ``not
measured`` (below the gate, or an interval that straddles the threshold; the
evidence says which); ``by construction`` marks a constant of the strategy registry.

Intervals are 95% confidence intervals over independent repetitions (see
:mod:`.intervals`): seeds for losses and accuracies; for speedups the paired block
ratios of a cell timed against its ``baseline`` in one process, or, for two sides
timed in separate cells, the seeds of both sides. The spread inside one cell is never
an interval. Public entry point: :func:`evaluate` (rows -> list of :class:`Claim`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from .. import tasks
from ..errors import UsageError
from . import load
from .fit import overhead_fit, power_fit
from .intervals import Interval, diff_ci, mean_ci, ratio_ci
from .tables import ok_rows, single

HOLDS, FAILS, NOT_MEASURED = "holds", "does not hold", "not measured"
BY_CONSTRUCTION = "by construction"
VERDICTS = (HOLDS, FAILS, NOT_MEASURED, BY_CONSTRUCTION)
BPTTS = ("bptt", "bptt_fused", "bptt_compiled")  # the sequential BPTT implementations
DEERS = ("deer", "quasi_deer")
SELF_FEEDING = ("free_running", "scheduled_sampling")  # Jordan strategies fed their own outputs

METHOD = (
    "Intervals are 95% confidence intervals over independent repetitions: over seeds "
    "(Student's t; Welch's for a difference of two means) for losses and accuracies; for a "
    "speedup, the t-interval of the mean log ratio over the paired blocks of a cell timed "
    "against its baseline in one process (A B A B …), or, when the two sides were timed in "
    "separate cells, over the seeds of both sides. The spread inside one cell is never used "
    "as an interval. A claim judged 'in every setting' holds only when every setting that "
    "passes its evidence gate holds; settings below the gate are listed as not judged. "
    "O(τ) laws: T = a + b·τ + c·τ² weighted by 1/T², over timing cells only (no training "
    "cells); linear when the τ² term's share of the time at the largest τ has its 95% "
    "interval inside the stated band and the fixed cost a of T = a + b·τ is not below 0.")


@dataclass(frozen=True)
class Rules:
    """The thresholds and evidence gates every verdict is decided by (shown on the page)."""

    linear_band: float = 0.2         # |τ² share of T(τ_max)| within this: linear in τ
    min_taus: int = 3                # distinct τ per fit
    min_tau_ratio: float = 8.0       # τ_max / τ_min per fit
    min_cells: int = 4               # cells per fit: one residual degree of freedom at least
    min_seeds: int = 3               # seeds per side of a loss or accuracy verdict
    min_train_steps: int = 200       # training steps per loss or accuracy verdict
    min_pairs: int = 3               # paired block ratios per speedup
    no_gain: float = 1.1             # a speedup at or below this is no speedup
    faster: float = 1.0              # a speedup above this: faster
    accuracy_gap: float = 0.05       # accuracy difference that counts as a gap
    learned_margin: float = 0.05     # above chance by this much: the task was learned
    solved: float = 0.9              # accuracy that counts as solving a task
    negligible_nats: float = 0.01    # a loss difference below this (nats/token) is none
    growth: float = 0.5              # iterations growing slower than τ^this: bounded k
    contracting: float = 1.0         # spectral radius below this: contracting dynamics


@dataclass(frozen=True)
class Decision:
    verdict: str
    value: float = math.nan
    unit: str = ""
    evidence: str = ""
    cells: pd.DataFrame | None = None


@dataclass(frozen=True)
class Rule:
    """A claim with its rule text, its evidence gate and the function that decides it."""

    key: str
    source: str                                   # "chapter", "consequence", "common belief"
    text: str                                     # the claim, as quoted
    how: Callable[[Rules], str]                   # the decision rule, in words
    gate: Callable[[Rules], str]                  # the evidence needed, in words
    decide: Callable[[pd.DataFrame, Rules], Decision]


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
    cell_ids: tuple = ()


# --------------------------------------------------------------------------- helpers


def _g(x: float) -> str:
    return f"{x:.3g}" if x is not None and np.isfinite(x) else "n/a"


def _col(rows: pd.DataFrame, name: str, default=np.nan) -> pd.Series:
    """A column, or ``default`` everywhere when the rows predate it."""
    return rows[name] if name in rows.columns else pd.Series(default, index=rows.index,
                                                             dtype=object)


def _num(rows: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(_col(rows, name), errors="coerce")


def _baseline(rows: pd.DataFrame) -> pd.Series:
    """The baseline overrides of each row as canonical JSON ('' for none)."""
    def canon(value):
        opts = {k: v for k, v in load.options(value).items() if k}
        return json.dumps(opts, sort_keys=True) if opts else ""
    return _col(rows, "baseline", None).map(canon)


def _ratios(rows: pd.DataFrame) -> list[float]:
    return [float(r) for v in _col(rows, "speedup_samples", None) for r in load.as_list(v)
            if isinstance(r, (int, float)) and np.isfinite(r)]


def _truth(value) -> bool | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _setting(row, keys=("task_label", "batch", "hidden", "threads")) -> str:
    names = {"task_label": "", "batch": "B=", "hidden": "H=", "threads": "threads=",
             "tau": "τ=", "workers": "workers=", "rho": "ρ=", "strategy_label": "",
             "model": ""}
    parts = []
    for k in keys:
        v = row.get(k) if hasattr(row, "get") else row[k]
        if v is None or (isinstance(v, float) and math.isnan(v)):
            v = "default" if k == "rho" else "?"
        parts.append(f"{names.get(k, k + '=')}{v:g}" if isinstance(v, (int, float))
                     and not isinstance(v, bool) else f"{names.get(k, k + '=')}{v}")
    return ", ".join(parts)


def _timing(rows: pd.DataFrame) -> pd.DataFrame:
    """Timing cells: ok, untrained, timed in one process."""
    ok = ok_rows(rows)
    return ok[(ok["train_steps"].fillna(0) == 0) & single(ok)]


def _trained(rows: pd.DataFrame, rules: Rules) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trained contenders, W = 0 controls): ok rows trained at least a little."""
    ok = ok_rows(rows)
    ok = ok[ok["train_steps"].fillna(0) > 0].copy()
    ok["acc_gen"] = ok["acc_free"].fillna(ok["acc_tf"])
    ok["loss_gen"] = ok["loss_free"].fillna(ok["loss_tf"])
    control = ok["strategy_options"].map(
        lambda o: _truth(load.options(o).get("w_zero")) is True).astype(bool)
    return ok[~control], ok[control]


def _gate_training(rows: pd.DataFrame, rules: Rules) -> str | None:
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


def every_setting(parts: list[tuple[str, str]]) -> str:
    """'In every setting': holds only when each judged setting holds; one that does not
    hold decides; any undecided setting leaves the claim not measured."""
    verdicts = [v for v, _ in parts]
    if FAILS in verdicts:
        return FAILS
    if verdicts and all(v == HOLDS for v in verdicts):
        return HOLDS
    return NOT_MEASURED


def some_setting(parts: list[tuple[str, str]]) -> str:
    """'In some setting': holds when one judged setting holds; does not hold when every
    judged setting does not."""
    verdicts = [v for v, _ in parts]
    if HOLDS in verdicts:
        return HOLDS
    if verdicts and all(v == FAILS for v in verdicts):
        return FAILS
    return NOT_MEASURED


def _evidence(parts: list[tuple[str, str]], skipped: list[str]) -> str:
    text = "; ".join(f"{t} → {v}" for v, t in parts)
    if skipped:
        text += ("; " if text else "") + "not judged: " + "; ".join(skipped)
    return text


def _log_ci(ci: Interval) -> Interval:
    return Interval(math.exp(ci.estimate), math.exp(ci.low), math.exp(ci.high), ci.n, ci.level)


def speedup(new: pd.DataFrame, base: pd.DataFrame | None, rules: Rules
            ) -> tuple[Interval | None, str]:
    """Speedup base/new with its interval: from paired block ratios when ``new`` was timed
    against its baseline in one process, else over the seeds of two separate cells.
    (None, why) below the gate."""
    ratios = _ratios(new)
    if len(ratios) >= rules.min_pairs:
        return ratio_ci(ratios), "paired blocks"
    if base is None or base.empty:
        return None, "no paired blocks and no baseline cell"
    a = np.log(base["step_ms_median"].dropna().to_numpy(dtype=float))
    b = np.log(new["step_ms_median"].dropna().to_numpy(dtype=float))
    ci = diff_ci(a, b)
    if ci is None:
        return None, (f"unpaired cells with {len(b)} and {len(a)} seed(s): no interval "
                      "(no paired blocks; under 2 seeds a side)")
    return _log_ci(ci), "seeds, unpaired"


def _ci_text(ci: Interval) -> str:
    return f"{ci.estimate:.3g}× [{ci.low:.3g}, {ci.high:.3g}]"


# --------------------------------------------------------------------------- O(τ) laws


LAW_KEYS = ["model", "strategy_label", "task_label", "batch", "hidden", "device", "threads",
            "dtype"]


def _law_gate(group: pd.DataFrame, rules: Rules) -> str | None:
    taus = group["tau"].dropna().unique()
    if len(taus) < rules.min_taus:
        return f"{len(taus)} distinct τ (gate {rules.min_taus})"
    if taus.max() / taus.min() < rules.min_tau_ratio:
        return f"τ range {taus.min():g}–{taus.max():g} under {rules.min_tau_ratio:g}×"
    if len(group) < rules.min_cells:
        return f"{len(group)} cells (gate {rules.min_cells}: one residual degree of freedom)"
    return None


def linear_law(rows: pd.DataFrame, measure: str, strategies, rules: Rules) -> Decision:
    """Per setting: T = a + b·τ + c·τ² over the timing cells; linear when the τ² share
    at τ_max lies within ± the band and a is not below 0; in every setting."""
    t = _timing(rows)
    t = t[(t["model"] == "elman") & t["strategy"].isin(strategies) & t[measure].notna()]
    if t.empty:
        return Decision(NOT_MEASURED,
                        evidence=f"no Elman {'/'.join(strategies)} timing cells with {measure}")
    band = rules.linear_band
    parts, skipped, used, shares = [], [], [], []
    for key, g in t.groupby(LAW_KEYS, dropna=False, sort=True):
        row = dict(zip(LAW_KEYS, key))
        where = _setting(row, ("strategy_label", "task_label", "batch", "hidden", "threads"))
        why = _law_gate(g, rules)
        f = None if why else overhead_fit(g["tau"], g[measure])
        if f is None:
            skipped.append(f"{where} ({why or 'no fit'})")
            continue
        used.append(g)
        shares.append(f.quad_share)
        if f.quad_low >= -band and f.quad_high <= band and f.a_high >= 0:
            verdict = HOLDS
        elif f.quad_low > band or f.quad_high < -band:
            verdict = FAILS
        else:
            verdict = NOT_MEASURED
        parts.append((verdict, f"{where}: τ² share {f.quad_share:+.3f} "
                               f"[{f.quad_low:+.3f}, {f.quad_high:+.3f}], fixed cost a = "
                               f"{_g(f.a)} [{_g(f.a_low)}, {_g(f.a_high)}], marginal exponent "
                               f"{f.marginal_k:.2f} at τ={f.tau_max:g} (τ {f.tau_min:g}–"
                               f"{f.tau_max:g}, {f.n_points} cells)"))
    verdict = every_setting(parts)
    value = max(shares, key=abs) if shares else math.nan
    return Decision(verdict, value, "τ² share of T(τ_max), largest", _evidence(parts, skipped),
                    pd.concat(used) if used else None)


def _law_how(what: str):
    return lambda r: (f"{what} of Elman BPTT ({', '.join(BPTTS)}) per setting, fitted as "
                      f"T = a + b·τ + c·τ² (weights 1/T²): linear when the τ² term's share of "
                      f"T(τ_max) has its 95% CI inside ±{r.linear_band} and a ≥ 0 is not "
                      f"rejected; not linear when the CI lies outside the band; holds in every "
                      "judged setting")


def _law_gate_text(r: Rules) -> str:
    return (f"timing cells only (train_steps = 0, one process); per setting ≥ {r.min_taus} "
            f"distinct τ spanning ≥ {r.min_tau_ratio:g}× and ≥ {r.min_cells} cells")


# --------------------------------------------------------------------------- more hardware


HW_KEYS = ["model", "strategy_label", "task_label", "tau", "batch", "hidden", "device",
           "threads", "workers", "split", "dtype"]


def _hardware_parts(rows: pd.DataFrame, rules: Rules, models_strategies) -> list[dict]:
    """Every comparison of more hardware against less: all cores against one
    (``baseline`` {threads: 1}) and N workers against one (``baseline`` {workers: 1}, or
    the 1-worker cell of the same harness), for the rows ``models_strategies`` selects."""
    ok = ok_rows(rows)
    ok = ok[ok["train_steps"].fillna(0) == 0].copy()
    ok["baseline_key"] = _baseline(ok)
    sel = ok[models_strategies(ok)]
    out = []
    cores = sel[(sel["threads"] > 1) & (sel["baseline_key"] == json.dumps({"threads": 1}))]
    for key, g in cores.groupby(HW_KEYS, dropna=False, sort=True):
        row = dict(zip(HW_KEYS, key))
        ci, how = speedup(g, None, rules)
        out.append({"kind": "cores", "row": row, "ci": ci, "how": how, "rows": g,
                    "what": f"{row['threads']:g} threads vs 1"})
    group = sel[(sel["split"] != "none") & (sel["workers"] > 1)]
    for key, g in group.groupby(HW_KEYS, dropna=False, sort=True):
        row = dict(zip(HW_KEYS, key))
        one = ok[(ok["workers"] == 1) & (ok["split"] == row["split"])]
        for k in ("model", "strategy_label", "task_label", "tau", "batch", "hidden", "device",
                  "threads", "dtype"):
            one = one[one[k] == row[k]]
        ci, how = speedup(g, one, rules)
        out.append({"kind": "workers", "row": row, "ci": ci, "how": how,
                    "rows": pd.concat([g, one]),
                    "what": f"{row['workers']:g} workers vs 1, split {row['split']}"})
    return out


def _part_text(p) -> str:
    r = p["row"]
    head = (f"{r['model']} + {r['strategy_label']}, {p['what']} (τ={r['tau']:g}, "
            f"B={r['batch']:g}, H={r['hidden']:g})")
    if p["ci"] is None:
        return f"{head}: {p['how']}"
    return f"{head}: {_ci_text(p['ci'])} ({p['how']})"


def _is_tf(rows):
    return (rows["model"] == "jordan") & (rows["strategy"] == "teacher_forcing")


def bptt_hardware(rows: pd.DataFrame, r: Rules) -> Decision:
    def bptt(x):
        elman = (x["model"] == "elman") & x["strategy"].isin(BPTTS + ("scan_bptt",) + DEERS)
        # Elman split by batch at B < workers idles workers by construction: no evidence.
        return elman & ~((x["split"] == "batch") & (x["batch"] < x["workers"]))
    parts_bptt = _hardware_parts(rows, r, bptt)
    controls = [p for p in _hardware_parts(rows, r, _is_tf) if p["ci"] is not None]
    ok = ok_rows(rows)
    batch_split = ok[(ok["model"] == "elman") & (ok["split"] == "batch")
                     & (ok["batch"] < ok["workers"])]
    skipped = []
    if len(batch_split):
        skipped.append(f"{len(batch_split)} Elman cell(s) split by batch with fewer sequences "
                       "than workers (idle workers by construction, not evidence)")
    if not parts_bptt:
        return Decision(NOT_MEASURED, evidence=_evidence([], skipped + [
            "no Elman BPTT cells on all cores against 1 thread, nor split along time over "
            "workers against 1 worker"]))
    parts, used = [], []
    for p in parts_bptt:
        if p["ci"] is None:
            skipped.append(_part_text(p))
            continue
        used.append(p["rows"])
        if p["ci"].above(r.no_gain):
            parts.append((FAILS, _part_text(p) + f": more {p['kind']} helped BPTT"))
            continue
        same = [c for c in controls if c["kind"] == p["kind"]
                and c["row"]["device"] == p["row"]["device"]
                and (c["row"]["threads"] if p["kind"] == "cores" else c["row"]["workers"])
                == (p["row"]["threads"] if p["kind"] == "cores" else p["row"]["workers"])]
        best = max(same, key=lambda c: c["ci"].low) if same else None
        if best is not None:
            used.append(best["rows"])
        control = (f"; control Jordan + teacher forcing {best['what']}: {_ci_text(best['ci'])}"
                   if best is not None else "; no teacher-forcing control on this hardware")
        if p["ci"].high <= r.no_gain and best is not None and best["ci"].above(r.no_gain):
            parts.append((HOLDS, _part_text(p) + control))
        else:
            why = ("" if p["ci"].high <= r.no_gain
                   else f" (interval straddles {r.no_gain}×)")
            parts.append((NOT_MEASURED, _part_text(p) + why + control
                          + ("" if why or (best is not None and best["ci"].above(r.no_gain))
                             else " (the control shows no gain: this hardware could not "
                                  "show one)")))
    verdict = every_setting(parts)
    best = max((p["ci"].estimate for p in parts_bptt if p["ci"] is not None), default=math.nan)
    return Decision(verdict, best, "× speedup (largest)", _evidence(parts, skipped),
                    pd.concat(used) if used else None)


def tf_hardware(rows: pd.DataFrame, r: Rules) -> Decision:
    ps = _hardware_parts(rows, r, lambda x: _is_tf(x) & x["split"].isin(["none", "time"]))
    if not ps:
        return Decision(NOT_MEASURED, evidence="no Jordan + teacher-forcing cells split along "
                                               "time over workers, nor on all cores")
    parts, skipped, used = [], [], []
    for p in ps:
        if p["ci"] is None:
            skipped.append(_part_text(p))
            continue
        used.append(p["rows"])
        verdict = (HOLDS if p["ci"].above(r.no_gain) else
                   FAILS if p["ci"].high <= r.no_gain else NOT_MEASURED)
        parts.append((verdict, _part_text(p)))
    best = max((p["ci"].estimate for p in ps if p["ci"] is not None), default=math.nan)
    return Decision(some_setting(parts), best, "× speedup (largest)", _evidence(parts, skipped),
                    pd.concat(used) if used else None)


def _hw_gate(r: Rules) -> str:
    return (f"≥ {r.min_pairs} paired block ratios per cell (baseline {{threads: 1}} or "
            "{workers: 1} timed in the same process or worker group), or ≥ 2 seeds of both "
            "sides; timing cells only")


# --------------------------------------------------------------------------- one device


SPEED_KEYS = ["task_label", "batch", "hidden", "device", "threads", "dtype"]


def _against(rows: pd.DataFrame, new_mask, base_strategies, r: Rules) -> list[dict]:
    """Per setting and τ: the speedup of the ``new_mask`` rows over each Elman baseline in
    ``base_strategies`` (paired blocks when the row names it as ``baseline``, else the
    baseline's own cells over seeds)."""
    t = _timing(rows).copy()
    t["baseline_key"] = _baseline(t)
    new = t[new_mask(t)]
    out = []
    for key, g in new.groupby(SPEED_KEYS + ["tau", "strategy_label"], dropna=False, sort=True):
        row = dict(zip(SPEED_KEYS + ["tau", "strategy_label"], key))
        for base in base_strategies:
            b = t[(t["model"] == "elman") & (t["strategy"] == base)
                  & (t["baseline_key"] == "")]
            for k in SPEED_KEYS + ["tau"]:
                b = b[b[k] == row[k]]
            paired = g[g["baseline_key"].map(
                lambda s, base=base: bool(s) and json.loads(s).get("strategy") == base
                and json.loads(s).get("model", "elman") == "elman")]
            plain = g[g["baseline_key"] == ""]
            if paired.empty and (plain.empty or b.empty):
                continue
            ci, how = speedup(paired, None, r) if len(paired) else speedup(plain, b, r)
            out.append({"row": row, "base": base, "ci": ci, "how": how,
                        "rows": pd.concat([paired if len(paired) else plain, b])})
    return out


def _best_base(comps: list[dict]) -> dict | None:
    """The fastest baseline measured (the smallest speedup over it)."""
    known = [c for c in comps if c["ci"] is not None]
    return min(known, key=lambda c: c["ci"].estimate) if known else None


def tf_faster(rows: pd.DataFrame, r: Rules) -> Decision:
    comps = _against(rows, _is_tf, BPTTS, r)
    if not comps:
        return Decision(NOT_MEASURED, evidence="no τ at which both teacher forcing and BPTT "
                                               "were timed")
    by = {}
    for c in comps:
        by.setdefault(tuple(str(c["row"][k]) for k in SPEED_KEYS), []).append(c)
    parts, skipped, used, values = [], [], [], []
    for _, group in sorted(by.items()):
        top = max(c["row"]["tau"] for c in group)
        at = [c for c in group if c["row"]["tau"] == top]
        where = _setting(at[0]["row"], ("task_label", "batch", "hidden", "threads", "tau"))
        best = _best_base(at)
        if best is None:
            skipped.append(f"{where} ({at[0]['how']})")
            continue
        used.append(best["rows"])
        values.append(best["ci"].estimate)
        verdict = (HOLDS if best["ci"].above(r.faster) else
                   FAILS if best["ci"].high <= r.faster else NOT_MEASURED)
        others = ", ".join(f"vs {c['base']} {_ci_text(c['ci'])}" for c in at
                           if c["ci"] is not None and c is not best)
        parts.append((verdict, f"{where}: vs the fastest BPTT ({best['base']}) "
                               f"{_ci_text(best['ci'])} ({best['how']})"
                               + (f"; {others}" if others else "")))
    return Decision(every_setting(parts), min(values) if values else math.nan,
                    "× speedup over the fastest BPTT (smallest)", _evidence(parts, skipped),
                    pd.concat(used) if used else None)


def tf_not_overhead(rows: pd.DataFrame, r: Rules) -> Decision:
    comps = _against(rows, _is_tf, ("bptt", "bptt_compiled"), r)
    by = {}
    for c in comps:
        row = c["row"]
        by.setdefault((row["task_label"], row["batch"], row["hidden"], row["device"],
                       row["threads"], row["dtype"], row["tau"]), {})[c["base"]] = c
    parts, skipped, used, shares = [], [], [], []
    for key, pair in sorted(by.items(), key=lambda kv: str(kv[0])):
        where = _setting(next(iter(pair.values()))["row"],
                         ("task_label", "batch", "hidden", "threads", "tau"))
        comp = pair.get("bptt_compiled")
        loop = pair.get("bptt")
        if comp is None or comp["ci"] is None:
            if loop is not None:
                skipped.append(f"{where} (no bptt_compiled beside the framework loop"
                               + (f": {comp['how']}" if comp else "") + ")")
            continue
        used.append(comp["rows"])
        verdict = (HOLDS if comp["ci"].above(r.faster) else
                   FAILS if comp["ci"].high <= r.faster else NOT_MEASURED)
        text = f"{where}: vs compiled loop {_ci_text(comp['ci'])}"
        if loop is not None and loop["ci"] is not None:
            used.append(loop["rows"])
            x, y = loop["ci"].estimate, comp["ci"].estimate
            text += f", vs framework loop {_ci_text(loop['ci'])}"
            if x > 1:
                share = min(max(math.log(x / y) / math.log(x), 0.0), 1.0) if y > 0 else 1.0
                shares.append(share)
                text += (f" — of the {x:.3g}× a factor {x / y:.3g} is the framework loop's "
                         f"per-step overhead (framework vs compiled loop) and {y:.3g}× remains "
                         f"against compiled code (parallel work): {100 * share:.0f}% overhead "
                         "in log terms")
        parts.append((verdict, text))
    if not parts and not skipped:
        return Decision(NOT_MEASURED, evidence="no teacher-forcing cell timed beside "
                                               "bptt_compiled (the compiled sequential loop)")
    return Decision(every_setting(parts), max(shares) if shares else math.nan,
                    "overhead share of the speedup (largest)", _evidence(parts, skipped),
                    pd.concat(used) if used else None)


def _speed_gate(r: Rules) -> str:
    return (f"timing cells at the same setting and τ; ≥ {r.min_pairs} paired block ratios "
            "(the cell's baseline) or ≥ 2 seeds of both sides")


# --------------------------------------------------------------------------- depth


def tf_depth(rows: pd.DataFrame, r: Rules) -> Decision:
    ok = ok_rows(rows)
    used = ok[_is_tf(ok) & ok["depth"].notna()]
    if used.empty:
        return Decision(NOT_MEASURED, evidence="no Jordan + teacher-forcing rows with a "
                                               "recorded depth")
    verdict = BY_CONSTRUCTION if (used["depth"] == 1).all() else FAILS
    bptt = ok[(ok["model"] == "elman") & (ok["strategy"] == "bptt") & ok["depth"].notna()]
    extra = ""
    if len(bptt):
        big = bptt.loc[bptt["tau"].idxmax()]
        extra = f"; Elman + bptt: depth {big['depth']:g} at τ={big['tau']:g}"
    evidence = ("by construction (from the strategy registry), not measured: depth "
                f"{', '.join(f'{d:g}' for d in sorted(used['depth'].unique()))} over "
                f"τ {used['tau'].min():g}–{used['tau'].max():g}{extra}")
    return Decision(verdict, used["depth"].max(), "sequential steps", evidence, used)


DEER_KEYS = ["strategy_label", "task_label", "batch", "hidden", "device", "dtype", "rho"]


def deer_depth(rows: pd.DataFrame, r: Rules) -> Decision:
    ok = ok_rows(rows).copy()
    ok["rho"] = _num(ok, "rho")
    ok["iterations"] = _num(ok, "iterations")
    d = ok[(ok["model"] == "elman") & ok["strategy"].isin(DEERS) & ok["iterations"].notna()]
    if d.empty:
        return Decision(NOT_MEASURED, evidence="no Elman deer / quasi_deer rows with "
                                               "iterations")
    parts, skipped, used = [], [], []
    for key, g in d.groupby(DEER_KEYS, dropna=False, sort=True):
        row = dict(zip(DEER_KEYS, key))
        where = _setting(row, ("strategy_label", "hidden", "batch", "rho"))
        conv = _col(g, "converged", None).map(_truth)
        if np.isfinite(row["rho"]) and row["rho"] >= r.contracting:
            skipped.append(f"{where} (ρ ≥ {r.contracting:g}, outside the claim: "
                           f"{int((conv == False).sum())} of {len(g)} runs not converged, "  # noqa: E712
                           f"iterations up to {g['iterations'].max():g})")
            continue
        why = _law_gate(g, r)
        if why:
            skipped.append(f"{where} ({why})")
            continue
        used.append(g)
        f = power_fit(g["tau"], g["iterations"])
        top = g[g["tau"] == g["tau"].max()]
        depth = float(top["iterations"].max()) * math.ceil(math.log2(top["tau"].max()))
        text = (f"{where}: iterations {g['iterations'].min():g}–{g['iterations'].max():g} over τ "
                f"{g['tau'].min():g}–{g['tau'].max():g}, growth τ^{f.exponent:.2f} "
                f"[{f.ci_low:.2f}, {f.ci_high:.2f}], depth k·⌈log₂τ⌉ = {depth:g} vs τ = "
                f"{top['tau'].max():g}")
        if (conv == False).any():  # noqa: E712
            parts.append((FAILS, text + f"; {int((conv == False).sum())} run(s) not "  # noqa: E712
                                        "converged"))
        elif f.ci_low > r.growth or depth >= top["tau"].max():
            parts.append((FAILS, text))
        elif f.ci_high < r.growth and depth < top["tau"].max() and (conv == True).all():  # noqa: E712
            parts.append((HOLDS, text))
        else:
            parts.append((NOT_MEASURED, text + ("" if (conv == True).all()  # noqa: E712
                                                else "; convergence not recorded")))
    return Decision(every_setting(parts), max((g["iterations"].max() for g in used),
                                              default=math.nan),
                    "Newton iterations (largest)", _evidence(parts, skipped),
                    pd.concat(used) if used else None)


def deer_faster(rows: pd.DataFrame, r: Rules) -> Decision:
    comps = _against(rows, lambda x: (x["model"] == "elman") & x["strategy"].isin(DEERS),
                     BPTTS, r)
    if not comps:
        return Decision(NOT_MEASURED, evidence="no deer / quasi_deer cell timed beside BPTT")
    by = {}
    for c in comps:
        row = c["row"]
        by.setdefault(tuple(str(row[k]) for k in SPEED_KEYS + ["tau", "strategy_label"]),
                      []).append(c)
    parts, skipped, used, values = [], [], [], []
    for _, group in sorted(by.items()):
        where = _setting(group[0]["row"], ("strategy_label", "batch", "hidden", "threads",
                                           "tau"))
        best = _best_base(group)
        if best is None:
            skipped.append(f"{where} ({group[0]['how']})")
            continue
        used.append(best["rows"])
        values.append(best["ci"].estimate)
        verdict = (HOLDS if best["ci"].above(r.faster) else
                   FAILS if best["ci"].high <= r.faster else NOT_MEASURED)
        parts.append((verdict, f"{where}: vs the fastest BPTT ({best['base']}) "
                               f"{_ci_text(best['ci'])} ({best['how']})"))
    return Decision(some_setting(parts), max(values) if values else math.nan,
                    "× speedup over the fastest BPTT (largest)", _evidence(parts, skipped),
                    pd.concat(used) if used else None)


# --------------------------------------------------------------------------- capability


MATCH = ["task_label", "tau", "batch", "hidden", "train_steps"]


def _best_per_model(rows: pd.DataFrame, value: str, higher: bool) -> dict:
    """model -> (strategy, per-seed values) of its best strategy by mean ``value``."""
    out = {}
    for model, g in rows[rows[value].notna()].groupby("model"):
        means = g.groupby("strategy_label")[value].mean()
        pick = means.idxmax() if higher else means.idxmin()
        out[model] = (pick, g[g["strategy_label"] == pick])
    return out


def _chance(row) -> float:
    try:
        opts = {k: v for k, v in load.options(row["task_options"]).items() if k}
        return tasks.make(row["task"], **opts).chance_accuracy()
    except (UsageError, TypeError, ValueError, KeyError):
        return math.nan


def _generation_task(row) -> bool:
    """A task whose input carries nothing (the model generates from its own outputs)."""
    return str(load.options(row["task_options"]).get("input", "")) in ("none", "blank")


def jordan_weaker(rows: pd.DataFrame, r: Rules) -> Decision:
    trained, _ = _trained(rows, r)
    t = trained[(trained["task"] == "delayed_recall") & trained["model"].isin(["elman",
                                                                               "jordan"])]
    if t.empty:
        return Decision(NOT_MEASURED, evidence="no trained Elman and Jordan rows on "
                                               "delayed_recall")
    parts, skipped, used, gaps = [], [], [], []
    for key, g in t.groupby(MATCH, dropna=False, sort=True):
        where = _setting(dict(zip(MATCH, key)), ("task_label", "tau", "batch", "hidden"))
        jordan = g[g["model"] == "jordan"]
        if not jordan["strategy"].isin(SELF_FEEDING).any():
            skipped.append(f"{where} (Jordan trained only with teacher forcing: its fed-back "
                           "truth carries nothing about the recalled symbol, a failure by "
                           "construction; train free_running or scheduled_sampling too)")
            continue
        best = _best_per_model(g, "acc_gen", higher=True)
        if set(best) != {"elman", "jordan"}:
            skipped.append(f"{where} (one model missing)")
            continue
        why = [f"{m} + {s}: {w}" for m, (s, x) in best.items()
               if (w := _gate_training(x, r))]
        if why:
            skipped.append(f"{where} ({'; '.join(why)})")
            continue
        (se, e), (sj, j) = best["elman"], best["jordan"]
        chance = _chance(g.iloc[0])
        ci = diff_ci(e["acc_gen"], j["acc_gen"])
        text = (f"{where}: Elman + {se} {e['acc_gen'].mean():.3f} vs Jordan + {sj} "
                f"{j['acc_gen'].mean():.3f} (chance {_g(chance)}), gap {ci.estimate:+.3f} "
                f"[{ci.low:+.3f}, {ci.high:+.3f}]")
        used.append(pd.concat([e, j]))
        gaps.append(ci.estimate)
        if np.isfinite(chance) and e["acc_gen"].mean() <= chance + r.learned_margin:
            parts.append((NOT_MEASURED, text + "; Elman did not learn the task either"))
        elif ci.low > r.accuracy_gap:
            parts.append((HOLDS, text))
        elif ci.high < r.accuracy_gap:
            parts.append((FAILS, text))
        else:
            parts.append((NOT_MEASURED, text + f"; the interval straddles {r.accuracy_gap}"))
    return Decision(every_setting(parts), max(gaps) if gaps else math.nan,
                    "accuracy (Elman − Jordan)", _evidence(parts, skipped),
                    pd.concat(used) if used else None)


def jordan_parity(rows: pd.DataFrame, r: Rules) -> Decision:
    trained, _ = _trained(rows, r)
    t = trained[trained["task"] == "running_parity"]
    if (t["model"] == "jordan").sum() == 0:
        return Decision(NOT_MEASURED, evidence="no trained Jordan rows on running_parity")
    parts, skipped, used, accs = [], [], [], []
    for key, g in t.groupby(MATCH, dropna=False, sort=True):
        where = _setting(dict(zip(MATCH, key)), ("task_label", "tau", "batch", "hidden"))
        best = _best_per_model(g, "acc_gen", higher=True)
        if "jordan" not in best:
            continue
        sj, j = best["jordan"]
        why = _gate_training(j, r)
        if why:
            skipped.append(f"{where} (Jordan + {sj}: {why})")
            continue
        ci = mean_ci(j["acc_gen"])
        used.append(j)
        accs.append(ci.estimate)
        text = f"{where}: Jordan + {sj} accuracy {ci.text('{:.3f}')}"
        e_ci = mean_ci(best["elman"][1]["acc_gen"]) if "elman" in best else None
        if e_ci is not None:
            text += f"; Elman + {best['elman'][0]} {e_ci.text('{:.3f}')}"
        if ci.low >= r.solved:
            parts.append((HOLDS, text))
        elif ci.high < r.solved and e_ci is not None and e_ci.low >= r.solved:
            parts.append((FAILS, text))
        else:
            parts.append((NOT_MEASURED, text + "; neither clearly solved it: train longer"))
    return Decision(every_setting(parts), min(accs) if accs else math.nan, "accuracy",
                    _evidence(parts, skipped), pd.concat(used) if used else None)


def exposure_bias(rows: pd.DataFrame, r: Rules) -> Decision:
    trained, controls = _trained(rows, r)
    tf = trained[_is_tf(trained) & trained["loss_tf"].notna() & trained["loss_free"].notna()]
    if tf.empty:
        return Decision(NOT_MEASURED, evidence="no trained Jordan + teacher-forcing rows with "
                                               "both losses")
    parts, skipped, used, gaps = [], [], [], []
    for key, g in tf.groupby(MATCH, dropna=False, sort=True):
        where = _setting(dict(zip(MATCH, key)), ("task_label", "tau", "batch", "hidden"))
        why = _gate_training(g, r)
        if why:
            skipped.append(f"{where} ({why})")
            continue
        c = controls[_is_tf(controls)]
        for k, v in zip(MATCH, key):
            c = c[c[k] == v]
        if c.empty:
            skipped.append(f"{where} (no W = 0 control: cannot tell a generation setting "
                           "from a redundant channel)")
            continue
        worth = diff_ci(c["loss_tf"], g["loss_tf"])
        own = mean_ci(c["loss_free"] - c["loss_tf"])
        control = (f"W = 0 control: teacher-forced loss {c['loss_tf'].mean():.3f} vs "
                   f"{g['loss_tf'].mean():.3f}, the feedback is worth "
                   + (f"{worth.estimate:+.3f} [{worth.low:+.3f}, {worth.high:+.3f}] nats/token"
                      if worth else "n/a (under 2 control seeds)")
                   + (f", control gap {own.estimate:+.3f}" if own else ""))
        if worth is None or not worth.above(r.negligible_nats):
            skipped.append(f"{where} ({control}: the fed-back output carries nothing the "
                           "input lacks, so free-running only corrupts a redundant channel — "
                           "not a generation setting)")
            continue
        if g["loss_tf"].mean() < r.negligible_nats:
            skipped.append(f"{where} (learned perfectly, loss {g['loss_tf'].mean():.2g}: "
                           "nothing to expose)")
            continue
        gap = mean_ci(g["loss_free"] - g["loss_tf"])
        used.append(pd.concat([g, c]))
        gaps.append(gap.estimate)
        text = (f"{where}: free − teacher-forced {gap.estimate:+.3f} [{gap.low:+.3f}, "
                f"{gap.high:+.3f}] nats/token over {gap.n} seeds; {control}")
        if gap.low > 0:
            parts.append((HOLDS, text))
        elif gap.high < r.negligible_nats:
            parts.append((FAILS, text))
        else:
            parts.append((NOT_MEASURED, text))
    return Decision(some_setting(parts), max(gaps) if gaps else math.nan,
                    "nats/token (free − TF), largest", _evidence(parts, skipped),
                    pd.concat(used) if used else None)


def belief_jordan_better(rows: pd.DataFrame, r: Rules) -> Decision:
    trained, _ = _trained(rows, r)
    t = trained[trained["model"].isin(["elman", "jordan"])]
    t = t[~t.apply(_generation_task, axis=1)] if len(t) else t
    if t.empty:
        return Decision(NOT_MEASURED, evidence="no task with trained Elman and Jordan rows")
    parts, skipped, used, diffs = [], [], [], []
    for key, g in t.groupby(MATCH, dropna=False, sort=True):
        where = _setting(dict(zip(MATCH, key)), ("task_label", "tau", "batch", "hidden"))
        best = _best_per_model(g, "loss_gen", higher=False)
        if set(best) != {"elman", "jordan"}:
            continue
        why = [f"{m} + {s}: {w}" for m, (s, x) in best.items()
               if (w := _gate_training(x, r))]
        if why:
            skipped.append(f"{where} ({'; '.join(why)})")
            continue
        (se, e), (sj, j) = best["elman"], best["jordan"]
        ci = diff_ci(e["loss_gen"], j["loss_gen"])
        used.append(pd.concat([e, j]))
        diffs.append(-ci.estimate)
        text = (f"{where}: Elman + {se} {e['loss_gen'].mean():.3g} vs Jordan + {sj} "
                f"{j['loss_gen'].mean():.3g} nats/token, Elman − Jordan {ci.estimate:+.3g} "
                f"[{ci.low:+.3g}, {ci.high:+.3g}]")
        verdict = HOLDS if ci.low > 0 else FAILS if ci.high < 0 else NOT_MEASURED
        parts.append((verdict, text))
    return Decision(every_setting(parts), float(np.mean(diffs)) if diffs else math.nan,
                    "nats/token (Jordan − Elman), mean", _evidence(parts, skipped),
                    pd.concat(used) if used else None)


def _loss_gate(r: Rules) -> str:
    return (f"trained cells: ≥ {r.min_seeds} seeds and ≥ {r.min_train_steps} training steps "
            "per side; a 95% CI over seeds on every comparison")


# --------------------------------------------------------------------------- the rules


RULES: tuple[Rule, ...] = (
    Rule("bptt_time_linear", "chapter",
         "BPTT's run time is O(τ): it grows linearly with the sequence length.",
         _law_how("step time"), _law_gate_text,
         lambda rows, r: linear_law(rows, "step_ms_median", BPTTS, r)),
    Rule("bptt_not_parallel", "chapter",
         "BPTT's O(τ) time cannot be reduced by parallel hardware (more workers or more cores): "
         "the forward graph is inherently sequential.",
         lambda r: (f"Elman BPTT on all cores against 1 thread, and Elman split along time "
                    f"(scan_bptt, deer) over N workers against 1: holds when in every "
                    f"comparison the speedup's 95% CI lies at or below {r.no_gain}× while "
                    f"Jordan + teacher forcing on the same hardware (the positive control) "
                    f"gains above {r.no_gain}×; does not hold when a BPTT speedup's CI lies "
                    f"above {r.no_gain}×. Elman split by batch with fewer sequences than "
                    f"workers is left out (it cannot gain by construction)"),
         _hw_gate, bptt_hardware),
    Rule("bptt_memory_linear", "chapter",
         "BPTT's memory is O(τ): the states of every step are kept for the backward pass.",
         _law_how("saved bytes"), _law_gate_text,
         lambda rows, r: linear_law(rows, "saved_bytes", BPTTS, r)),
    Rule("tf_depth_one", "chapter",
         "Teacher forcing decouples the time steps: the sequential depth is 1, not τ.",
         lambda r: ("depth of every Jordan + teacher-forcing cell, a constant of the strategy "
                    "registry copied into each row: 'by construction' when it is 1 at every τ "
                    "(the timings vs workers and cores are the measured evidence); does not "
                    "hold when the registry says otherwise"),
         lambda r: "any Jordan + teacher-forcing row", tf_depth),
    Rule("tf_parallel_workers", "chapter",
         "With teacher forcing the time steps can be computed in parallel: more workers or "
         "more cores, less time.",
         lambda r: (f"Jordan + teacher forcing split along time over N workers against 1, and "
                    f"on all cores against 1 thread: holds when in some comparison the "
                    f"speedup's 95% CI lies above {r.no_gain}×; does not hold when in every "
                    f"comparison it lies at or below"),
         _hw_gate, tf_hardware),
    Rule("tf_faster_one_device", "consequence",
         "On one device, teacher forcing's batched steps train faster than sequential BPTT, "
         "even against the best BPTT implementation, from some τ on.",
         lambda r: (f"speedup of Jordan + teacher forcing over the fastest Elman BPTT measured "
                    f"({', '.join(BPTTS)}) at the largest τ of every setting (threads, B, H): "
                    f"holds when its 95% CI lies above {r.faster:g}× in every setting; does not "
                    f"hold when it lies at or below {r.faster:g}× in one"),
         _speed_gate, tf_faster),
    Rule("tf_speedup_not_overhead", "consequence",
         "Teacher forcing's speedup over BPTT is parallel work, not the sequential loop's "
         "framework overhead: it remains against a compiled sequential loop.",
         lambda r: (f"per setting (1 thread and all cores, B = 1 and B = 32), teacher forcing "
                    f"against the framework loop (bptt) and the compiled loop "
                    f"(bptt_compiled): holds when the speedup over the compiled loop has its "
                    f"95% CI above {r.faster:g}× in every setting; does not hold when it lies "
                    f"at or below in one. The evidence splits the framework-loop speedup into "
                    "overhead (framework / compiled loop) and what remains (parallel work)"),
         _speed_gate, tf_not_overhead),
    Rule("deer_depth", "consequence",
         "Elman's sequential depth can be cut to O(k log τ) by parallel Newton iterations "
         "(DEER) when its dynamics contract (spectral radius ρ < 1).",
         lambda r: (f"Elman + deer / quasi_deer at ρ < {r.contracting:g} (or the default init), "
                    f"per setting: holds when every run converged, the iteration count k grows "
                    f"slower than τ^{r.growth} (95% CI of its log-log slope below {r.growth}) "
                    f"and k·⌈log₂τ⌉ < τ at the largest τ; does not hold when a run did not "
                    f"converge, k grows faster (CI above {r.growth}) or k·⌈log₂τ⌉ ≥ τ; in every "
                    f"setting. Settings with ρ ≥ {r.contracting:g} are shown, not judged"),
         lambda r: (f"≥ {r.min_taus} distinct τ spanning ≥ {r.min_tau_ratio:g}× and ≥ "
                    f"{r.min_cells} cells per setting, with iterations and converged recorded"),
         deer_depth),
    Rule("deer_faster", "consequence",
         "… and on this device DEER is faster than sequential BPTT.",
         lambda r: (f"speedup of Elman + deer / quasi_deer over the fastest Elman BPTT measured, "
                    f"per setting and τ: holds when in some setting its 95% CI lies above "
                    f"{r.faster:g}×; does not hold when in every setting it lies at or below"),
         _speed_gate, deer_faster),
    Rule("jordan_less_powerful", "chapter",
         "A Jordan (output-to-hidden) network is less powerful: what its outputs do not carry "
         "is lost (delayed recall, y(t) = x(t−k)).",
         lambda r: (f"delayed_recall, accuracy on its own outputs, each model's best strategy "
                    f"(Jordan's among teacher_forcing, free_running, scheduled_sampling): holds "
                    f"when the 95% CI of Elman − Jordan lies above {r.accuracy_gap}; does not "
                    f"hold when it lies below {r.accuracy_gap}; in every matched configuration; "
                    f"not measured when Elman is within {r.learned_margin} of chance"),
         lambda r: (_loss_gate(r) + "; Jordan trained with a strategy fed its own outputs "
                    "(free_running or scheduled_sampling)"), jordan_weaker),
    Rule("jordan_fine_parity", "chapter",
         "A Jordan network is fine when its outputs carry the state it needs (running parity, "
         "y(t) = y(t−1) xor x(t)).",
         lambda r: (f"running_parity, Jordan's best strategy, accuracy on its own outputs: "
                    f"holds when its 95% CI lies at or above {r.solved}; does not hold when it "
                    f"lies below while Elman's lies at or above; in every configuration"),
         _loss_gate, jordan_parity),
    Rule("exposure_bias", "chapter",
         "Exposure bias: trained with teacher forcing, the model does worse on its own outputs "
         "(free-running loss above the teacher-forced loss).",
         lambda r: (f"Jordan + teacher forcing, free-running − teacher-forced loss per seed, "
                    f"per task, judged only in a generation setting: the W = 0 control (Jordan "
                    f"with W held at 0, option w_zero) must have a teacher-forced loss above "
                    f"the model's by more than {r.negligible_nats} nats/token (95% CI), i.e. "
                    f"the fed-back output carries what the input lacks; holds when on some "
                    f"such task the gap's CI lies above 0; does not hold when on every such "
                    f"task it lies below {r.negligible_nats}"),
         lambda r: _loss_gate(r) + "; a W = 0 control at the same task, τ, B, H and steps",
         exposure_bias),
    Rule("belief_jordan_better", "common belief",
         "Common belief: a Jordan network works better than an Elman network because the "
         "output y is easier to control than the hidden state h.",
         lambda r: ("tested through its consequence (the 'because' is not measurable): "
                    "per-token loss on the model's own outputs, each model's best strategy, "
                    "same task/τ/B/H/steps (tasks without input left out): holds when the 95% "
                    "CI of Elman − Jordan lies above 0 on every task; does not hold when it "
                    "lies below 0 on one"),
         _loss_gate, belief_jordan_better),
)
CLAIMS = RULES


def judge(rule: Rule, rows: pd.DataFrame, rules: Rules = Rules()) -> Claim:
    d = rule.decide(rows, rules)
    if d.verdict not in VERDICTS:
        raise ValueError(f"verdict: {d.verdict!r} is not one of {VERDICTS}")
    cells = d.cells if d.cells is not None else rows.iloc[:0]
    cells = cells.drop_duplicates("cell_id") if "cell_id" in cells.columns else cells
    ids = tuple(sorted(cells["cell_id"].dropna().astype(str))) if "cell_id" in cells else ()
    value = float(d.value) if d.value is not None and np.isfinite(d.value) else math.nan
    return Claim(rule.key, rule.source, rule.text, rule.how(rules), rule.gate(rules),
                 d.verdict, value, d.unit, d.evidence or "no evidence", len(cells), ids)


@dataclass(frozen=True)
class Evidence:
    """The rows the claims are judged on (other derived tables are the report's)."""

    rows: pd.DataFrame
    fits: pd.DataFrame | None = None
    speedup: pd.DataFrame | None = None
    crossover: pd.DataFrame | None = None
    workers: pd.DataFrame | None = None
    rules: Rules = field(default_factory=Rules)


def evaluate(source, rules: Rules | None = None) -> list[Claim]:
    """Every claim judged on ``source``: result rows (a DataFrame, raw or loaded) or an
    :class:`Evidence`. Returns one :class:`Claim` record per rule, in page order."""
    if isinstance(source, Evidence):
        rows, rules = source.rows, rules or source.rules
    else:
        rows = source
    if "strategy_label" not in rows.columns:
        rows = load.load(rows)
    rules = rules or Rules()
    return [judge(rule, rows, rules) for rule in RULES]


def table(claims: list[Claim]) -> pd.DataFrame:
    df = pd.DataFrame([asdict(c) for c in claims])
    df["cell_ids"] = df["cell_ids"].map(" ".join)
    return df
