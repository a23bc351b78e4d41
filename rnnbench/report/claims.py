"""Each claim of the chapter beside the measured evidence and a verdict.

A verdict is ``holds``, ``does not hold`` or ``not measured`` — decided by a
rule written next to it (thresholds in :class:`Rules`), never guessed: when
the rows needed are missing, or too noisy to decide, the verdict is
``not measured`` and the evidence says why. Timings are compared through
intervals (the quartiles of the raw samples), never as two single medians.
A claim that the results only echo — a constant of the strategy registry —
gets ``by construction``: true by how the code is written, not measured.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from ..errors import UsageError
from . import load
from .fit import t_quantile
from .tables import SETTING as SETTING_COLS
from .tables import ok_rows, single

HOLDS, FAILS, NOT_MEASURED = "holds", "does not hold", "not measured"
BY_CONSTRUCTION = "by construction"
VERDICTS = (HOLDS, FAILS, NOT_MEASURED, BY_CONSTRUCTION)


@dataclass(frozen=True)
class Rules:
    """The thresholds every verdict is decided by (shown on the claims page)."""

    exponent_tol: float = 0.15       # |k - 1| within this: linear in τ
    max_ci_halfwidth: float = 0.25   # a wider 95% interval decides nothing
    no_gain: float = 1.1             # a speedup at or below this is no speedup
    faster: float = 1.0              # a speedup above this: faster on one device
    # Speedups are decided from the interval [q1(base)/q3(new), q3(base)/q1(new)] of the
    # raw samples' quartiles: only an interval clear of the threshold decides.
    accuracy_gap: float = 0.05       # accuracy difference that counts as a gap
    learned_margin: float = 0.05     # above chance by this much: the task was learned
    solved: float = 0.9              # accuracy that counts as solving a task
    negligible_nats: float = 0.01    # a loss gap below this (nats/token) is no gap


@dataclass(frozen=True)
class Evidence:
    """What the claims are judged on: the tidy rows and the derived tables."""

    rows: pd.DataFrame
    fits: pd.DataFrame
    speedup: pd.DataFrame
    crossover: pd.DataFrame
    workers: pd.DataFrame
    rules: Rules = field(default_factory=Rules)


@dataclass(frozen=True)
class Claim:
    key: str
    source: str      # "chapter", "consequence" or "common belief"
    claim: str
    rule: str        # how the verdict is decided
    verdict: str
    value: float     # the headline number
    unit: str
    evidence: str    # the number(s) in words, with the cells they come from
    cells: int       # how many result rows were used
    cell_ids: tuple = ()


def _claim(key, source, text, rule, verdict, value=math.nan, unit="", evidence="",
           cells=None) -> Claim:
    if verdict not in VERDICTS:
        raise ValueError(f"verdict: {verdict!r} is not one of {VERDICTS}")
    ids = tuple(sorted(cells["cell_id"].dropna().astype(str))) if cells is not None else ()
    n = len(cells) if cells is not None else 0
    return Claim(key, source, text, rule, verdict, float(value), unit, evidence, n, ids)


def _g(x: float) -> str:
    return f"{x:.3g}" if np.isfinite(x) else "n/a"


def _setting(row) -> str:
    return (f"{row['task_label']}, B={row['batch']:g}, H={row['hidden']:g}, "
            f"{row['device']}×{row['threads']:g} thr")


# --------------------------------------------------------------------------- exponents


def _exponent_verdict(f, rules: Rules, target: float) -> str:
    half = (f["ci_high"] - f["ci_low"]) / 2
    if not np.isfinite(half) or half > rules.max_ci_halfwidth:
        return NOT_MEASURED
    return HOLDS if abs(f["exponent"] - target) <= rules.exponent_tol else FAILS


def _combine(verdicts: list[str]) -> str:
    """Every conclusive part must hold; any that does not hold decides."""
    if FAILS in verdicts:
        return FAILS
    if HOLDS in verdicts:
        return HOLDS
    return NOT_MEASURED


def _exponent_claim(ev: Evidence, key, text, measure, unit_name, strategies) -> Claim:
    r = ev.rules
    rule = (f"log-log slope of {unit_name} in τ (Elman, {' and '.join(strategies)}); holds when "
            f"it is within 1 ± {r.exponent_tol} with a 95% CI narrower than "
            f"± {r.max_ci_halfwidth}, in every setting")
    fits = ev.fits[(ev.fits["model"] == "elman") & ev.fits["strategy_label"].isin(strategies)
                   & (ev.fits["measure"] == measure)]
    used = ok_rows(ev.rows)
    used = used[(used["model"] == "elman") & used["strategy_label"].isin(strategies)
                & single(used) & used[measure].notna()]
    if fits.empty:
        return _claim(key, "chapter", text, rule, NOT_MEASURED,
                      evidence=f"no Elman {'/'.join(strategies)} rows with {unit_name} "
                               "at two or more τ")
    verdicts = [_exponent_verdict(f, r, 1.0) for _, f in fits.iterrows()]
    parts = [f"{f['strategy_label']}: k = {_g(f['exponent'])} "
             f"[{_g(f['ci_low'])}, {_g(f['ci_high'])}] over τ {f['tau_min']:g}–{f['tau_max']:g} "
             f"({_setting(f)}; {f['n_points']} cells)"
             for _, f in fits.iterrows()]
    headline = fits["exponent"].iloc[0]
    return _claim(key, "chapter", text, rule, _combine(verdicts), headline,
                  "exponent of τ", "; ".join(parts), used)


def bptt_time(ev: Evidence) -> Claim:
    return _exponent_claim(ev, "bptt_time_linear",
                           "BPTT's run time is O(τ): it grows linearly with the sequence length.",
                           "step_ms_median", "step time", ["bptt", "bptt_fused"])


def bptt_memory(ev: Evidence) -> Claim:
    return _exponent_claim(ev, "bptt_memory_linear",
                           "BPTT's memory is O(τ): the states of every step are kept for the "
                           "backward pass.", "saved_bytes", "saved bytes", ["bptt", "bptt_fused"])


# --------------------------------------------------------------------------- workers


def _interval_verdict(lo: float, hi: float, threshold: float) -> str | None:
    """'above' when the whole interval lies above ``threshold``, 'below' when it lies at
    or below it, None when it straddles it (or is unknown)."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    if lo > threshold:
        return "above"
    if hi <= threshold:
        return "below"
    return None


