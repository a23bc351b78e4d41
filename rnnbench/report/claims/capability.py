"""Decisions about what the networks learn: Jordan's capacity (delayed recall, running
parity), exposure bias (teacher-forcing-trained against self-fed-trained, in a generation
setting with its W = 0 control), and the common belief that Jordan works better.  Every
model is evaluated running free with the feedback it was trained with (``eval_feedback``).
(The claims' texts: :mod:`.catalogue`.)"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from rnnbench.facts import FAILS, HOLDS, NOT_MEASURED, SELF_FEEDING
from rnnbench.report import tidy
from rnnbench.report.claims.rules import (
    Decision,
    Rules,
    decision,
    every_setting,
    fmt,
    is_tf,
    setting_text,
    some_setting,
    trained_cells,
    training_gate,
)
from rnnbench.stats import diff_ci, mean_ci

# --------------------------------------------------------------------------- capability


MATCH = ["task_label", "tau", "batch", "hidden", "train_steps"]


# model -> (its best strategy's label, that strategy's rows)
Best = dict[str, tuple[str, pd.DataFrame]]


def _matched(rows: pd.DataFrame) -> Iterator[tuple[Any, str, pd.DataFrame]]:
    """Each matched configuration (task, τ, B, H, training steps): its key, its
    description and its rows."""
    for key, g in rows.groupby(MATCH, dropna=False, sort=True):
        yield key, setting_text(dict(zip(MATCH, key)), ("task_label", "tau", "batch", "hidden")), g


def _passes_gate(best: Best, where: str, r: Rules, skipped: list[str]) -> bool:
    """Whether each model's best strategy passes the training gate; if not, the setting
    is listed in ``skipped`` with every side's reason."""
    why = [f"{m} + {s}: {w}" for m, (s, x) in best.items() if (w := training_gate(x, r))]
    if why:
        skipped.append(f"{where} ({'; '.join(why)})")
    return not why


def _best_per_model(rows: pd.DataFrame, value: str, higher: bool) -> Best:
    """model -> (strategy, per-seed values) of its best strategy by mean ``value``."""
    out: Best = {}
    for model, g in rows[rows[value].notna()].groupby("model"):
        means = g.groupby("strategy_label")[value].mean()
        pick = means.idxmax() if higher else means.idxmin()
        out[model] = (pick, g[g["strategy_label"] == pick])
    return out


def _chance(rows: pd.DataFrame) -> float:
    """The task's chance accuracy, as the rows recorded it (NaN: not recorded)."""
    values = pd.to_numeric(rows.get("chance_acc", pd.Series(dtype=float)), errors="coerce")
    return float(values.dropna().iloc[0]) if values.notna().any() else math.nan


def _generation_task(row: pd.Series) -> bool:
    """A task whose input carries nothing (the model generates from its own outputs)."""
    return str(tidy.options(row["task_options"]).get("input", "")) in ("none", "blank")


def jordan_weaker(rows: pd.DataFrame, r: Rules) -> Decision:
    trained, _ = trained_cells(rows, r)
    t = trained[(trained["task"] == "delayed_recall") & trained["model"].isin(["elman", "jordan"])]
    if t.empty:
        return Decision(NOT_MEASURED, evidence="no trained Elman and Jordan rows on delayed_recall")
    parts, skipped, used, gaps = [], [], [], []
    for _, where, g in _matched(t):
        jordan = g[g["model"] == "jordan"]
        if not jordan["strategy"].isin(SELF_FEEDING).any():
            skipped.append(
                f"{where} (Jordan trained only with teacher forcing: its fed-back "
                "truth carries nothing about the recalled symbol, a failure by "
                "construction; train free_running or scheduled_sampling too)"
            )
            continue
        best = _best_per_model(g, "acc_gen", higher=True)
        if set(best) != {"elman", "jordan"}:
            skipped.append(f"{where} (one model missing)")
            continue
        if not _passes_gate(best, where, r, skipped):
            continue
        (se, e), (sj, j) = best["elman"], best["jordan"]
        chance = _chance(g)
        ci = diff_ci(e["acc_gen"], j["acc_gen"])
        if ci is None:
            skipped.append(f"{where} (fewer than 2 finite accuracies a side)")
            continue
        text = (
            f"{where}: Elman + {se} {e['acc_gen'].mean():.3f} vs Jordan + {sj} "
            f"{j['acc_gen'].mean():.3f} (chance {fmt(chance)}), gap {ci.estimate:+.3f} "
            f"[{ci.low:+.3f}, {ci.high:+.3f}]"
        )
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
    verdict = every_setting(parts)
    finding = (
        ""
        if not gaps
        else (
            f"On delayed recall an Elman network recalls {max(gaps):+.2f} more of its symbols "
            "than a Jordan network at its best (fed its own outputs as trained)"
            + (": the Jordan network is less powerful." if verdict == HOLDS else ".")
        )
    )
    return decision(
        verdict,
        max(gaps) if gaps else math.nan,
        "accuracy (Elman − Jordan)",
        parts,
        skipped,
        used,
        finding,
    )


