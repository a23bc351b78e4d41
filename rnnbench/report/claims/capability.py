"""Claims about what the networks can learn: Jordan's capacity (delayed recall,
running parity), exposure bias in a generation setting with its W = 0 control, and the
common belief that Jordan works better. Each :class:`~.rules.Rule` stands beside the
function that decides it."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from rnnbench.facts import FAILS, HOLDS, NOT_MEASURED, SELF_FEEDING
from rnnbench.report import tidy
from rnnbench.report.claims.rules import (
    Decision,
    Rule,
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


def _matched(rows: pd.DataFrame):
    """Each matched configuration (task, τ, B, H, training steps): its key, its
    description and its rows."""
    for key, g in rows.groupby(MATCH, dropna=False, sort=True):
        yield key, setting_text(dict(zip(MATCH, key)), ("task_label", "tau", "batch", "hidden")), g


def _passes_gate(best: dict, where: str, r: Rules, skipped: list) -> bool:
    """Whether each model's best strategy passes the training gate; if not, the setting
    is listed in ``skipped`` with every side's reason."""
    why = [f"{m} + {s}: {w}" for m, (s, x) in best.items() if (w := training_gate(x, r))]
    if why:
        skipped.append(f"{where} ({'; '.join(why)})")
    return not why


def _loss_gate(r: Rules) -> str:
    return (
        f"trained cells: ≥ {r.min_seeds} seeds and ≥ {r.min_train_steps} training steps "
        "per side; a 95% CI over seeds on every comparison"
    )


def _best_per_model(rows: pd.DataFrame, value: str, higher: bool) -> dict:
    """model -> (strategy, per-seed values) of its best strategy by mean ``value``."""
    out = {}
    for model, g in rows[rows[value].notna()].groupby("model"):
        means = g.groupby("strategy_label")[value].mean()
        pick = means.idxmax() if higher else means.idxmin()
        out[model] = (pick, g[g["strategy_label"] == pick])
    return out


def _chance(rows: pd.DataFrame) -> float:
    """The task's chance accuracy, as the rows recorded it (NaN: not recorded)."""
    values = pd.to_numeric(rows.get("chance_acc", pd.Series(dtype=float)), errors="coerce")
    return float(values.dropna().iloc[0]) if values.notna().any() else math.nan