def _interval_text(lo: float, hi: float) -> str:
    if np.isfinite(lo) and np.isfinite(hi):
        return f"[{lo:.2f}, {hi:.2f}]×"
    return "no interval: no raw samples or IQR"


def _worker_text(best) -> str:
    return (f"best {best['speedup']:.2f}× (quartile interval "
            f"{_interval_text(best['speedup_lo'], best['speedup_hi'])}) on "
            f"{best['workers']:g} workers (split {best['split']}; {best['model']} + "
            f"{best['strategy_label']}, τ={best['tau']:g}, B={best['batch']:g}; "
            f"{best['step_ms_median_mean']:.3g} ms vs {best['one_ms']:.3g} ms on one worker "
            "in the same harness)")


@dataclass(frozen=True)
class WorkerClaim:
    """One claim about speedup with workers, decided on the speedup's interval."""

    key: str
    text: str
    what: str           # the rows, in words
    select: object      # workers table -> mask
    expect_gain: bool   # True: some worker count must give a gain; False: none may


BPTT_WORKERS = WorkerClaim(
    "bptt_not_parallel",
    "BPTT's O(τ) time cannot be reduced by parallel workers: the forward graph is inherently "
    "sequential.",
    "Elman at batch 1",
    lambda w: (w["model"] == "elman") & (w["batch"] == 1),
    expect_gain=False)
TF_WORKERS = WorkerClaim(
    "tf_parallel_workers",
    "With teacher forcing the time steps can be computed in parallel: more workers, less time.",
    "Jordan + teacher forcing split along time",
    lambda w: ((w["model"] == "jordan") & w["strategy_label"].str.startswith("teacher_forcing")
               & (w["split"] == "time")),
    expect_gain=True)


