"""``rnnbench compare BASE NEW``: two runs, configuration by configuration, and a gate.

Rows are matched by configuration (:mod:`.runs`: the cell fields without seed and
without the machine fields that tell the runs apart); only ok rows are compared, seeds
pooled. Per matched configuration: both medians, the ratio NEW/BASE, its interval and
a mark.

- ``step_ms`` (training step time) has raw samples: the median is that of every raw
  sample (``step_ms_samples``, seeds pooled), and the interval of the ratio comes from
  both sides' quartiles, [Q1(new)/Q3(base), Q3(new)/Q1(base)] — as the claims judge
  speedups. *slower* when the whole interval lies above the threshold, *faster* when it
  lies below 1/threshold, *same* otherwise (an interval straddling 1 is always same; a
  configuration with neither raw samples nor IQR has no interval and is same).
- ``peak_bytes``, ``saved_bytes``, ``loss_free`` have no raw samples: the ratio of the
  two point values (median over seeds) decides alone: *larger* above the threshold,
  *smaller* below 1/threshold, *same* otherwise.

Exit code: 0 when nothing is slower (larger) beyond the threshold, 1 when something is,
or when a configuration ok in BASE is not ok in NEW (both named); 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rnnbench.argtypes import positive_float
from rnnbench.errors import UsageError
from rnnbench.facts import COMPARE_THRESHOLD, OK
from rnnbench.report import env as env_mod
from rnnbench.report import runs
from rnnbench.report.tables import ok_rows, quartiles, speedup_interval

# --measure -> (row column, what it is, unit, mark when NEW is worse, mark when better)
MEASURES = {
    "step_ms": ("step_ms_median", "training step time", "ms", "slower", "faster"),
    "peak_bytes": ("peak_bytes", "peak memory", "bytes", "larger", "smaller"),
    "saved_bytes": ("saved_bytes", "bytes saved for backward", "bytes", "larger", "smaller"),
    "loss_free": ("loss_free", "free-running loss", "nats/token", "larger", "smaller"),
}
SAME = "same"
THRESHOLD = COMPARE_THRESHOLD
BASE, NEW = "base", "new"

RULE_SAMPLES = (
    "ratio = NEW/BASE of the medians of every raw sample (seeds pooled); interval = "
    "[Q1(NEW)/Q3(BASE), Q3(NEW)/Q1(BASE)] from both sides' quartiles of the raw samples (a "
    "row without samples: median -/+ IQR/2; neither: no interval, same); {worse} when the "
    "whole interval lies above the threshold T, {better} when it lies below 1/T, same "
    "otherwise (an interval that straddles 1 is always same)"
)
RULE_POINT = (
    "no raw samples for this measure: ratio = NEW/BASE of the two point values (median "
    "over seeds), no interval; {worse} when the ratio is above the threshold T, {better} when "
    "below 1/T, same otherwise"
)


def rule(measure: str, threshold: float) -> str:
    _, _, _, worse, better = MEASURES[measure]
    text = RULE_SAMPLES if measure == "step_ms" else RULE_POINT
    return text.format(worse=worse, better=better).replace(
        "threshold T", f"threshold T = {threshold:g}"
    )


@dataclass(frozen=True)
class Comparison:
    """Matched configurations (with medians, ratio, interval, mark), those in one run
    only, and what fails the gate."""

    measure: str
    threshold: float
    labels: tuple  # (base label, new label)
    env: dict  # label -> environment (env.environment)
    matched: pd.DataFrame
    only: pd.DataFrame  # configurations with no ok row in one of the runs, and why
    worse: tuple  # names of the configurations NEW is slower/larger on
    broken: tuple  # names of the configurations ok in BASE, not ok in NEW

    @property
    def exit_code(self) -> int:
        return 1 if self.worse or self.broken else 0


def _describe(key: dict, varying: list[str]) -> str:
    """'elman + bptt, delayed_recall(k=5), τ=64, B=16, H=128' and every other field
    whose value differs between configurations."""
    parts = [
        f"{key['model']} + {key['strategy_label']}",
        str(key["task_label"]),
        f"τ={key['tau']:g}",
        f"B={key['batch']:g}",
        f"H={key['hidden']:g}",
    ]
    shown = {"model", "strategy_label", "task_label", "tau", "batch", "hidden"}
    for k in varying:
        if k not in shown:
            v = key[k]
            parts.append(
                f"{k}={v:g}"
                if isinstance(v, (int, float)) and not isinstance(v, bool)
                else f"{k}={v}"
            )
    return ", ".join(parts)


def _samples(group: pd.DataFrame) -> np.ndarray:
    vals = np.asarray(
        [v for s in group["step_ms_samples"] for v in s if isinstance(v, (int, float))],
        dtype=float,
    )
    return vals[np.isfinite(vals)]


def _side(group: pd.DataFrame, measure: str) -> tuple[float, float, float]:
    """(median, q1, q3) of one configuration in one run; q1, q3 NaN without samples."""
    column = MEASURES[measure][0]
    if measure == "step_ms":
        vals = _samples(group)
        med = float(np.median(vals)) if vals.size else float(group[column].median())
        q1, q3 = quartiles(group)
        return med, q1, q3
    return float(group[column].median()), math.nan, math.nan


def _mark(lo: float, hi: float, threshold: float, measure: str) -> str:
    _, _, _, worse, better = MEASURES[measure]
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return SAME
    if lo > threshold:
        return worse
    if hi < 1.0 / threshold:
        return better
    return SAME


def _status(group: pd.DataFrame) -> str:
    bad = sorted(set(group["status"]) - {OK})
    return OK if (group["status"] == OK).any() else "not ok (" + ", ".join(bad) + ")"


def compare_rows(
    rows: pd.DataFrame, measure: str = "step_ms", threshold: float = THRESHOLD
) -> Comparison:
    """Compare the two runs in ``rows`` (:func:`runs.load_runs`): the first is BASE."""
    if measure not in MEASURES:
        raise UsageError(f"--measure: unknown measure {measure!r}; allowed: {', '.join(MEASURES)}")
    if not (isinstance(threshold, (int, float)) and threshold >= 1.0 and math.isfinite(threshold)):
        raise UsageError(
            f"--threshold: must be a number >= 1 (a NEW/BASE ratio), got {threshold!r}"
        )
    labels = runs.names(rows)
    if len(labels) != 2:
        raise UsageError(f"compare: needs exactly two runs, got {len(labels)}")
    column = MEASURES[measure][0]
    keys = runs.config_keys(rows)
    keyed = rows.assign(**{k: rows[k].astype(object).where(rows[k].notna(), None) for k in keys})
    for name, r in runs.per_run(rows):
        if ok_rows(r).empty:
            raise UsageError(f"{name}: no ok rows to compare (every row failed)")
    varying = [k for k in keys if keyed[k].astype(str).nunique() > 1]

    matched, only, worse, broken = [], [], [], []
    for key, group in keyed.groupby(keys, dropna=False, sort=True):
        key = dict(zip(keys, key))
        name = _describe(key, varying)
        sides = {label: group[group[runs.RUN] == label] for label in labels}
        status = {label: (_status(g) if len(g) else "absent") for label, g in sides.items()}
        ok = {label: ok_rows(g) for label, g in sides.items()}
        if any(o.empty for o in ok.values()):
            only.append({"configuration": name, **{f"{lab} status": status[lab] for lab in labels}})
            if status[labels[0]] == OK and status[labels[1]] != "absent":
                broken.append(name)
            continue
        if not all(o[column].notna().any() for o in ok.values()):
            continue  # this measure was not taken in this configuration (an untrained cell)
        (b_med, b_q1, b_q3), (n_med, n_q1, n_q3) = (_side(ok[lab], measure) for lab in labels)
        ratio = n_med / b_med if b_med > 0 else math.nan
        if measure == "step_ms":
            lo, hi = speedup_interval(n_q1, n_q3, b_q1, b_q3)
        else:
            lo = hi = ratio
        mark = _mark(lo, hi, threshold, measure)
        if mark == MEASURES[measure][3]:
            worse.append(name)
        matched.append(
            {
                "configuration": name,
                **key,
                "base_median": b_med,
                "new_median": n_med,
                "ratio": ratio,
                "ratio_lo": lo if measure == "step_ms" else math.nan,
                "ratio_hi": hi if measure == "step_ms" else math.nan,
                "base_q1": b_q1,
                "base_q3": b_q3,
                "new_q1": n_q1,
                "new_q3": n_q3,
                "base_seeds": int(ok[labels[0]]["seed"].nunique()),
                "new_seeds": int(ok[labels[1]]["seed"].nunique()),
                "mark": mark,
            }
        )
    if not matched:
        what = "" if not only else f" ({len(only)} configuration(s), none ok with {column} in both)"
        raise UsageError(
            f"compare: {labels[0]} and {labels[1]} have no configuration in common "
            f"with {column} measured in both{what}; configurations are matched on "
            f"{', '.join(keys)}"
        )
    env = {name: env_mod.environment(r) for name, r in runs.per_run(rows)}
    only_cols = ["configuration"] + [f"{lab} status" for lab in labels]
    return Comparison(
        measure,
        float(threshold),
        tuple(labels),
        env,
        pd.DataFrame(matched),
        pd.DataFrame(only, columns=only_cols),
        tuple(worse),
        tuple(broken),
    )


def compare(
    base, new, measure: str = "step_ms", threshold: float = THRESHOLD, labels=None
) -> Comparison:
    """Compare two results folders (or DataFrames) configuration by configuration."""
    return compare_rows(runs.load_runs([base, new], labels), measure, threshold)


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
    unit = MEASURES[c.measure][2]
    m = c.matched
    shown_unit = "MiB" if unit == "bytes" else unit
    base, new = c.labels
    none = "none (no raw samples)" if c.measure == "step_ms" else "none (point values)"
    interval = [
        f"[{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else none
        for lo, hi in zip(m["ratio_lo"], m["ratio_hi"])
    ]
    return pd.DataFrame(
        {
            "configuration": m["configuration"],
            f"{base} ({shown_unit})": [_num(v, unit) for v in m["base_median"]],
            f"{new} ({shown_unit})": [_num(v, unit) for v in m["new_median"]],
            "NEW/BASE": m["ratio"].map("{:.3f}".format),
            "interval": interval,
            "mark": m["mark"],
        }
    )


def text(c: Comparison) -> str:
    _, what, _, worse, _ = MEASURES[c.measure]
    base, new = c.labels
    lines = [f"rnnbench compare: {what} ({c.measure}), NEW/BASE, threshold {c.threshold:g}"]
    for role, label in (("BASE", base), ("NEW", new)):
        env = c.env[label]
        lines.append(
            f"{role:<4} {label}: " + "; ".join(f"{k} {env[k]}" for k in ENV_FIELDS if k in env)
        )
    lines.append(f"rule: {rule(c.measure, c.threshold)}")
    lines += ["", table(c).to_string(index=False)]
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
    for name in c.worse:
        lines.append(f"{worse.upper()}: {name}")
    for name in c.broken:
        lines.append(f"NOT OK IN NEW: {name}")
    lines.append(
        "exit 1: regression"
        if c.exit_code
        else "exit 0: nothing " + worse + " beyond the threshold"
    )
    return "\n".join(lines)


def _plain(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


def as_json(c: Comparison) -> str:
    """One JSON object: the rule, both runs' environments, every configuration."""

    def records(df):
        return [{k: _plain(v) for k, v in r.items()} for r in df.to_dict("records")]

    obj = {
        "measure": c.measure,
        "column": MEASURES[c.measure][0],
        "threshold": c.threshold,
        "rule": rule(c.measure, c.threshold),
        "base": c.labels[0],
        "new": c.labels[1],
        "env": c.env,
        "matched": records(c.matched),
        "not_compared": records(c.only),
        "worse": list(c.worse),
        "not_ok_in_new": list(c.broken),
        "exit_code": c.exit_code,
    }
    return json.dumps(obj, indent=1, allow_nan=False)


