"""``rnnbench compare``: two runs matched configuration by configuration, with a decision
rule calibrated on identical runs (an A/A test: tests/test_compare_rule.py,
benchmarks/bench_aa.py).

Each side is one results folder (a run) or several (runs pooled).  A *configuration* is
what a cell computes (:mod:`.runs`): its seeds and replicates are its repetitions, one
value each (a row's median step time, its paired speedup, ...).  Two things are judged
apart, because two runs differ by a shift common to every configuration (the machine's
state: frequency, the other users, the hour) that no repetition inside one run can see:

- **the run's shift**: NEW/BASE of the geometric means over every configuration both
  runs measured, with Welch's 95% interval over the runs of each side (each run's mean
  log value one repetition): decided only with :data:`MIN_REPLICATES` runs a side, else
  *undecided* — with one run a side, machine drift and a change of the code that slows
  every configuration alike cannot be told apart;
- **each configuration**, against that shift: its ratio NEW/BASE of geometric means, and
  its deviation from the run's shift (the ratio over the median ratio of all the
  configurations, :data:`MIN_CONFIGS` of them at least), whose 95% interval is Welch's on
  the log values (:func:`rnnbench.stats.log_ratio_ci`) widened by the shift's own
  uncertainty.  With fewer configurations the ratio itself is judged, and only with
  :data:`MIN_REPLICATES` runs a side.

Marks (threshold T, default 1.10): **slower** (larger; for a speedup: smaller) when the
whole interval lies beyond T — past the threshold *and* equality rejected at 5%;
**faster** when it lies wholly beyond 1/T the other way; **same** within [1/T, T];
**unclear** when it straddles T or 1/T; **undecided** with fewer than
:data:`MIN_REPLICATES` repetitions a side.  The Mann–Whitney U p-value is printed beside
each.  ``saved_bytes`` is an exact count: its ratio decides alone.

Exit code: 0 when nothing is slower (larger) beyond T, 1 when something is, or when a
configuration ok in BASE is not ok in NEW (both named); 2 for bad input.  Both sides'
machine fingerprints (CPU model, cores, torch, BLAS) are compared, a mismatch printed as a
warning above the table.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rnnbench.errors import UsageError
from rnnbench.facts import COMPARE_THRESHOLD, OK
from rnnbench.report import env as env_mod
from rnnbench.report import runs
from rnnbench.report.tables import ok_rows
from rnnbench.results.labels import PLAIN, baseline_text
from rnnbench.stats import diff_ci, log_ratio_ci, mann_whitney_p

MIN_REPLICATES = 3  # repetitions (or runs) a side, at least, for any verdict but undecided
MIN_CONFIGS = 3  # configurations, at least, to estimate the run's shift from them
THRESHOLD = COMPARE_THRESHOLD
SAME, UNCLEAR, UNDECIDED = "same", "unclear", "undecided"


@dataclass(frozen=True)
class Measure:
    """What ``--measure`` compares: the row column, its name and unit, the marks when
    NEW is worse or better, whether a higher value is worse, whether it is exact."""

    column: str
    what: str
    unit: str
    worse: str
    better: str
    higher_is_worse: bool = True
    exact: bool = False


MEASURES = {
    "step_ms": Measure("step_ms_median", "training step time", "ms", "slower", "faster"),
    "speedup": Measure(
        "speedup_median",
        "paired speedup over the baseline",
        "×",
        "smaller",
        "larger",
        higher_is_worse=False,
    ),
    "chain_ms": Measure("chain_ms_median", "the sequential chain's time", "ms", "slower", "faster"),
    "peak_bytes": Measure("peak_bytes", "peak memory", "bytes", "larger", "smaller"),
    "saved_bytes": Measure(
        "saved_bytes", "bytes saved for backward", "bytes", "larger", "smaller", exact=True
    ),
    "loss_free": Measure("loss_free", "free-running loss", "nats/token", "larger", "smaller"),
}
FINGERPRINT = (("CPU", "cpu_model"), ("cores", "node_cpus"), ("torch", "torch"), ("BLAS", "blas"))


def rule(measure: str, threshold: float) -> str:
    """The decision rule in words, as the page and the command print it."""
    m = MEASURES[measure]
    if m.exact:
        return (
            f"an exact count: ratio NEW/BASE of the values decides alone; {m.worse} "
            f"above T = {threshold:g}, {m.better} below 1/T, same otherwise"
        )
    direction = "above T" if m.higher_is_worse else "below 1/T"
    other = "below 1/T" if m.higher_is_worse else "above T"
    return (
        f"each configuration: NEW/BASE of the geometric means over its repetitions "
        f"(replicates and seeds), judged as its deviation from the run's shift (the "
        f"median ratio of all configurations, {MIN_CONFIGS} at least; a shift common to "
        f"every configuration is the machine's or the code's and cannot be told apart "
        f"within one run), with Welch's 95% t-interval of the log ratio widened by the "
        f"shift's uncertainty; {m.worse} when the whole interval lies {direction} "
        f"(T = {threshold:g}), {m.better} when it lies {other}, same within [1/T, T], "
        f"unclear when it straddles T or 1/T, undecided with fewer than "
        f"{MIN_REPLICATES} repetitions a side. The run's shift: Welch over the runs of "
        f"each side, decided only with {MIN_REPLICATES} runs a side. Mann-Whitney U "
        "p-values shown beside"
    )


def mark(
    lo: float, hi: float, ratio: float, n: tuple[int, int], threshold: float, m: Measure
) -> str:
    """The mark of one configuration from its ratio's interval (see :func:`rule`)."""
    if m.exact:
        lo = hi = ratio
    elif min(n) < MIN_REPLICATES or not (math.isfinite(lo) and math.isfinite(hi)):
        return UNDECIDED
    up, down = (m.worse, m.better) if m.higher_is_worse else (m.better, m.worse)
    if lo > threshold:
        return up
    if hi < 1.0 / threshold:
        return down
    if lo >= 1.0 / threshold and hi <= threshold:
        return SAME
    return UNCLEAR