def workers_claim(ev: Evidence, spec: WorkerClaim) -> Claim:
    r = ev.rules
    want = "some worker count gives" if spec.expect_gain else "no worker count gives"
    rule = (f"{spec.what} on several workers, against one worker timed in the same worker-group "
            f"harness: holds when {want} more than {r.no_gain}× over one worker, judged on the "
            f"speedup interval [q1(one)/q3(N), q3(one)/q1(N)] of the raw samples; an interval "
            f"that straddles {r.no_gain}× decides nothing")
    w = ev.workers
    sel = w[spec.select(w) & (w["workers"] > 1)] if len(w) else w
    if sel.empty:
        return _claim(spec.key, "chapter", spec.text, rule, NOT_MEASURED,
                      evidence=f"no {spec.what} rows on more than one worker")
    paired = sel[sel["speedup"].notna()]
    if paired.empty:
        return _claim(spec.key, "chapter", spec.text, rule, NOT_MEASURED,
                      evidence=f"{len(sel)} {spec.what} row(s) on several workers, but no "
                               "1-worker baseline timed in the worker-group harness (the "
                               "single-process rows are not comparable)")
    rows = ok_rows(ev.rows)
    keys = ["model", "strategy_label", "task_label", "tau", "batch", "hidden", "device",
            "threads", "split"]
    used = rows.merge(paired[keys].drop_duplicates(), on=keys)
    used = used[used["workers"] >= 1]
    sides = [_interval_verdict(lo, hi, r.no_gain)
             for lo, hi in zip(paired["speedup_lo"], paired["speedup_hi"])]
    if "above" in sides:
        verdict = HOLDS if spec.expect_gain else FAILS
        best = paired.iloc[[i for i, x in enumerate(sides) if x == "above"]]
        best = best.loc[best["speedup_lo"].idxmax()]
    elif all(x == "below" for x in sides):
        verdict = FAILS if spec.expect_gain else HOLDS
        best = paired.loc[paired["speedup"].idxmax()]
    else:
        verdict = NOT_MEASURED
        best = paired.loc[paired["speedup"].idxmax()]
    evidence = _worker_text(best)
    if verdict == NOT_MEASURED:
        evidence += (f"; the spread is too wide to decide: an interval straddles {r.no_gain}× "
                     "(more repeats or seeds)")
    return _claim(spec.key, "chapter", spec.text, rule, verdict, best["speedup"], "× speedup",
                  evidence, used)


def bptt_workers(ev: Evidence) -> Claim:
    return workers_claim(ev, BPTT_WORKERS)


def tf_workers(ev: Evidence) -> Claim:
    return workers_claim(ev, TF_WORKERS)


# --------------------------------------------------------------------------- depth, speed


def tf_depth(ev: Evidence) -> Claim:
    text = "Teacher forcing decouples the time steps: the sequential depth is 1, not τ."
    rule = ("depth of every Jordan + teacher-forcing cell, a constant of the strategy registry "
            "copied into each row: 'by construction' when it is 1 at every τ (not measured — "
            "the timings vs τ and workers are the measured evidence); does not hold when the "
            "registry says otherwise")
    rows = ok_rows(ev.rows)
    used = rows[(rows["model"] == "jordan") & (rows["strategy"] == "teacher_forcing")
                & rows["depth"].notna()]
    if used.empty:
        return _claim("tf_depth_one", "chapter", text, rule, NOT_MEASURED,
                      evidence="no Jordan + teacher-forcing rows with a recorded depth")
    verdict = BY_CONSTRUCTION if (used["depth"] == 1).all() else FAILS
    bptt = rows[(rows["model"] == "elman") & (rows["strategy"] == "bptt") & rows["depth"].notna()]
    extra = ""
    if len(bptt):
        big = bptt.loc[bptt["tau"].idxmax()]
        extra = f"; Elman + bptt: depth {big['depth']:g} at τ={big['tau']:g}"
    evidence = ("by construction (from the strategy registry), not measured: depth "
                f"{', '.join(f'{d:g}' for d in sorted(used['depth'].unique()))} over "
                f"τ {used['tau'].min():g}–{used['tau'].max():g}{extra}")
    return _claim("tf_depth_one", "chapter", text, rule, verdict, used["depth"].max(),
                  "sequential steps", evidence, used)