def jordan_parity(rows: pd.DataFrame, r: Rules) -> Decision:
    trained, _ = trained_cells(rows, r)
    t = trained[trained["task"] == "running_parity"]
    if (t["model"] == "jordan").sum() == 0:
        return Decision(NOT_MEASURED, evidence="no trained Jordan rows on running_parity")
    parts, skipped, used, accs = [], [], [], []
    for _, where, g in _matched(t):
        best = _best_per_model(g, "acc_gen", higher=True)
        if "jordan" not in best:
            continue
        sj, j = best["jordan"]
        why = training_gate(j, r)
        if why:
            skipped.append(f"{where} (Jordan + {sj}: {why})")
            continue
        ci = mean_ci(j["acc_gen"])
        if ci is None:
            skipped.append(f"{where} (Jordan + {sj}: fewer than 2 finite accuracies)")
            continue
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
    verdict = every_setting(parts)
    finding = (
        ""
        if not accs
        else (
            f"On running parity, where the output carries the state, the Jordan network reaches "
            f"{min(accs):.3f} accuracy" + (": it is fine." if verdict == HOLDS else ".")
        )
    )
    return decision(
        verdict, min(accs) if accs else math.nan, "accuracy", parts, skipped, used, finding
    )


def _self_fed(trained: pd.DataFrame, key: tuple[Any, ...]) -> pd.DataFrame:
    """The Jordan rows at ``key`` (MATCH) trained on their own outputs, of the strategy
    with the lowest free-running loss."""
    g = trained[
        (trained["model"] == "jordan")
        & trained["strategy"].isin(SELF_FEEDING)
        & trained["loss_free"].notna()
    ]
    for k, v in zip(MATCH, key):
        g = g[g[k] == v]
    if g.empty:
        return g
    best = g.groupby("strategy_label")["loss_free"].mean().idxmin()
    return g[g["strategy_label"] == best]


def exposure_bias(rows: pd.DataFrame, r: Rules) -> Decision:
    """Exposure bias is the train/test mismatch itself: the free-running loss of a Jordan
    network trained with teacher forcing, minus that of the same network trained on its own
    outputs (free running or scheduled sampling: its best), same task, size and steps, both
    run free as they were trained.  Judged only in a generation setting (the W = 0 control
    shows the fed-back output carries what the input lacks)."""
    trained, controls = trained_cells(rows, r)
    tf = trained[is_tf(trained) & trained["loss_free"].notna()]
    if tf.empty:
        return Decision(
            NOT_MEASURED,
            evidence="no trained Jordan + teacher-forcing rows with a free-running loss",
        )
    parts, skipped, used, gaps, growth = [], [], [], [], []
    for key, where, g in _matched(tf):
        why = training_gate(g, r)
        if why:
            skipped.append(f"{where} ({why})")
            continue
        c = controls[is_tf(controls)]
        for k, v in zip(MATCH, key):
            c = c[c[k] == v]
        worth = diff_ci(c["loss_tf"], g["loss_tf"]) if len(c) else None
        control = (
            "no W = 0 control"
            if c.empty
            else "W = 0 control: the fed-back output is worth "
            + (
                f"{worth.estimate:+.3f} [{worth.low:+.3f}, {worth.high:+.3f}] nats/token"
                if worth
                else "n/a (under 2 control seeds)"
            )
        )
        if worth is None or not worth.above(r.negligible_nats):
            skipped.append(
                f"{where} ({control}: not a generation setting — the feedback "
                "carries nothing the input lacks, so running free only corrupts a "
                "redundant channel)"
            )
            continue
        own = _self_fed(trained, key)
        why = (
            training_gate(own, r)
            if len(own)
            else (
                "no Jordan trained on its own outputs (free_running or scheduled_sampling) at "
                "the same task, size and steps: no mismatch to measure"
            )
        )
        if why:
            skipped.append(f"{where} ({why})")
            continue
        gap = diff_ci(g["loss_free"], own["loss_free"])
        assert gap is not None  # the training gate asks for three seeds a side
        used.append(pd.concat([g, own, c]))
        gaps.append(gap.estimate)
        growth.append(_growth(g, own))
        text = (
            f"{where}: free-running loss, teacher-forcing-trained "
            f"{g['loss_free'].mean():.3f} vs trained on its own outputs "
            f"({own['strategy_label'].iloc[0]}, fed back as trained) "
            f"{own['loss_free'].mean():.3f}: mismatch {gap.estimate:+.3f} "
            f"[{gap.low:+.3f}, {gap.high:+.3f}] nats/token; {control}; {growth[-1]}"
        )
        if gap.low > r.negligible_nats:
            parts.append((HOLDS, text))
        elif gap.high < r.negligible_nats:
            parts.append((FAILS, text))
        else:
            parts.append((NOT_MEASURED, text))
    verdict = some_setting(parts)
    finding = (
        ""
        if not gaps
        else (
            f"Trained with teacher forcing, the Jordan network generates "
            f"{max(gaps):+.2f} nats/token worse than the same network trained on its own "
            "outputs" + ("" if verdict == HOLDS else " (not a measured mismatch)") + "."
        )
    )
    return decision(
        verdict,
        max(gaps) if gaps else math.nan,
        "nats/token (teacher-forced training − self-fed training), largest",
        parts,
        skipped,
        used,
        finding,
    )


