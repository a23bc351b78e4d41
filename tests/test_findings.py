"""Findings first (issue 24.1): index.html, report.md and claims.md open with the tally and
one sentence per claim, each with its id and links to its cells (CSV) and its plot; the
rule, gate and evidence fold under <details>; several runs get a tally line each."""

from __future__ import annotations

import re

import pandas as pd
import pytest
import report_synthetic as rs

from rnnbench.facts import VERDICTS
from rnnbench.report import build_report, findings, plots
from rnnbench.report.claims import RULES
from rnnbench.results import store


@pytest.fixture(scope="session")  # once per test process: xdist may interleave modules
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("findings") / "rep"
    return build_report(pd.DataFrame(rs.timing_rows() + rs.claims_rows()), out)


def test_pages_open_with_the_tally(built):
    counts = findings.tally(built.claims)
    assert sum(counts.values()) == len(built.claims) == len(RULES)
    index = (built.out_dir / "index.html").read_text()
    body = index.split("<body>", 1)[1]
    assert body.index('class="tally"') < body.index('class="findings"') < body.index("<nav>")
    tally = body[body.index('class="tally"') : body.index("</p>", body.index('class="tally"'))]
    for verdict, n in findings.shown(counts):
        assert f"{findings.count_text(verdict, n)}</span>" in tally
    assert ("by construction</span>" in tally) == (counts["by construction"] > 0)
    for page in ("report.md", "claims.md"):
        lines = [x for x in (built.out_dir / page).read_text().splitlines() if x.strip()]
        # title, the origin line, then the tally
        assert lines[0].startswith("# ") and lines[1].startswith("Rows from ")
        first = [x for x in lines[2:] if not x.startswith("## ")][0]  # a heading may come first
        assert first.startswith(f"**{len(built.claims)} claims** — ")
        assert findings.tally_text(counts) in first
        assert "**Environment**" in lines[-1]  # the full environment at the end


def test_each_claim_has_its_sentence_id_and_evidence_links(built):
    index = (built.out_dir / "index.html").read_text()
    items = re.findall(r'<li id="claim-([a-z_]+)">(.*?)</li>', index, re.S)
    assert [k for k, _ in items] == list(built.claims["key"])
    for (key, item), (_, c) in zip(items, built.claims.iterrows()):
        head, details = item.split("<details>", 1)
        assert findings.html_text(c["finding"]) in head and c["finding"]
        assert f"[{key}]" in head
        assert findings.html_text(c["rule"]) in details and findings.html_text(c["gate"]) in details
        csv_link = f'href="tables/evidence/{key}.csv"'
        assert csv_link in head
        cells = pd.read_csv(built.out_dir / "tables" / "evidence" / f"{key}.csv")
        assert sorted(cells["cell_id"].astype(str)) == sorted(c["cell_ids"].split())
        plot = findings.PLOT_OF.get(key)
        drawn = plot is not None and built.figures.get(plot) is not None
        assert (f'href="#plot-{plot}"' in head) == drawn, key
        if drawn:
            assert f'id="plot-{plot}"' in index
    # the opposite case: a claim whose plot is not drawn gets no plot link
    assert built.figures["speedup_vs_workers"] is None
    assert 'href="#plot-speedup_vs_workers"' not in index


def test_plot_links_name_real_claims_and_plots():
    keys = {r.key for r in RULES}
    assert set(findings.PLOT_OF) <= keys
    assert set(findings.PLOT_OF.values()) <= set(plots.PLOTS)


def test_tally_text_counts_each_verdict():
    claims = pd.DataFrame({"verdict": ["holds", "holds", "does not hold", "not measured"]})
    counts = findings.tally(claims)
    assert list(counts) == list(VERDICTS)
    assert findings.tally_text(counts) == "2 hold · 1 does not hold · 1 not measured"
    claims.loc[4] = "by construction"
    assert findings.tally_text(findings.tally(claims)).endswith("· 1 by construction")


def test_several_runs_get_a_tally_line_each(tmp_path):
    a, b = tmp_path / "laptop", tmp_path / "node"
    for folder in (a, b):
        (folder / "rows").mkdir(parents=True)
    for row in rs.timing_rows() + rs.claims_rows():
        store.write_row(a, row)
    for row in rs.timing_rows():
        store.write_row(b, row)
    report = build_report([a, b], tmp_path / "rep", formats=("md", "html"))
    text = (tmp_path / "rep" / "claims.md").read_text()
    tallies = [x for x in text.splitlines() if " claims** — " in x]
    assert [t.split(":")[0] for t in tallies] == ["**laptop", "**node"]
    index = (tmp_path / "rep" / "index.html").read_text()
    assert index.count('class="tally"') == 2
    key = report.claims["key"].iloc[0]
    item = index.split(f'<li id="claim-{key}">', 1)[1].split("</li>", 1)[0]
    assert "laptop: " in item and "node: " in item
