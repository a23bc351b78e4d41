"""Cells too large for the node are refused before they allocate; a τ longer than the
text corpus is refused when the job is read."""

from __future__ import annotations

import resource

import pytest

from rnnbench import cli
from rnnbench.errors import UsageError
from rnnbench.harness import budget, runner
from rnnbench.job.cell import Cell

HUGE = dict(model="elman", strategy="bptt", tau=1_900_000, batch=256, hidden=256)


def test_the_estimate_grows_with_the_cell_and_follows_the_saved_bytes():
    small = budget.estimate_bytes(Cell(model="elman", strategy="bptt", tau=1024))
    large = budget.estimate_bytes(Cell(model="elman", strategy="bptt", tau=1024, batch=64))
    assert small < large
    chunked = budget.estimate_bytes(
        Cell(model="jordan", strategy="teacher_forcing", tau=65536, strategy_options={"chunk": 256})
    )
    whole = budget.estimate_bytes(Cell(model="jordan", strategy="teacher_forcing", tau=65536))
    assert chunked < whole  # chunked teacher forcing keeps one gradient buffer
    assert budget.too_large(Cell(model="elman", strategy="bptt", tau=1024)) is None


def test_a_cell_too_large_for_the_node_is_a_failed_row_before_it_allocates():
    cell = Cell(**HUGE)
    assert budget.estimate_bytes(cell) > (budget.node_bytes() or 0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    row = runner.run_cell(cell)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert row["status"] == "failed" and "refused before allocating" in row["error"]
    assert "GiB" in row["error"] and grown_kib < 512 * 1024  # nowhere near the estimate


def test_bench_refuses_it_in_one_line(capsys):
    rc = cli.main(
        [
            "bench",
            "--model",
            "elman",
            "--strategy",
            "bptt",
            "--tau",
            "1900000",
            "--batch",
            "256",
            "--hidden",
            "256",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "memory: the cell needs about" in err


def test_a_tau_longer_than_the_corpus_is_refused_when_the_job_is_read(tmp_path, capsys):
    with pytest.raises(UsageError, match="tau: 100000000 is longer than the text corpus"):
        Cell(model="elman", strategy="bptt", tau=100_000_000)
    job = tmp_path / "job.yaml"
    job.write_text("name: long\nfixed: {model: elman, strategy: bptt}\ngrid: {tau: [100000000]}\n")
    rc = cli.main(["run", str(job), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "grid.tau: 100000000 is longer than the text corpus" in err
    assert not (tmp_path / "out").exists()  # refused before anything was made
