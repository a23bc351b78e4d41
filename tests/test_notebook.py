"""docs/chapter10.py, the teaching notebook (jupytext percent format), executed cell by
cell in a real Jupyter kernel (nbclient): every strategy runs live, the committed
chapter10 rows re-derive two claims, and a missing report gives "not found" lines."""

from __future__ import annotations

from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext", reason="pip install -e '.[test]' (make setup)")
nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[test]' (make setup)")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "docs" / "chapter10.py"
LIMIT_S = 120  # each cell's time limit: a cell that hangs fails the test (not a speed target)


def execute(nb, cwd: Path):
    client = nbclient.NotebookClient(
        nb, timeout=LIMIT_S, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    return nb


def text(nb) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                out.append(o["text"])
            elif "data" in o:
                out.append(o["data"].get("text/plain", ""))
            elif o.get("output_type") == "error":
                out.append("ERROR " + o["ename"] + ": " + o["evalue"])
    return "\n".join(out)


@pytest.mark.slow
def test_the_notebook_runs_every_strategy_and_rederives_two_claims():
    nb = jupytext.read(NOTEBOOK)
    execute(nb, ROOT / "docs")
    shown = text(nb)
    assert "ERROR" not in shown
    table = next(
        o["data"]["text/plain"]
        for c in nb.cells
        for o in c.get("outputs", [])
        if "data" in o and "teacher_forcing" in o["data"].get("text/plain", "")
    )
    assert table.count(" ok ") >= 12 and "failed" not in table
    assert "not found" not in shown
    # claim 1: memory O(tau), slope about 1, as the report's fit and verdict say
    slopes = [float(s.split("τ^")[1].split()[0]) for s in shown.splitlines() if "∝ τ^" in s]
    assert slopes and all(abs(k - 1) < 0.05 for k in slopes)
    assert "verdict: holds" in shown
    # claim 2: teacher forcing gains from the cores, the BPTT chain does not
    assert "tf_parallel_workers: holds" in shown
    gains = {
        line.split(":")[0]: float(line.split("speedup ")[1].split("×")[0])
        for line in shown.splitlines()
        if "all cores vs one, median speedup" in line
    }
    assert set(gains) == {"jordan + teacher_forcing", "elman + bptt"}


def test_a_missing_report_gives_not_found_lines_not_a_crash(tmp_path, monkeypatch):
    """The same notebook away from the repository, the live cells left out; then the
    opposite case: a report folder given by RNNBENCH_REPORT is found."""
    monkeypatch.delenv("RNNBENCH_REPORT", raising=False)
    nb = jupytext.read(NOTEBOOK)
    nb.cells = [c for c in nb.cells if "run_cell(cell)" not in c.source]
    execute(nb, tmp_path)
    shown = text(nb)
    assert "ERROR" not in shown
    assert "not found: reports/chapter10-cpu/tables/" in shown
    assert "not found: reports/chapter10-cpu/tables/summary.csv" in shown
    assert "∝ τ^" not in shown
    monkeypatch.setenv("RNNBENCH_REPORT", str(ROOT / "reports" / "chapter10-cpu"))
    nb = jupytext.read(NOTEBOOK)
    nb.cells = [c for c in nb.cells if "run_cell(cell)" not in c.source]
    shown = text(execute(nb, tmp_path))
    assert "not found" not in shown and "∝ τ^" in shown