def tf_faster(ev: Evidence) -> Claim:
    r = ev.rules
    text = ("On one device, teacher forcing's batched steps train faster than sequential BPTT, "
            "even against the fused kernel, from some τ on.")
    rule = ("speedup of Jordan + teacher forcing over Elman + bptt_fused (bptt where no fused "
            "rows) at the largest τ of every setting, judged on its interval [q1(BPTT)/q3(TF), "
            f"q3(BPTT)/q1(TF)] of the raw samples: holds when it lies above {r.faster:g}× in "
            f"every setting; does not hold when it lies at or below {r.faster:g}× in one; "
            "otherwise not measured")
    c = ev.crossover
    if c.empty:
        return _claim("tf_faster_one_device", "consequence", text, rule, NOT_MEASURED,
                      evidence="no τ at which both teacher forcing and BPTT were timed")
    base = "bptt_fused" if (c["baseline"] == "bptt_fused").any() else "bptt"
    c = c[c["baseline"] == base]
    sp = ev.speedup
    sides, parts = [], []
    for _, x in c.iterrows():
        at = sp[(sp["tau"] == x["tau_max"]) & (sp["teacher_forcing"] == x["teacher_forcing"])]
        for col in SETTING_COLS:
            at = at[at[col] == x[col]]
        lo = float(at[f"speedup_vs_{base}_lo"].iloc[0]) if len(at) else math.nan
        hi = float(at[f"speedup_vs_{base}_hi"].iloc[0]) if len(at) else math.nan
        point = float(at[f"speedup_vs_{base}"].iloc[0]) if len(at) else math.nan
        sides.append(_interval_verdict(lo, hi, r.faster))
        parts.append(f"{_setting(x)}: {x['finding']}; at τ={x['tau_max']:g} speedup "
                     f"{_g(point)}× {_interval_text(lo, hi)}"
                     + (f"; cross-over τ ≈ {x['tau_cross']:.3g}"
                        if np.isfinite(x["tau_cross"]) else ""))
    rows = ok_rows(ev.rows)
    used = rows[single(rows) & (
        ((rows["model"] == "jordan") & (rows["strategy"] == "teacher_forcing"))
        | ((rows["model"] == "elman") & (rows["strategy_label"] == base)))]
    taus = c["tau_cross"].dropna()
    if "below" in sides:
        verdict = FAILS
    elif all(x == "above" for x in sides):
        verdict = HOLDS
    else:
        verdict = NOT_MEASURED
        parts.append(f"the spread is too wide to decide: an interval straddles {r.faster:g}× "
                     "(more repeats or seeds)")
    return _claim("tf_faster_one_device", "consequence", text, rule, verdict,
                  taus.max() if len(taus) else math.nan,
                  "cross-over τ", f"vs {base}: " + "; ".join(parts), used)


# --------------------------------------------------------------------------- capability


def _trained(ev: Evidence, task: str) -> pd.DataFrame:
    rows = ok_rows(ev.rows)
    rows = rows[(rows["task"] == task) & (rows["train_steps"] > 0)].copy()
    rows["acc_gen"] = rows["acc_free"].fillna(rows["acc_tf"])
    rows["loss_gen"] = rows["loss_free"].fillna(rows["loss_tf"])
    return rows


MATCH = ["task_label", "tau", "batch", "hidden", "train_steps"]


def _paired(rows: pd.DataFrame, value: str, best) -> pd.DataFrame:
    """Per matched configuration, each model's best strategy (seeds averaged)."""
    rows = rows[rows[value].notna() & rows["model"].isin(["elman", "jordan"])]
    if rows.empty:
        return pd.DataFrame()
    means = rows.groupby(MATCH + ["model", "strategy_label"])[value].mean().reset_index()
    pick = means.loc[means.groupby(MATCH + ["model"])[value].transform(best) == means[value]]
    pick = pick.drop_duplicates(MATCH + ["model"])
    wide = pick.pivot(index=MATCH, columns="model", values=[value, "strategy_label"])
    if "elman" not in wide[value].columns or "jordan" not in wide[value].columns:
        return pd.DataFrame()
    out = pd.DataFrame({"elman": wide[(value, "elman")], "jordan": wide[(value, "jordan")],
                        "elman_strategy": wide[("strategy_label", "elman")],
                        "jordan_strategy": wide[("strategy_label", "jordan")]}).dropna()
    return out.reset_index()


