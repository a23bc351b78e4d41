"""HTML pages: one self-contained index.html (readable offline) and a page per table.

Images are linked relative to the page (``plots/NAME.png``) or, with
``embed=True``, embedded as data URIs so index.html stands alone.  No script,
no external style sheet, no network.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from rnnbench.report import findings
from rnnbench.report.claims import METHOD
from rnnbench.report.escape import html_text
from rnnbench.report.markdown import CAPTIONS, FIGURES, INTRO, origin
from rnnbench.report.tables import blank_note

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 1em 2em;
       color: #222; }
h1 { margin-bottom: .2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
.env { background: #f4f6f8; border: 1px solid #d8dde3; border-radius: 6px; padding: .6em 1em;
       font-size: 13px; }
.env dt { font-weight: 600; float: left; clear: left; width: 11em; }
.env dd { margin-left: 11.5em; }
table { border-collapse: collapse; font-size: 13px; margin: .5em 0; }
th, td { border: 1px solid #ccd; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #eef1f5; }
tr:nth-child(even) td { background: #fafbfc; }
.verdict { font-weight: 600; white-space: nowrap; padding: 2px 6px; border-radius: 4px; }
.holds { background: #d7f5dc; color: #11612a; }
.does-not-hold { background: #fbdada; color: #8a1616; }
.not-measured { background: #e8e8e8; color: #555; }
.by-construction { background: #e3ecfa; color: #23487a; font-style: italic; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
.tally { font-size: 16px; margin: .4em 0; } .tally .verdict { margin-right: .3em; }
ol.findings { padding-left: 1.6em; margin: .4em 0; } ol.findings li { margin: .25em 0; }
ol.findings details { font-size: 13px; color: #444; } ol.findings summary { cursor: pointer; }
ol.findings dt { font-weight: 600; } ol.findings dd { margin: 0 0 .3em 1em; }
.origin { color: #444; margin-top: 0; }
img, table, pre { max-width: 100%; } .scroll { max-width: 100%; }
figcaption { font-size: 13px; color: #444; }
.note { color: #555; font-size: 13px; } .scroll { overflow-x: auto; }
nav a { margin-right: 1em; }
"""


def environment(env: dict) -> str:
    items = "".join(
        f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in env.items()
    )
    return f'<dl class="env">{items}</dl>'


def page(title: str, env: dict, body: str, source: str = "") -> str:
    """A page: title, the origin line (where the rows come from, what they ran on), the
    body, the full environment at the end."""
    head = f'<p class="origin">{html_text(origin(source, env))}</p>' if source else ""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>{head}\n{body}\n"
        f'<h2 id="environment">Environment</h2>{environment(env)}\n</body></html>\n'
    )


def table(df: pd.DataFrame) -> str:
    if df.empty:
        return '<p class="note">none</p>'
    return '<div class="scroll">' + df.to_html(index=False, na_rep="", border=0) + "</div>"


def _img(out: Path, name: str, embed: bool) -> str:
    if embed:
        data = base64.b64encode((out / "plots" / f"{name}.png").read_bytes()).decode()
        return f"data:image/png;base64,{data}"
    return f"plots/{name}.png"


def figures(report, out: Path, embed: bool) -> str:
    parts = []
    # none when drawing was skipped
    for name in (p for p in FIGURES if p in report.figures):
        caption = html.escape(CAPTIONS[name])
        if report.figures[name] is None:
            parts.append(
                f'<p class="note">{caption} — <b>not measured</b>: the results hold no '
                f"rows for it.</p>"
            )
            continue
        parts.append(
            f'<figure id="plot-{name}"><img src="{_img(out, name, embed)}" '
            f'alt="{caption}"><figcaption>{caption} '
            f'(<a href="plots/{name}.svg">SVG</a>)</figcaption></figure>'
        )
    return "\n".join(parts)


def write(report, out: Path, embed: bool = False) -> list[Path]:
    files = []
    sections = []
    for name, title, note, _, shown in report.tables():
        after = blank_note(shown) if name != "failed" else ""
        body = f'<p class="note">{html.escape(note)}</p>{table(shown)}' + (
            f'<p class="note">{html.escape(after)}</p>' if after else ""
        )
        (out / "tables" / f"{name}.html").write_text(page(title, report.env, body, report.source))
        files.append(out / "tables" / f"{name}.html")
        count = f" ({len(shown)})" if name == "failed" else ""
        sections.append(
            f'<h2 id="{name}">{html.escape(title)}{count}</h2>{body}'
            f'<p class="note">CSV: <a href="tables/{name}.csv">tables/{name}.csv</a>'
            "</p>"
        )
    nav = " ".join(
        f'<a href="#{k}">{html.escape(t)}</a>'
        for k, t in [("claims", "Findings"), ("plots", "Plots")]
        + [(n, t) for n, t, *_ in report.tables()]
        + [("environment", "Environment")]
    )
    body = (
        f'<section id="claims">{findings.html_section(report.claims, report.figures)}</section>'
        f"<nav>{nav}</nav>"
        f'<p class="note">{html.escape(INTRO)}</p>'
        f'<p class="note">{html.escape(METHOD)}</p>'
        f'<h2 id="plots">Plots</h2>{figures(report, out, embed)}' + "".join(sections)
    )
    (out / "index.html").write_text(page("rnnbench report", report.env, body, report.source))
    return files + [out / "index.html"]
