"""Markdown pages: report.md (everything), claims.md, and one page per table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rnnbench.report.claims import METHOD
from rnnbench.report.plots import PLOTS
from rnnbench.report.tables import blank_note

# the page's figures, in order: plots.py's, then report/regime.py's map
FIGURES = (*PLOTS, "regime_map")
CAPTIONS = {
    "time_vs_tau": "Training step time vs τ, with the fitted power law of each model + strategy.",
    "memory_vs_tau": "Bytes saved for the backward pass and peak memory vs τ.",
    "speedup_vs_tau": "Speedup of Jordan + teacher forcing over Elman + BPTT / fused BPTT.",
    "speedup_vs_workers": "Time-parallel training: speedup vs workers, with the ideal line.",
    "loss_curves": "Training loss vs step and vs wall-clock: Elman + BPTT against Jordan + TF.",
    "exposure_bias": "Teacher-forced vs free-running loss by position (exposure bias).",
    "capacity": "Accuracy per task and model (capacity).",
    "deer_iterations": "DEER: Newton iterations to converge vs the spectral radius of W.",
    "time_vs_hidden": "Step time vs hidden size H: BPTT loops, scan/DEER, teacher forcing.",
    "regime_map": "Regime map: the fastest method per (H, τ), its margin, the crossovers.",
}
INTRO = (
    "Each claim is checked against the measured rows by the rule in its last column. "
    "'holds' and 'does not hold' are measured findings; 'not measured' means the results "
    "hold too few rows (or too noisy ones) to decide — it is never a guess; the evidence "
    "says which gate was not met. "
    "'by construction' marks what the code guarantees (a constant of the strategy "
    "registry): true by design, not a measurement."
)
VERDICT_MARK = {
    "holds": "✅ holds",
    "does not hold": "❌ does not hold",
    "not measured": "➖ not measured",
    "by construction": "📐 by construction (not measured)",
}


def _cell(value) -> str:
    text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def table(df: pd.DataFrame) -> str:
    """A GitHub pipe table (no tabulate dependency)."""
    if df.empty:
        return "_none_\n"
    head = "| " + " | ".join(_cell(c) for c in df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


def environment(env: dict) -> str:
    return "**Environment** — " + "; ".join(f"{k}: {v}" for k, v in env.items()) + "\n"


def page(title: str, env: dict, body: str) -> str:
    return f"# {title}\n\n{environment(env)}\n{body}"


def run_columns(claims: pd.DataFrame, what: str) -> list[str]:
    """The per-run columns of a claims table of several runs ('verdict: laptop', ...)."""
    return [c for c in claims.columns if c.startswith(f"{what}: ")]


def claims_table(claims: pd.DataFrame) -> pd.DataFrame:
    if "verdict" not in claims.columns:  # several runs: one verdict column per run
        return pd.DataFrame(
            {
                "claim": claims["claim"],
                **{c: claims[c].map(VERDICT_MARK) for c in run_columns(claims, "verdict")},
                **{c: claims[c] for c in run_columns(claims, "evidence")},
                "how it is decided": claims["rule"],
                **({"evidence needed": claims["gate"]} if "gate" in claims else {}),
            }
        )
    return pd.DataFrame(
        {
            "claim": claims["claim"],
            "verdict": claims["verdict"].map(VERDICT_MARK),
            "evidence": claims["evidence"],
            "cells": claims["cells"],
            "how it is decided": claims["rule"],
            "evidence needed": claims["gate"],
        }
    )


def write(report, out: Path) -> list[Path]:
    files = []
    claims = f"{INTRO}\n\n{METHOD}\n\n{table(claims_table(report.claims))}"
    (out / "claims.md").write_text(page("Claims of the chapter, checked", report.env, claims))
    files.append(out / "claims.md")
    body = [f"Results: `{report.source}`\n", "## Claims\n", claims, "## Plots\n"]
    for name in (p for p in FIGURES if p in report.figures):  # none when drawing was skipped
        if report.figures[name] is not None:
            body.append(
                f"![{CAPTIONS[name]}](plots/{name}.png)\n\n*{CAPTIONS[name]}* "
                f"([SVG](plots/{name}.svg))\n"
            )
        else:
            body.append(f"*{CAPTIONS[name]}* — not measured: the results hold no rows for it.\n")
    for name, title, note, _, shown in report.tables():
        after = blank_note(shown) if name != "failed" else ""
        text = f"{note}\n\n{table(shown)}" + (f"\n{after}\n" if after else "")
        (out / "tables" / f"{name}.md").write_text(page(title, report.env, text))
        files.append(out / "tables" / f"{name}.md")
        body.append(f"## {title}\n\n{text}\nCSV: [tables/{name}.csv](tables/{name}.csv)\n")
    (out / "report.md").write_text(page("rnnbench report", report.env, "\n".join(body)))
    return files + [out / "report.md"]
