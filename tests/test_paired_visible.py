"""Paired cells are told apart from plain ones everywhere: the dry run's baseline column,
the run summary's two tables (with baseline_ms and speedup), the report's tables (the
baseline as text, not JSON) and `rnnbench compare` (no dangling ``baseline=``)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import report_synthetic as rs

from rnnbench import cli
from rnnbench.harness.row import base_row
from rnnbench.job import jobfile
from rnnbench.report import tables, tidy
from rnnbench.results import store
from rnnbench.results.labels import PLAIN, baseline_text
from rnnbench.sweep import command

JOB = """name: paired
fixed: {model: jordan, strategy: teacher_forcing, task: text, hidden: 4, repeats: 1, tau: 16}
parts:
  - name: plain
    grid: {threads: [1]}
  - name: cores
    fixed: {threads: 2, baseline: {threads: 1}}
  - name: vs_bptt
    fixed: {threads: 1, baseline: {model: elman, strategy: bptt_compiled}}
"""


@pytest.mark.parametrize(
    "value, text",
    [
        ('{"threads": 1}', "threads=1"),
        ({"threads": 1}, "threads=1"),
        ((("strategy", "bptt"), ("model", "elman")), "model=elman, strategy=bptt"),
        ('{"strategy": "truncated_bptt", "strategy_options": {"k": 8}}', None),
        (None, PLAIN),
        (math.nan, PLAIN),
        ("", PLAIN),
        ("{}", PLAIN),
        ((), PLAIN),
    ],
)
def test_a_baseline_reads_as_its_fields(value, text):
    got = baseline_text(value)
    if text is None:
        assert got == "strategy=truncated_bptt, strategy_options=(k=8)"
    else:
        assert got == text
    assert "{" not in got and '"' not in got


def test_the_dry_run_has_a_baseline_column(tmp_path, capsys):
    path = tmp_path / "job.yaml"
    path.write_text(JOB)
    assert cli.main(["run", str(path), "--dry-run", "--out", str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    assert "baseline" in header
    body = lines[1:4]
    shown = {line.split()[header.index("threads")]: line for line in body}
    assert shown["2"].rstrip().split()[header.index("baseline")] == "threads=1"
    assert "model=elman, strategy=bptt_compiled" in "\n".join(body)
    plain = next(
        line for line in body if "threads=1" not in line and "strategy=" not in line
    ).split()
    assert plain[header.index("baseline")] == PLAIN


def _stored(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(JOB)
    cells = jobfile.load(path).cells
    out = tmp_path / "out"
    (out / "rows").mkdir(parents=True)  # the store writes into a folder, never creates it
    for c in cells:
        row = {**base_row(c), "step_ms_median": 10.0}
        if c.baseline:
            row.update(baseline_step_ms_median=14.0 if c.n_threads == 2 else 30.0)
            row.update(speedup_median=1.4 if c.n_threads == 2 else 3.0)
        store.write_row(out, row)
    return out, cells


def test_the_run_summary_shows_plain_and_paired_cells_apart_with_speedups(tmp_path):
    out, cells = _stored(tmp_path)
    text, all_ok = command.run_summary(out, {c.cell_id for c in cells})
    assert all_ok
    plain, paired = text.split("paired cells")
    assert "plain cells" in plain and "speedup" not in plain and "threads=1" not in plain
    lines = [line.split() for line in paired.splitlines()[1:] if line.strip()]
    header = lines[0]
    assert header[:3] == ["model", "strategy", "baseline"]
    assert header[-3:] == ["step_ms_median", "baseline_ms", "speedup"]
    body = {" ".join(w[2:-6]): w[-3:] for w in lines[1:3]}
    assert body == {
        "threads=1": ["10", "14", "1.4"],
        "model=elman, strategy=bptt_compiled": ["10", "30", "3"],
    }


def test_a_job_of_plain_cells_keeps_its_one_table(tmp_path):
    """The opposite case: no paired cell, no second table and no baseline column."""
    out, cells = _stored(tmp_path)
    plain = {c.cell_id for c in cells if not c.baseline}
    text, _ = command.run_summary(out, plain)
    assert "paired" not in text and "baseline" not in text and "plain cells" not in text


def test_report_tables_show_the_baseline_as_text():
    rows = [
        rs.row(
            model="jordan",
            strategy="teacher_forcing",
            tau=1024,
            threads=2,
            seed=s,
            baseline='{"threads": 1}',
            baseline_config='{"threads": 1}',
            step_ms_median=10.0,
            baseline_step_ms_median=14.0,
            speedup_median=1.4,
            speedup_samples=[1.3, 1.4, 1.5],
        )
        for s in range(2)
    ] + [rs.row(model="jordan", strategy="teacher_forcing", tau=1024, step_ms_median=14.0)]
    tidy_rows = tidy.load(pd.DataFrame(rows))
    shown = tables.display(tables.paired(tidy_rows))
    assert list(shown["baseline"]) == ["threads=1"] and list(shown["baseline_config"]) == [
        "threads=1"
    ]
    summary = tables.display(tables.summary(tidy_rows))
    assert sorted(summary["baseline"]) == [PLAIN, "threads=1"]
    assert not summary.astype(str).apply(lambda c: c.str.contains('{"', regex=False)).any().any()


def _results(folder, rows):
    (folder / "rows").mkdir(parents=True)
    for r in rows:
        store.write_row(folder, r)
    return folder


def _run_rows(seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)

    def noisy(v):
        return v * math.exp(rng.normal(0, 0.01))

    rows = []
    for rep in range(3):
        rows += [
            rs.row(
                model="jordan",
                strategy="teacher_forcing",
                tau=1024,
                threads=2,
                seed=rep,
                baseline='{"threads": 1}',
                step_ms_median=noisy(10.0),
                speedup_median=noisy(1.4),
            ),
            rs.row(model="elman", strategy="bptt", tau=1024, seed=rep, step_ms_median=noisy(30.0)),
        ]
    return rows


def test_compare_names_a_paired_cells_baseline_and_plain_cells_none(tmp_path, capsys):
    base = _results(tmp_path / "base", _run_rows(1))
    new = _results(tmp_path / "new", _run_rows(2))
    assert cli.main(["compare", str(base), str(new)]) == 0
    out = capsys.readouterr().out
    paired = [line for line in out.splitlines() if "teacher_forcing" in line]
    plain = [line for line in out.splitlines() if "elman + bptt" in line]
    assert paired and all("baseline(threads=1)" in line for line in paired)
    assert plain and not any("baseline" in line for line in plain)
    assert "baseline=" not in out and '{"threads"' not in out
    # speedups: only the paired cell has one
    assert cli.main(["compare", str(base), str(new), "--measure", "speedup"]) == 0
    out = capsys.readouterr().out
    assert "jordan + teacher_forcing" in out and "baseline(threads=1)" in out
    assert "elman + bptt" not in out