def _chance(row) -> float:
    from .. import tasks  # here, not above: reading rows does not need torch

    try:
        return tasks.make(row["task"], **_opts(row["task_options"])).chance_accuracy()
    except (UsageError, TypeError, ValueError, KeyError):
        return math.nan


def _opts(value) -> dict:
    return {k: v for k, v in load.options(value).items() if k}


def _used(rows: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    return rows.merge(pairs[MATCH].drop_duplicates(), on=MATCH)


def jordan_weaker(ev: Evidence) -> Claim:
    r = ev.rules
    text = ("A Jordan (output-to-hidden) network is less powerful: what its outputs do not carry "
            "is lost (delayed recall, y(t) = x(t−k)).")
    rule = (f"delayed_recall, accuracy on its own outputs (free-running; Elman has no feedback), "
            f"best strategy per model, seeds averaged: holds when Elman beats Jordan by more than "
            f"{r.accuracy_gap} on average; not measured when Elman is within "
            f"{r.learned_margin} of chance (not trained enough)")
    rows = _trained(ev, "delayed_recall")
    pairs = _paired(rows, "acc_gen", "max")
    if pairs.empty:
        return _claim("jordan_less_powerful", "chapter", text, rule, NOT_MEASURED,
                      evidence="no trained Elman and Jordan rows on delayed_recall")
    chances = [c for c in (_chance(x) for _, x in rows.iterrows()) if np.isfinite(c)]
    chance = max(chances) if chances else math.nan
    gap = float((pairs["elman"] - pairs["jordan"]).mean())
    evidence = (f"accuracy Elman {pairs['elman'].mean():.3f} vs Jordan {pairs['jordan'].mean():.3f}"
                f" (chance {_g(chance)}), gap {gap:+.3f} over {len(pairs)} matched "
                f"configuration(s), τ {pairs['tau'].min():g}–{pairs['tau'].max():g}")
    if np.isfinite(chance) and pairs["elman"].mean() <= chance + r.learned_margin:
        verdict = NOT_MEASURED
        evidence += "; Elman did not learn the task either, so the gap says nothing"
    else:
        verdict = HOLDS if gap > r.accuracy_gap else FAILS
    return _claim("jordan_less_powerful", "chapter", text, rule, verdict, gap,
                  "accuracy (Elman − Jordan)", evidence, _used(rows, pairs))


def jordan_parity(ev: Evidence) -> Claim:
    r = ev.rules
    text = ("A Jordan network is fine when its outputs carry the state it needs (running parity, "
            "y(t) = y(t−1) xor x(t)).")
    rule = (f"running_parity, Jordan's accuracy on its own outputs (free-running), best strategy:"
            f" holds when ≥ {r.solved}; does not hold when below while Elman reaches it; "
            f"otherwise not measured (neither trained enough)")
    rows = _trained(ev, "running_parity")
    jordan = rows[(rows["model"] == "jordan") & rows["acc_gen"].notna()]
    if jordan.empty:
        return _claim("jordan_fine_parity", "chapter", text, rule, NOT_MEASURED,
                      evidence="no trained Jordan rows on running_parity")
    acc_j = jordan.groupby("strategy_label")["acc_gen"].mean()
    elman = rows[(rows["model"] == "elman") & rows["acc_gen"].notna()]
    acc_e = elman.groupby("strategy_label")["acc_gen"].mean().max() if len(elman) else math.nan
    best = acc_j.max()
    evidence = (f"Jordan + {acc_j.idxmax()}: accuracy {best:.3f} over {len(jordan)} cells "
                f"(τ {jordan['tau'].min():g}–{jordan['tau'].max():g}); Elman best {_g(acc_e)}")
    if best >= r.solved:
        verdict = HOLDS
    elif np.isfinite(acc_e) and acc_e >= r.solved:
        verdict = FAILS
    else:
        verdict = NOT_MEASURED
        evidence += "; neither model reached the threshold: train longer"
    return _claim("jordan_fine_parity", "chapter", text, rule, verdict, best, "accuracy",
                  evidence, pd.concat([jordan, elman]))


def exposure_bias(ev: Evidence) -> Claim:
    text = ("Exposure bias: trained with teacher forcing, the model does worse on its own outputs "
            "(free-running loss above the teacher-forced loss).")
    rule = (f"Jordan + teacher forcing, loss_free − loss_tf per cell, per task (a task the model "
            f"learns perfectly leaves nothing to expose): holds when, on some task, the 95% CI "
            f"of the mean gap lies above 0; does not hold when on every task it lies below "
            f"{ev.rules.negligible_nats} nats/token; otherwise (or under 2 cells per task) "
            f"not measured")
    rows = ok_rows(ev.rows)
    used = rows[(rows["model"] == "jordan") & (rows["strategy"] == "teacher_forcing")
                & (rows["train_steps"] > 0) & rows["loss_tf"].notna() & rows["loss_free"].notna()]
    gap = used["loss_free"] - used["loss_tf"]
    tasks = []  # (task, n, mean, lo, hi)
    for task, g in gap.groupby(used["task_label"]):
        if len(g) < 2:
            continue
        n, mean = len(g), float(g.mean())
        half = t_quantile(0.975, n - 1) * float(g.std(ddof=1)) / math.sqrt(n)
        tasks.append((task, n, mean, mean - half, mean + half))
    if not tasks:
        return _claim("exposure_bias", "chapter", text, rule, NOT_MEASURED,
                      evidence=f"{len(used)} trained Jordan + teacher-forcing cell(s) with both "
                               "losses; need 2 of one task")
    evidence = "; ".join(f"{t}: gap {m:+.3g} nats/token, 95% CI [{lo:+.3g}, {hi:+.3g}] "
                         f"over {n} cells" for t, n, m, lo, hi in tasks)
    if any(lo > 0 for *_, lo, _ in tasks):
        verdict = HOLDS
    elif all(hi < ev.rules.negligible_nats for *_, hi in tasks):
        verdict = FAILS
    else:
        verdict = NOT_MEASURED
        evidence += "; the intervals are too wide to decide: more seeds or cells"
    value = max(m for _, _, m, _, _ in tasks)
    return _claim("exposure_bias", "chapter", text, rule, verdict, value,
                  "nats/token (free − TF), largest task mean", evidence, used)


def belief_jordan_better(ev: Evidence) -> Claim:
    text = ("Common belief: a Jordan network works better than an Elman network because the "
            "output y is easier to control than the hidden state h.")
    rule = ("tested through its consequence (the 'because' is not measurable): per-token loss "
            "when the model runs on its own outputs, best strategy per model, seeds averaged, "
            "same task/τ/B/H/steps: holds when Jordan's loss is lower on every task measured")
    rows = ok_rows(ev.rows)
    rows = rows[rows["train_steps"] > 0].copy()
    rows["loss_gen"] = rows["loss_free"].fillna(rows["loss_tf"])
    pairs = _paired(rows, "loss_gen", "min")
    if pairs.empty:
        return _claim("belief_jordan_better", "common belief", text, rule, NOT_MEASURED,
                      evidence="no task with trained Elman and Jordan rows")
    pairs["jordan_better"] = pairs["jordan"] < pairs["elman"]
    per_task = pairs.groupby("task_label").agg(elman=("elman", "mean"), jordan=("jordan", "mean"),
                                               better=("jordan_better", "all"))
    parts = [f"{t}: Elman {x['elman']:.3g} vs Jordan {x['jordan']:.3g} nats/token "
             f"({'Jordan' if x['better'] else 'Elman'} better)" for t, x in per_task.iterrows()]
    verdict = HOLDS if per_task["better"].all() else FAILS
    value = float((pairs["jordan"] - pairs["elman"]).mean())
    return _claim("belief_jordan_better", "common belief", text, rule, verdict, value,
                  "nats/token (Jordan − Elman)", "; ".join(parts), _used(rows, pairs))


CLAIMS = (bptt_time, bptt_workers, bptt_memory, tf_depth, tf_workers, tf_faster,
          jordan_weaker, jordan_parity, exposure_bias, belief_jordan_better)


def evaluate(ev: Evidence) -> list[Claim]:
    return [judge(ev) for judge in CLAIMS]


def table(claims: list[Claim]) -> pd.DataFrame:
    df = pd.DataFrame([asdict(c) for c in claims])
    df["cell_ids"] = df["cell_ids"].map(" ".join)
    return df