@dataclass(frozen=True)
class Shift:
    """NEW/BASE common to every configuration (geometric mean over the configurations both
    sides measured), its 95% interval over each side's runs, and its mark."""

    ratio: float
    low: float
    high: float
    runs: tuple[int, int]  # runs (folders) of BASE, of NEW
    mark: str


@dataclass(frozen=True)
class Comparison:
    """Matched configurations (values, ratio, deviation from the run's shift, interval,
    mark), the run's shift, those in one run only, what fails the gate, and whether the
    machines differ."""

    measure: str
    threshold: float
    labels: tuple  # (base label, new label)
    env: dict  # label -> environment (env.environment)
    matched: pd.DataFrame
    only: pd.DataFrame  # configurations with no ok row in one of the runs, and why
    worse: tuple  # names of the configurations NEW is worse on (and WHOLE_RUN)
    broken: tuple  # names of the configurations ok in BASE, not ok in NEW
    mismatch: tuple = ()  # fingerprint fields that differ: "CPU: a vs b"
    shift: Shift | None = None

    @property
    def exit_code(self) -> int:
        return 1 if self.worse or self.broken else 0


WHOLE_RUN = "the whole run (every configuration alike)"


def describe(key: dict, varying: list[str]) -> str:
    """'elman + bptt, delayed_recall(k=5), τ=64, B=16, H=128' and every other field
    whose value differs between configurations (never an empty one); a paired cell's
    baseline as 'baseline(threads=1)', a plain cell's not at all."""
    parts = [
        f"{key['model']} + {key['strategy_label']}",
        str(key["task_label"]),
        f"τ={key['tau']:g}",
        f"B={key['batch']:g}",
        f"H={key['hidden']:g}",
    ]
    shown = {"model", "strategy_label", "task_label", "tau", "batch", "hidden"}
    for k in varying:
        v = key[k]
        if k in shown or v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
            continue
        if k == "baseline":  # a paired cell: 'baseline(threads=1)'; a plain one: nothing
            if baseline_text(v) != PLAIN:
                parts.append(f"baseline({baseline_text(v)})")
            continue
        parts.append(
            f"{k}={v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else f"{k}={v}"
        )
    return ", ".join(parts)


def _status(group: pd.DataFrame) -> str:
    bad = sorted(set(group["status"]) - {OK})
    return OK if (group["status"] == OK).any() else "not ok (" + ", ".join(bad) + ")"


def _values(group: pd.DataFrame, column: str) -> list[float]:
    values = pd.to_numeric(group[column], errors="coerce").dropna()
    return [float(v) for v in values if v > 0]


