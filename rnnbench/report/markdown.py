"""Markdown pages: report.md (everything), claims.md, and one page per table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rnnbench.report import findings, scaling_figure
from rnnbench.report.claims import METHOD
from rnnbench.report.escape import md_text
from rnnbench.report.plots import PLOTS
from rnnbench.report.tables import blank_note

# the page's figures, in order: plots.py's, the scaling model's, report/regime.py's map
FIGURES = (*PLOTS, scaling_figure.NAME, "regime_map")
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
CAPTIONS[scaling_figure.NAME] = scaling_figure.CAPTION  # the scaling model's figure
INTRO = (
    "Each claim is checked against the measured rows by the rule in its last column. "
    "'holds' and 'does not hold' are measured findings; 'not measured' means the results "
    "hold too few rows (or too noisy ones) to decide — it is never a guess; the evidence "
    "says which gate was not met. "
    "'by construction' marks what the code guarantees (a constant of the strategy "
    "registry): true by design, not a measurement."
)


def _cell(value) -> str:
    text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
    return md_text(text).replace("|", "\\|")


def table(df: pd.DataFrame) -> str:
    """A GitHub pipe table (no tabulate dependency)."""
    if df.empty:
        return "_none_\n"
    head = "| " + " | ".join(_cell(c) for c in df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


def environment(env: dict) -> str:
    pairs = "; ".join(f"{md_text(k)}: {md_text(v)}" for k, v in env.items())
    return f"**Environment** — {pairs}\n"


def origin(source: str, env: dict) -> str:
    """The line under the title: where the rows come from and what they ran on."""
    known = [k for k in ("CPU", "GPU", "threads") if env.get(k, "not recorded") != "not recorded"]
    ran = ", ".join(f"{k} {env[k]}" for k in known)
    rows = f"; rows: {env['rows']}" if "rows" in env else ""
    return f"Rows from {source}" + (f"; ran on {ran}" if ran else "") + rows + "."


def page(title: str, env: dict, body: str, source: str = "") -> str:
    """A page: title, the origin line, the body, the full environment at the end."""
    head = f"{md_text(origin(source, env))}\n\n" if source else ""
    return f"# {title}\n\n{head}{body}\n\n---\n\n{environment(env)}"


def write(report, out: Path) -> list[Path]:
    files = []
    claims = f"{findings.md_section(report.claims, report.figures)}\n\n{INTRO}\n\n{METHOD}\n"
    (out / "claims.md").write_text(
        page("Claims of the chapter, checked", report.env, claims, report.source)
    )
    files.append(out / "claims.md")
    body = ["## Findings\n", claims, "## Plots\n"]
    # none when drawing was skipped
    for name in (p for p in FIGURES if p in report.figures):
        if report.figures[name] is not None:
            body.append(
                f'<a id="plot-{name}"></a>\n\n![{CAPTIONS[name]}](plots/{name}.png)\n\n'
                f"*{CAPTIONS[name]}* ([SVG](plots/{name}.svg))\n"
            )
        else:
            body.append(f"*{CAPTIONS[name]}* — not measured: the results hold no rows for it.\n")
    for name, title, note, _, shown in report.tables():
        after = blank_note(shown) if name != "failed" else ""
        text = f"{md_text(note)}\n\n{table(shown)}" + (f"\n{after}\n" if after else "")
        (out / "tables" / f"{name}.md").write_text(page(title, report.env, text, report.source))
        files.append(out / "tables" / f"{name}.md")
        body.append(f"## {title}\n\n{text}\nCSV: [tables/{name}.csv](tables/{name}.csv)\n")
    (out / "report.md").write_text(
        page("rnnbench report", report.env, "\n".join(body), report.source)
    )
    return files + [out / "report.md"]