def _generation_task(row) -> bool:
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
    return decision(
        every_setting(parts),
        max(gaps) if gaps else math.nan,
        "accuracy (Elman − Jordan)",
        parts,
        skipped,
        used,
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
    return decision(
        every_setting(parts), min(accs) if accs else math.nan, "accuracy", parts, skipped, used
    )


def exposure_bias(rows: pd.DataFrame, r: Rules) -> Decision:
    trained, controls = trained_cells(rows, r)
    tf = trained[is_tf(trained) & trained["loss_tf"].notna() & trained["loss_free"].notna()]
    if tf.empty:
        return Decision(
            NOT_MEASURED, evidence="no trained Jordan + teacher-forcing rows with both losses"
        )
    parts, skipped, used, gaps = [], [], [], []
    for key, where, g in _matched(tf):
        why = training_gate(g, r)
        if why:
            skipped.append(f"{where} ({why})")
            continue
        c = controls[is_tf(controls)]
        for k, v in zip(MATCH, key):
            c = c[c[k] == v]
        if c.empty:
            skipped.append(
                f"{where} (no W = 0 control: cannot tell a generation setting "
                "from a redundant channel)"
            )
            continue
        worth = diff_ci(c["loss_tf"], g["loss_tf"])
        own = mean_ci(c["loss_free"] - c["loss_tf"])
        control = (
            f"W = 0 control: teacher-forced loss {c['loss_tf'].mean():.3f} vs "
            f"{g['loss_tf'].mean():.3f}, the feedback is worth "
            + (
                f"{worth.estimate:+.3f} [{worth.low:+.3f}, {worth.high:+.3f}] nats/token"
                if worth
                else "n/a (under 2 control seeds)"
            )
            + (f", control gap {own.estimate:+.3f}" if own else "")
        )
        if worth is None or not worth.above(r.negligible_nats):
            skipped.append(
                f"{where} ({control}: the fed-back output carries nothing the "
                "input lacks, so free-running only corrupts a redundant channel — "
                "not a generation setting)"
            )
            continue
        if g["loss_tf"].mean() < r.negligible_nats:
            skipped.append(
                f"{where} (learned perfectly, loss {g['loss_tf'].mean():.2g}: nothing to expose)"
            )
            continue
        gap = mean_ci(g["loss_free"] - g["loss_tf"])
        used.append(pd.concat([g, c]))
        gaps.append(gap.estimate)
        text = (
            f"{where}: free − teacher-forced {gap.estimate:+.3f} [{gap.low:+.3f}, "
            f"{gap.high:+.3f}] nats/token over {gap.n} seeds; {control}"
        )
        if gap.low > 0:
            parts.append((HOLDS, text))
        elif gap.high < r.negligible_nats:
            parts.append((FAILS, text))
        else:
            parts.append((NOT_MEASURED, text))
    return decision(
        some_setting(parts),
        max(gaps) if gaps else math.nan,
        "nats/token (free − TF), largest",
        parts,
        skipped,
        used,
    )


def belief_jordan_better(rows: pd.DataFrame, r: Rules) -> Decision:
    trained, _ = trained_cells(rows, r)
    t = trained[trained["model"].isin(["elman", "jordan"])]
    t = t[~t.apply(_generation_task, axis=1)] if len(t) else t
    if t.empty:
        return Decision(NOT_MEASURED, evidence="no task with trained Elman and Jordan rows")
    parts, skipped, used, diffs = [], [], [], []
    for _, where, g in _matched(t):
        best = _best_per_model(g, "loss_gen", higher=False)
        if set(best) != {"elman", "jordan"}:
            continue
        if not _passes_gate(best, where, r, skipped):
            continue
        (se, e), (sj, j) = best["elman"], best["jordan"]
        ci = diff_ci(e["loss_gen"], j["loss_gen"])
        used.append(pd.concat([e, j]))
        diffs.append(-ci.estimate)
        text = (
            f"{where}: Elman + {se} {e['loss_gen'].mean():.3g} vs Jordan + {sj} "
            f"{j['loss_gen'].mean():.3g} nats/token, Elman − Jordan {ci.estimate:+.3g} "
            f"[{ci.low:+.3g}, {ci.high:+.3g}]"
        )
        verdict = HOLDS if ci.low > 0 else FAILS if ci.high < 0 else NOT_MEASURED
        parts.append((verdict, text))
    return decision(
        every_setting(parts),
        float(np.mean(diffs)) if diffs else math.nan,
        "nats/token (Jordan − Elman), mean",
        parts,
        skipped,
        used,
    )


JORDAN_WEAKER = Rule(
    "jordan_less_powerful",
    "chapter",
    "A Jordan (output-to-hidden) network is less powerful: what its outputs do not carry "
    "is lost (delayed recall, y(t) = x(t−k)).",
    lambda r: (
        f"delayed_recall, accuracy on its own outputs, each model's best strategy "
        f"(Jordan's among teacher_forcing, free_running, scheduled_sampling): holds "
        f"when the 95% CI of Elman − Jordan lies above {r.accuracy_gap}; does not "
        f"hold when it lies below {r.accuracy_gap}; in every matched configuration; "
        f"not measured when Elman is within {r.learned_margin} of chance"
    ),
    lambda r: (
        _loss_gate(r) + "; Jordan trained with a strategy fed its own outputs "
        "(free_running or scheduled_sampling)"
    ),
    jordan_weaker,
)


JORDAN_PARITY = Rule(
    "jordan_fine_parity",
    "chapter",
    "A Jordan network is fine when its outputs carry the state it needs (running parity, "
    "y(t) = y(t−1) xor x(t)).",
    lambda r: (
        f"running_parity, Jordan's best strategy, accuracy on its own outputs: "
        f"holds when its 95% CI lies at or above {r.solved}; does not hold when it "
        f"lies below while Elman's lies at or above; in every configuration"
    ),
    _loss_gate,
    jordan_parity,
)


EXPOSURE_BIAS = Rule(
    "exposure_bias",
    "chapter",
    "Exposure bias: trained with teacher forcing, the model does worse on its own outputs "
    "(free-running loss above the teacher-forced loss).",
    lambda r: (
        f"Jordan + teacher forcing, free-running − teacher-forced loss per seed, "
        f"per task, judged only in a generation setting: the W = 0 control (Jordan "
        f"with W held at 0, option w_zero) must have a teacher-forced loss above "
        f"the model's by more than {r.negligible_nats} nats/token (95% CI), i.e. "
        f"the fed-back output carries what the input lacks; holds when on some "
        f"such task the gap's CI lies above 0; does not hold when on every such "
        f"task it lies below {r.negligible_nats}"
    ),
    lambda r: _loss_gate(r) + "; a W = 0 control at the same task, τ, B, H and steps",
    exposure_bias,
)


BELIEF = Rule(
    "belief_jordan_better",
    "common belief",
    "Common belief: a Jordan network works better than an Elman network because the "
    "output y is easier to control than the hidden state h.",
    lambda r: (
        "tested through its consequence (the 'because' is not measurable): "
        "per-token loss on the model's own outputs, each model's best strategy, "
        "same task/τ/B/H/steps (tasks without input left out): holds when the 95% "
        "CI of Elman − Jordan lies above 0 on every task; does not hold when it "
        "lies below 0 on one"
    ),
    _loss_gate,
    belief_jordan_better,
)