def fingerprint_mismatch(envs: dict[str, pd.DataFrame]) -> tuple[str, ...]:
    """The machine fields (:data:`FINGERPRINT`) whose recorded values differ between the
    sides: 'CPU: X vs Y'."""
    out = []
    (a, ra), (b, rb) = envs.items()
    for name, col in FINGERPRINT:
        va = sorted({str(v) for v in ra.get(col, pd.Series(dtype=object)).dropna()})
        vb = sorted({str(v) for v in rb.get(col, pd.Series(dtype=object)).dropna()})
        if va and vb and va != vb:
            out.append(f"{name}: {', '.join(va)} ({a}) vs {', '.join(vb)} ({b})")
    return tuple(out)


@dataclass
class _Config:
    """One matched configuration's values on each side, per run (source folder)."""

    name: str
    key: dict
    base: dict[int, list[float]]
    new: dict[int, list[float]]

    def values(self, side: str) -> list[float]:
        return [v for vs in getattr(self, side).values() for v in vs]

    @property
    def log_ratio(self) -> float:
        return float(np.mean(np.log(self.values("new"))) - np.mean(np.log(self.values("base"))))


def run_shift(configs: list[_Config], threshold: float, m: Measure) -> Shift | None:
    """The shift common to every configuration, over the configurations every run of both
    sides measured: per run the mean log value over them, then Welch between the sides."""
    sources = {
        side: sorted({s for c in configs for s in getattr(c, side)}) for side in ("base", "new")
    }
    common = [
        c for c in configs if all(s in getattr(c, side) for side in sources for s in sources[side])
    ]
    if not common:
        return None
    per_run = {
        side: [
            float(np.mean([np.mean(np.log(getattr(c, side)[s])) for c in common]))
            for s in sources[side]
        ]
        for side in sources
    }
    ratio = math.exp(float(np.mean(per_run["new"]) - np.mean(per_run["base"])))
    ci = diff_ci(per_run["new"], per_run["base"])
    lo, hi = (math.exp(ci.low), math.exp(ci.high)) if ci is not None else (math.nan, math.nan)
    n = (len(per_run["base"]), len(per_run["new"]))
    return Shift(ratio, lo, hi, n, mark(lo, hi, ratio, n, threshold, m))


def judge(
    c: _Config,
    shift: float,
    shift_se: float,
    adjusted: bool,
    runs_each: tuple[int, ...],
    threshold: float,
    m: Measure,
) -> dict:
    """One configuration's row of the table: ratio, deviation from the run's shift, the
    interval of what is judged, the U test, the mark."""
    base, new = c.values("base"), c.values("new")
    ratio = math.exp(c.log_ratio)
    ci = log_ratio_ci(new, base)
    n = (len(base), len(new))
    if ci is None:
        lo = hi = math.nan
    elif adjusted:  # the deviation: widened by the shift's uncertainty
        half = math.hypot((math.log(ci.high) - math.log(ci.low)) / 2, 1.96 * shift_se)
        lo, hi = math.exp(c.log_ratio - shift - half), math.exp(c.log_ratio - shift + half)
    else:
        lo, hi = ci.low, ci.high
        if not m.exact and min(runs_each) < MIN_REPLICATES:
            n = (0, 0)  # one run a side: its drift and the code cannot be told apart
    judged = math.exp(c.log_ratio - shift) if adjusted else ratio
    return {
        "configuration": c.name,
        **c.key,
        "base_value": float(np.exp(np.mean(np.log(base)))),
        "new_value": float(np.exp(np.mean(np.log(new)))),
        "ratio": ratio,
        "vs_run": judged if adjusted else math.nan,
        "ratio_lo": lo,
        "ratio_hi": hi,
        "p_mann_whitney": mann_whitney_p(new, base),
        "base_n": len(base),
        "new_n": len(new),
        "mark": mark(lo, hi, judged, n, threshold, m),
    }


