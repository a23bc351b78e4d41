"""Findings first: the tally of verdicts and one plain sentence per claim, each with a
stable id and links to its evidence, heading index.html, report.md and claims.md.

- :func:`tally`: verdict -> number of claims (holds / does not hold / not measured / by
  construction), per run when the report holds several.
- Per claim: its ``finding`` (the sentence the claims engine wrote from the evidence), its
  id ``[key]`` (the anchor ``#claim-<key>``), the CSV of its cells
  (``tables/evidence/<key>.csv``: the rows the verdict was decided on) and its plot
  (``#plot-<name>``, from :data:`PLOT_OF`). The claim's words, rule, gate and full
  evidence text fold below it in ``<details>``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from rnnbench.facts import VERDICTS
from rnnbench.report.escape import csv_frame, html_text, md_text
from rnnbench.results.rows import LIST_KEYS

# Claim key -> the plot that shows its evidence (claims without one: no plot link).
PLOT_OF = {
    "bptt_time_linear": "time_vs_tau",
    "bptt_not_parallel": "speedup_vs_workers",
    "bptt_memory_linear": "memory_vs_tau",
    "tf_parallel_workers": "speedup_vs_workers",
    "tf_faster_one_device": "speedup_vs_tau",
    "tf_speedup_not_overhead": "speedup_vs_tau",
    "parallel_depth": "deer_iterations",
    "deer_depth": "deer_iterations",
    "quasi_deer_depth": "deer_iterations",
    "deer_faster": "time_vs_hidden",
    "jordan_less_powerful": "capacity",
    "jordan_fine_parity": "capacity",
    "exposure_bias": "exposure_bias",
    "belief_jordan_better": "loss_curves",
}
EVIDENCE_DIR = "tables/evidence"
PLURAL = {"holds": "hold", "does not hold": "do not hold"}
BADGE_TEXT = {"by construction": "by construction (not measured)"}
MARK = {
    "holds": "✅ holds",
    "does not hold": "❌ does not hold",
    "not measured": "➖ not measured",
    "by construction": "📐 by construction (not measured)",
}


def run_names(claims: pd.DataFrame) -> list[str]:
    """'' for a one-run claims table, else each run's name (from 'verdict: <run>')."""
    if "verdict" in claims.columns:
        return [""]
    return [c.removeprefix("verdict: ") for c in claims.columns if c.startswith("verdict: ")]


def column(what: str, run: str) -> str:
    return f"{what}: {run}" if run else what


def tally(claims: pd.DataFrame, run: str = "") -> dict[str, int]:
    """Verdict -> how many claims have it (every verdict, zeros included)."""
    counts = claims[column("verdict", run)].value_counts()
    return {v: int(counts.get(v, 0)) for v in VERDICTS}


def tally_text(counts: dict[str, int]) -> str:
    """'3 hold · 1 does not hold · 9 not measured · 1 by construction'."""
    return " · ".join(count_text(v, n) for v, n in shown(counts))


def shown(counts: dict[str, int]) -> list[tuple[str, int]]:
    """The verdicts a tally shows: all, but 'by construction' only when some claim is."""
    return [(v, n) for v, n in counts.items() if n or v != "by construction"]


def count_text(verdict: str, n: int) -> str:
    """'1 holds', '3 hold', '2 do not hold'."""
    return f"{n} {verdict if n == 1 else PLURAL.get(verdict, verdict)}"


def evidence_path(key: str) -> str:
    return f"{EVIDENCE_DIR}/{key}.csv"


def write_evidence(claims: pd.DataFrame, rows: pd.DataFrame, out: Path) -> list[Path]:
    """tables/evidence/<key>.csv per claim: the rows its verdict was decided on (every
    run's, with the run column), list columns left out; text cells made spreadsheet-safe."""
    folder = out / EVIDENCE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    keep = [c for c in rows.columns if c not in LIST_KEYS]
    files = []
    for _, c in claims.iterrows():
        ids: set[str] = set()
        for run in run_names(claims):
            value = c.get(column("cell_ids", run), "")
            ids |= set(str(value).split()) if isinstance(value, str) else set()
        cells = rows[rows["cell_id"].astype(str).isin(ids)][keep] if ids else rows.iloc[:0][keep]
        path = folder / f"{c['key']}.csv"
        csv_frame(cells).to_csv(path, index=False)
        files.append(path)
    return files


def _cells(c, run: str) -> int:
    n = c.get(column("cells", run))
    return int(n) if isinstance(n, (int, float)) and pd.notna(n) else 0


