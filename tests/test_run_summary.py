"""``rnnbench run`` around the sweep: a rerun with every cell stored starts no Ray, and
the closing summary keeps configurations apart (no median across τ or batch)."""

from __future__ import annotations

import pytest

from rnnbench import cli
from rnnbench.harness.row import base_row
from rnnbench.job import jobfile
from rnnbench.results import store
from rnnbench.sweep import command

JOB = """name: tiny
fixed: {model: elman, strategy: bptt, hidden: 4, task: delayed_recall, repeats: 1}
grid: {tau: [8, 16], batch: [1, 2]}
seeds: [0, 1]
"""


class RayStarted(Exception):
    pass


@pytest.fixture
def job(tmp_path, monkeypatch):
    path = tmp_path / "tiny.yaml"
    path.write_text(JOB)

    def no_ray(*args, **kwargs):
        raise RayStarted

    monkeypatch.setattr(command, "connect", no_ray)  # every path to Ray goes through connect
    return path, jobfile.load(path).cells


def _store(out, cells, ms=lambda c: c.tau * c.batch + c.seed):
    for c in cells:
        store.write_row(out, {**base_row(c), "step_ms_median": float(ms(c))})


def test_a_rerun_with_every_cell_stored_starts_no_ray(job, tmp_path, capsys):
    path, cells = job
    out = tmp_path / "out"
    _store(out, cells)
    assert cli.main(["run", str(path), "--out", str(out), "--no-progress"]) == 0
    assert "0 cell(s) run now, 8 already stored" in capsys.readouterr().out


@pytest.mark.parametrize("flags, stored", [([], 7), (["--fresh"], 8), (["--retry-failed"], 8)])
def test_a_rerun_with_work_left_starts_ray(job, tmp_path, flags, stored):
    path, cells = job
    out = tmp_path / "out"
    _store(out, cells[:stored])
    if "--retry-failed" in flags:
        store.write_row(out, {**base_row(cells[0]), "status": "failed", "error": "x"})
    with pytest.raises(RayStarted):
        cli.main(["run", str(path), "--out", str(out), "--no-progress", *flags])


def test_the_summary_gives_one_line_per_configuration(job, tmp_path):
    _, cells = job
    out = tmp_path / "out"
    _store(out, cells)  # step time tau * batch + seed: seeds 0 and 1 -> median + 0.5
    text, all_ok = command.run_summary(out, {c.cell_id for c in cells})
    assert all_ok
    lines = [line.split() for line in text.splitlines()]
    assert lines[0] == ["model", "strategy", "tau", "batch", "cells", "ok", "step_ms_median"]
    body = {(int(w[2]), int(w[3])): (int(w[4]), int(w[5]), float(w[6])) for w in lines[1:5]}
    assert body == {
        (8, 1): (2, 2, 8.5),
        (8, 2): (2, 2, 16.5),
        (16, 1): (2, 2, 16.5),
        (16, 2): (2, 2, 32.5),
    }


def test_the_summary_median_leaves_failed_cells_out(job, tmp_path):
    _, cells = job
    out = tmp_path / "out"
    _store(out, cells)
    bad = next(c for c in cells if (c.tau, c.batch, c.seed) == (8, 1, 1))
    store.write_row(
        out, {**base_row(bad), "status": "failed", "error": "boom", "step_ms_median": 1000.0}
    )
    text, all_ok = command.run_summary(out, {c.cell_id for c in cells})
    assert not all_ok
    line = next(w for w in map(str.split, text.splitlines()) if w[2:4] == ["8", "1"])
    assert line[4:] == ["2", "1", "8"]