def _configurations(
    rows: pd.DataFrame, labels: list[str], m: Measure
) -> tuple[list[_Config], list[dict], list[str], list[str]]:
    """(matched configurations, those ok in one run only, those broken in NEW, the keys)."""
    keys = runs.config_keys(rows)
    keyed = rows.assign(**{k: rows[k].astype(object).where(rows[k].notna(), None) for k in keys})
    varying = [k for k in keys if keyed[k].astype(str).nunique() > 1]
    configs, only, broken = [], [], []
    for key_values, group in keyed.groupby(keys, dropna=False, sort=True):
        key = dict(zip(keys, key_values))
        name = describe(key, varying)
        sides = {label: group[group[runs.RUN] == label] for label in labels}
        status = {label: (_status(g) if len(g) else "absent") for label, g in sides.items()}
        ok = {label: ok_rows(g) for label, g in sides.items()}
        if any(o.empty for o in ok.values()):
            only.append({"configuration": name, **{f"{lab} status": status[lab] for lab in labels}})
            if status[labels[0]] == OK and status[labels[1]] != "absent":
                broken.append(name)
            continue
        per_source = [
            {int(s): v for s, g in ok[lab].groupby(runs.SOURCE) if (v := _values(g, m.column))}
            for lab in labels
        ]
        if per_source[0] and per_source[1]:  # measured in this configuration on both sides
            configs.append(_Config(name, key, per_source[0], per_source[1]))
    return configs, only, broken, keys


def compare_rows(
    rows: pd.DataFrame, measure: str = "step_ms", threshold: float = THRESHOLD
) -> Comparison:
    """Compare the two sides in ``rows`` (:func:`runs.load_sides`): the first is BASE."""
    if measure not in MEASURES:
        raise UsageError(f"--measure: unknown measure {measure!r}; allowed: {', '.join(MEASURES)}")
    if not (isinstance(threshold, (int, float)) and threshold >= 1.0 and math.isfinite(threshold)):
        raise UsageError(
            f"--threshold: must be a number >= 1 (a NEW/BASE ratio), got {threshold!r}"
        )
    labels = runs.names(rows)
    if len(labels) != 2:
        raise UsageError(f"compare: needs exactly two sides, got {len(labels)}")
    m = MEASURES[measure]
    if runs.SOURCE not in rows.columns:
        rows = rows.assign(**{runs.SOURCE: 0})
    for name, r in runs.per_run(rows):
        if ok_rows(r).empty:
            raise UsageError(f"{name}: no ok rows to compare (every row failed)")
    configs, only, broken, keys = _configurations(rows, labels, m)
    if not configs:
        what = (
            ""
            if not only
            else (f" ({len(only)} configuration(s), none ok with {m.column} in both)")
        )
        raise UsageError(
            f"compare: {labels[0]} and {labels[1]} have no configuration in "
            f"common with {m.column} measured in both{what}; configurations "
            f"are matched on {', '.join(keys)}"
        )
    logs = np.array([c.log_ratio for c in configs])
    adjusted = not m.exact and len(configs) >= MIN_CONFIGS
    shift = float(np.median(logs)) if adjusted else 0.0
    # the median's standard error, from the spread of the ratios by their MAD: robust to
    # the configurations that really changed (they must not widen every other's interval)
    mad_sd = 1.4826 * float(np.median(np.abs(logs - shift))) if adjusted else 0.0
    shift_se = 1.2533 * mad_sd / math.sqrt(len(logs)) if adjusted else 0.0
    runs_each = tuple(
        len({s for c in configs for s in getattr(c, side)}) for side in ("base", "new")
    )
    matched = pd.DataFrame(
        [judge(c, shift, shift_se, adjusted, runs_each, threshold, m) for c in configs]
    )
    whole = None if m.exact else run_shift(configs, threshold, m)
    worse = list(matched.loc[matched["mark"] == m.worse, "configuration"])
    if whole is not None and whole.mark == m.worse:
        worse.append(WHOLE_RUN)
    per = dict(runs.per_run(rows))
    env = {name: env_mod.environment(r) for name, r in per.items()}
    only_cols = ["configuration"] + [f"{lab} status" for lab in labels]
    return Comparison(
        measure,
        float(threshold),
        tuple(labels),
        env,
        matched,
        pd.DataFrame(only, columns=only_cols),
        tuple(worse),
        tuple(broken),
        fingerprint_mismatch(per),
        whole,
    )


def compare(
    base, new, measure: str = "step_ms", threshold: float = THRESHOLD, labels=None
) -> Comparison:
    """Compare two sides, each a results folder (or DataFrame) or a list of them."""
    return compare_rows(runs.load_sides(base, new, labels), measure, threshold)


# --------------------------------------------------------------------------- output

ENV_FIELDS = ("CPU", "GPU", "device", "threads", "torch", "ray", "rnnbench", "git commit", "rows")