# --------------------------------------------------------------------------- CLI hooks


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Compare two runs (results folders) configuration by configuration: both medians, "
        "the ratio NEW/BASE with its interval, and a mark (slower / faster / same). "
        "Configurations are matched on the cell fields without seed (seeds pooled) and "
        "without device/threads when each run has one value of them; only ok rows compare."
    )
    parser.add_argument("base", metavar="BASE", help="the reference results folder")
    parser.add_argument("new", metavar="NEW", help="the results folder judged against BASE")
    parser.add_argument(
        "--threshold",
        type=positive_float,
        default=THRESHOLD,
        metavar="T",
        help=f"NEW/BASE ratio that counts as a regression (default "
        f"{THRESHOLD}). step_ms: slower when the whole quartile interval "
        "[Q1(NEW)/Q3(BASE), Q3(NEW)/Q1(BASE)] lies above T, faster when "
        "it lies below 1/T, same otherwise (an interval straddling 1 is "
        "same); other measures have no raw samples: the ratio of the "
        "point values (median over seeds) decides alone",
    )
    parser.add_argument(
        "--measure",
        choices=list(MEASURES),
        default="step_ms",
        help="what to compare (default step_ms: the training step time)",
    )
    parser.add_argument(
        "--label",
        nargs=2,
        metavar=("BASE_NAME", "NEW_NAME"),
        help="names for the two runs (default: the folders' names)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.epilog = (
        "Exit code: 0 when nothing is slower (larger) beyond the threshold; 1 "
        "when something is, or a configuration ok in BASE is not ok in NEW (each "
        "named); 2 for bad input (a folder with no rows, runs with nothing in "
        "common)."
    )


def main(args: argparse.Namespace) -> int:
    c = compare(args.base, args.new, args.measure, args.threshold, args.label)
    print(as_json(c) if args.json else text(c))
    return c.exit_code