def _growth(tf: pd.DataFrame, own: pd.DataFrame) -> str:
    """How each one's free-running loss grows along the sequence: first and last position
    buckets, averaged over seeds."""

    def ends(g: pd.DataFrame) -> str:
        curves = [c for c in g["horizon_loss_free"] if isinstance(c, list) and len(c) >= 2]
        if not curves:
            return "n/a"
        first = float(np.mean([c[0] for c in curves]))
        last = float(np.mean([c[-1] for c in curves]))
        return f"{first:.2f} → {last:.2f}"

    return (
        f"loss by position, first → last bucket: teacher-forcing-trained {ends(tf)}, "
        f"self-fed {ends(own)}"
    )


def belief_jordan_better(rows: pd.DataFrame, r: Rules) -> Decision:
    trained, _ = trained_cells(rows, r)
    t = trained[trained["model"].isin(["elman", "jordan"])]
    t = t[~t.apply(_generation_task, axis=1)] if len(t) else t
    if t.empty:
        return Decision(NOT_MEASURED, evidence="no task with trained Elman and Jordan rows")
    parts: list[tuple[str, str]] = []
    skipped: list[str] = []
    used: list[pd.DataFrame] = []
    diffs: list[float] = []
    for _, where, g in _matched(t):
        best = _best_per_model(g, "loss_gen", higher=False)
        if set(best) != {"elman", "jordan"}:
            continue
        if not _passes_gate(best, where, r, skipped):
            continue
        (se, e), (sj, j) = best["elman"], best["jordan"]
        ci = diff_ci(e["loss_gen"], j["loss_gen"])
        if ci is None:
            skipped.append(f"{where} (fewer than 2 finite losses a side)")
            continue
        used.append(pd.concat([e, j]))
        diffs.append(-ci.estimate)
        text = (
            f"{where}: Elman + {se} {e['loss_gen'].mean():.3g} vs Jordan + {sj} "
            f"{j['loss_gen'].mean():.3g} nats/token, Elman − Jordan {ci.estimate:+.3g} "
            f"[{ci.low:+.3g}, {ci.high:+.3g}]"
        )
        verdict = HOLDS if ci.low > 0 else FAILS if ci.high < 0 else NOT_MEASURED
        parts.append((verdict, text))
    verdict = every_setting(parts)
    finding = (
        ""
        if not diffs
        else (
            "Jordan's loss on its own outputs is "
            + ("higher" if np.mean(diffs) > 0 else "lower")
            + f" than Elman's by {abs(float(np.mean(diffs))):.2f} nats/token on average across "
            f"tasks: the common belief {'holds' if verdict == HOLDS else 'does not hold'} here."
        )
    )
    return decision(
        verdict,
        float(np.mean(diffs)) if diffs else math.nan,
        "nats/token (Jordan − Elman), mean",
        parts,
        skipped,
        used,
        finding,
    )