def _num(x: float, unit: str) -> str:
    if not np.isfinite(x):
        return ""
    if unit == "bytes":
        return f"{x / 2**20:.3g} MiB"
    return f"{x:.4g}"


def table(c: Comparison) -> pd.DataFrame:
    """The matched configurations as a reader's table (ratio with its interval)."""
    m = MEASURES[c.measure]
    d = c.matched
    unit = "MiB" if m.unit == "bytes" else m.unit
    base, new = c.labels
    interval = [
        f"[{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else "none"
        for lo, hi in zip(d["ratio_lo"], d["ratio_hi"])
    ]
    return pd.DataFrame(
        {
            "configuration": d["configuration"],
            f"{base} ({unit})": [_num(v, m.unit) for v in d["base_value"]],
            f"{new} ({unit})": [_num(v, m.unit) for v in d["new_value"]],
            "n": [f"{a}/{b}" for a, b in zip(d["base_n"], d["new_n"])],
            "NEW/BASE": d["ratio"].map("{:.3f}".format),
            "vs run's shift": d["vs_run"].map(lambda v: f"{v:.3f}" if np.isfinite(v) else ""),
            "95% interval": interval,
            "U test p": d["p_mann_whitney"].map(lambda p: f"{p:.3f}" if np.isfinite(p) else ""),
            "mark": d["mark"],
        }
    )


def text(c: Comparison) -> str:
    m = MEASURES[c.measure]
    base, new = c.labels
    lines = [f"rnnbench compare: {m.what} ({c.measure}), NEW/BASE, threshold {c.threshold:g}"]
    for field in c.mismatch:
        lines.append(
            f"warning: the machines differ ({field}): this compares machines, not only code"
        )
    for role, label in (("BASE", base), ("NEW", new)):
        env = c.env[label]
        lines.append(
            f"{role:<4} {label}: " + "; ".join(f"{k} {env[k]}" for k in ENV_FIELDS if k in env)
        )
    lines.append(f"rule: {rule(c.measure, c.threshold)}")
    lines += ["", table(c).to_string(index=False)]
    if c.shift is not None:
        sh = c.shift
        interval = f"[{sh.low:.3f}, {sh.high:.3f}]" if np.isfinite(sh.low) else "no interval"
        why = (
            f" (judged with {MIN_REPLICATES} runs a side: in one run machine drift and "
            "the code cannot be told apart)"
            if sh.mark == UNDECIDED
            else ""
        )
        lines += [
            "",
            f"the run's shift (every configuration alike): NEW/BASE {sh.ratio:.3f} "
            f"{interval} over {sh.runs[0]} and {sh.runs[1]} run(s): {sh.mark}{why}",
        ]
    if len(c.only):
        lines += [
            "",
            f"Not compared: {len(c.only)} configuration(s) without an ok row in one of the runs:",
            c.only.to_string(index=False),
        ]
    counts = c.matched["mark"].value_counts()
    lines += [
        "",
        f"{len(c.matched)} matched: " + ", ".join(f"{counts[k]} {k}" for k in counts.index),
    ]
    lines += [f"{m.worse.upper()}: {name}" for name in c.worse]
    lines += [f"NOT OK IN NEW: {name}" for name in c.broken]
    lines.append(
        "exit 1: regression" if c.exit_code else f"exit 0: nothing {m.worse} beyond the threshold"
    )
    return "\n".join(lines)


def _plain(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


def as_json(c: Comparison) -> str:
    """One JSON object: the rule, both runs' environments, every configuration."""

    def records(df):
        return [{k: _plain(v) for k, v in r.items()} for r in df.to_dict("records")]

    m = MEASURES[c.measure]
    obj = {
        "measure": c.measure,
        "column": m.column,
        "threshold": c.threshold,
        "rule": rule(c.measure, c.threshold),
        "base": c.labels[0],
        "new": c.labels[1],
        "machines_differ": list(c.mismatch),
        "shift": None if c.shift is None else {k: _plain(v) for k, v in vars(c.shift).items()},
        "env": c.env,
        "matched": records(c.matched),
        "not_compared": records(c.only),
        "worse": list(c.worse),
        "not_ok_in_new": list(c.broken),
        "exit_code": c.exit_code,
    }
    return json.dumps(obj, indent=1, allow_nan=False)