# --------------------------------------------------------------------------- HTML


def badge(verdict) -> str:
    if not isinstance(verdict, str):  # a claim one run's engine did not judge
        return '<span class="note">—</span>'
    css = verdict.replace(" ", "-")
    return f'<span class="verdict {css}">{html_text(BADGE_TEXT.get(verdict, verdict))}</span>'


def html_section(claims: pd.DataFrame, figures: dict) -> str:
    """The findings block of index.html: tally line(s), then one item per claim."""
    names = run_names(claims)
    tallies = "".join(
        f'<p class="tally"><b>{html_text(run + ": ") if run else ""}'
        f"{len(claims)} claims</b> — "
        + " ".join(
            f'<span class="verdict {v.replace(" ", "-")}">{html_text(count_text(v, n))}</span>'
            for v, n in shown(tally(claims, run))
        )
        + "</p>"
        for run in names
    )
    items = []
    for _, c in claims.iterrows():
        key = html_text(c["key"])
        links = _links(c["key"], figures, lambda text, to: f'<a href="{html_text(to)}">{text}</a>')
        lines = "".join(
            f'<div class="finding">{html_text(run + ": ") if run else ""}'
            f"{badge(c[column('verdict', run)])} "
            f"{html_text(c.get(column('finding', run)) or '')} "
            f'<span class="note">({_cells(c, run)} cells)</span></div>'
            for run in names
        )
        evidence = "".join(
            f"<dt>evidence{html_text(' (' + run + ')') if run else ''}</dt>"
            f"<dd>{html_text(c.get(column('evidence', run)) or '')}</dd>"
            for run in names
        )
        items.append(
            f'<li id="claim-{key}">{lines}<div class="note"><a href="#claim-{key}">[{key}]</a> '
            + " · ".join(links)
            + f"</div><details><summary>{html_text(c['claim'])}</summary><dl>"
            f"<dt>source</dt><dd>{html_text(c['source'])}</dd>"
            f"<dt>how it is decided</dt><dd>{html_text(c['rule'])}</dd>"
            f"<dt>evidence needed</dt><dd>{html_text(c.get('gate', ''))}</dd>{evidence}"
            "</dl></details></li>"
        )
    return f'{tallies}<ol class="findings">{"".join(items)}</ol>'


def _links(key: str, figures: dict, link: Callable[[str, str], str]) -> list[str]:
    """A claim's evidence links, each rendered by ``link(text, target)``: its cells (the
    CSV) and, when the report drew it, its plot."""
    out = [link("cells (CSV)", evidence_path(key))]
    plot = PLOT_OF.get(key)
    if plot and figures.get(plot) is not None:
        out.append(link("plot", f"#plot-{plot}"))
    return out


# --------------------------------------------------------------------------- Markdown


def md_section(claims: pd.DataFrame, figures: dict) -> str:
    """The findings block of report.md and claims.md (the same content as the HTML)."""
    names = run_names(claims)
    out = [
        f"**{md_text(run) + ': ' if run else ''}{len(claims)} claims** — "
        + tally_text(tally(claims, run))
        + "\n"
        for run in names
    ]
    for i, (_, c) in enumerate(claims.iterrows(), 1):
        key = c["key"]
        links = _links(key, figures, lambda text, to: f"[{text}]({to})")
        lines = "\n".join(
            f"   - {md_text(run) + ': ' if run else ''}"
            f"{MARK.get(c[column('verdict', run)], '—')} "
            f"{md_text(c.get(column('finding', run)) or '')} ({_cells(c, run)} cells)"
            for run in names
        )
        evidence = "".join(
            f"<dt>evidence{md_text(' (' + run + ')') if run else ''}</dt>"
            f"<dd>{md_text(c.get(column('evidence', run)) or '')}</dd>"
            for run in names
        )
        out.append(
            f'{i}. <a id="claim-{md_text(key)}"></a>**[{md_text(key)}]** '
            + " · ".join(links)
            + f"\n{lines}\n\n   <details><summary>{md_text(c['claim'])}</summary><dl>"
            f"<dt>source</dt><dd>{md_text(c['source'])}</dd>"
            f"<dt>how it is decided</dt><dd>{md_text(c['rule'])}</dd>"
            f"<dt>evidence needed</dt><dd>{md_text(c.get('gate', ''))}</dd>{evidence}"
            "</dl></details>\n"
        )
    return "\n".join(out)
