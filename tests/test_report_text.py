"""Strings from rows and jobs are text in every output of a report (issue 25.5): a task
path or a --label holding ``$…$`` draws literally (no mathtext error), Markdown and the
environment line escape HTML, and CSV text cells that a spreadsheet would run as a formula
are prefixed with ``'`` while numbers stay numbers. The report is run as the real command,
in its own process."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import report_synthetic as rs
from helpers import subprocess_env
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rnnbench.report import escape
from rnnbench.results import store

PATH = "/corpora/$x^2$ and $$/<script>alert(1)</script>.txt"
LABEL = "=1+2+cmd|x $a$"
SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(2)>"
HOSTILE = ("<script", "<img src=x")

# its session fixture renders a whole report: one process runs the module (make test: loadgroup)
pytestmark = pytest.mark.xdist_group("report_text")


def hostile_rows() -> list[dict]:
    rows = rs.timing_rows(taus=(16, 64, 256), seeds=(0, 1)) + rs.trained_rows(seeds=(0,))
    rows += rs.worker_rows() + rs.deer_rows(rho=0.5) + rs.deer_rows(rho=1.5)
    for r in rows:
        if r["task"] == "text":
            r["task_options"] = {"path": PATH}
        r["host"] = f"node {SCRIPT}"
    failed = rs.failed_rows()
    failed[0]["error"] = f'=HYPERLINK("http://x") {IMG}'
    failed[1]["error"] = f"-2+3 {SCRIPT}"
    return rows + failed


@pytest.fixture(scope="session")  # once per test process: xdist may interleave modules
def report_dir(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("text")
    for res in ("res", "res2"):
        (base / res / "rows").mkdir(parents=True)
    for row in hostile_rows():  # two runs: the labels land in every table's run column
        store.write_row(base / "res", row)
        store.write_row(base / "res2", row)
    done = subprocess.run(
        ["rnnbench", "report", str(base / "res"), str(base / "res2"), "--out", str(base / "rep")]
        + ["--label", LABEL, "other"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return base / "rep"


def formula_cells(folder: Path) -> list[str]:
    """Every CSV cell under ``folder`` a spreadsheet would run (starts = + - @ tab CR and
    is not a number)."""
    bad = []
    for path in sorted(folder.rglob("*.csv")):
        with path.open(newline="") as f:
            for row in csv.reader(f):
                for cell in row:
                    if cell.startswith(escape.FORMULA_START):
                        try:
                            float(cell)
                        except ValueError:
                            bad.append(f"{path.name}: {cell[:40]}")
    return bad


def raw_html(text: str) -> list[str]:
    return [h for h in HOSTILE if h in text]


def test_dollar_paths_and_labels_draw_and_the_report_exits_0(report_dir):
    assert len(list((report_dir / "plots").glob("*.png"))) >= 5
    svg = (report_dir / "plots" / "time_vs_tau.svg").read_text()
    assert "$x^2$" in svg  # the path's text, drawn as written
    # The opposite case: the same text unescaped is parsed as mathtext and fails.
    fig = Figure()
    fig.text(0.1, 0.5, "cost $x^$ here")
    with pytest.raises(ValueError):
        FigureCanvasAgg(fig).draw()
    fig = Figure()
    fig.text(0.1, 0.5, escape.plot_text("cost $x^$ here"))
    FigureCanvasAgg(fig).draw()


def test_markdown_and_environment_escape_html(report_dir):
    pages = [report_dir / "report.md", report_dir / "claims.md"]
    pages += sorted((report_dir / "tables").glob("*.md"))
    for page in pages:
        assert raw_html(page.read_text()) == [], page
    for page in [report_dir / "index.html", *sorted((report_dir / "tables").glob("*.html"))]:
        assert raw_html(page.read_text()) == [], page
    text = (report_dir / "report.md").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # shown, not dropped
    assert "node &lt;script&gt;" in text.split("**Environment**", 1)[1]
    # the opposite case: the check sees raw markup
    assert raw_html(f"a {IMG} b") == ["<img src=x"]


def test_csv_formula_cells_are_prefixed_and_numbers_stay_numbers(report_dir):
    assert formula_cells(report_dir) == []
    failed = pd.read_csv(report_dir / "tables" / "failed.csv")
    assert set(failed["error"].str[:2]) == {"'=", "'-"}
    summary = pd.read_csv(report_dir / "tables" / "summary.csv")
    assert set(summary["run"]) == {"'" + LABEL, "other"}
    assert pd.api.types.is_numeric_dtype(summary["tau"])
    deer = pd.read_csv(report_dir / "tables" / "evidence" / "deer_depth.csv")
    assert pd.api.types.is_numeric_dtype(deer["lyapunov"]) and (deer["lyapunov"] < 0).all()
    # the opposite case: an unprefixed formula is found
    (report_dir / "probe.csv").write_text('a,b\n"=1+2+cmd|x",-3\n')
    try:
        assert formula_cells(report_dir) == ["probe.csv: =1+2+cmd|x"]
    finally:
        (report_dir / "probe.csv").unlink()


def test_escape_rules():
    assert escape.plot_text("a $b$") == r"a \$b\$"
    assert escape.html_text('<a href="x">') == "&lt;a href=&quot;x&quot;&gt;"
    assert escape.md_text("<b>\nx & y") == "&lt;b&gt; x &amp; y"
    for start in ("=", "+", "-", "@", "\t", "\r"):
        assert escape.csv_cell(f"{start}1") == f"'{start}1"
    assert escape.csv_cell("plain") == "plain" and escape.csv_cell(-3.0) == -3.0
    frame = escape.csv_frame(pd.DataFrame({"n": [-1.5, 2.0], "t": ["=x", "y"]}))
    assert frame["n"].tolist() == [-1.5, 2.0] and frame["t"].tolist() == ["'=x", "y"]
