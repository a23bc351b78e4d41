"""Replicates: each in a fresh process, in rounds interleaved with the other cells, resumed
one by one; cells that must run alone; and adaptive precision, which adds replicates
until an interval is narrow enough (on synthetic timings with known noise)."""

from __future__ import annotations

import itertools
import math
import os
import random
import sys
import time
from pathlib import Path

import pytest

from rnnbench.facts import OK
from rnnbench.job import jobfile
from rnnbench.job.cell import Cell
from rnnbench.results import store
from rnnbench.sweep import adaptive, driver

# Ray's workers cannot import tests/: ship this module's runners by value.
from ray import cloudpickle  # isort: skip

cloudpickle.register_pickle_by_value(sys.modules[__name__])

BASE = dict(model="elman", strategy="bptt", tau=8, hidden=8, repeats=2, task="running_parity")


def row_of(cell: Cell, **extra) -> dict:
    return {
        **cell.config(),
        "cell_id": cell.cell_id,
        "status": OK,
        "error": None,
        "step_ms_median": 1.0,
        **extra,
    }


def pid_runner(log_dir: str, cell: Cell) -> dict:
    """Logs (replicate, pid, start, end) and sleeps a second, so cells can overlap even
    on a loaded machine."""
    start = time.time()
    time.sleep(1.0)
    Path(log_dir, f"{cell.cell_id}.log").write_text(
        f"{cell.seed} {cell.replicate} {os.getpid()} {start} {time.time()}"
    )
    return row_of(cell)


def meeting_runner(log_dir: str, cell: Cell) -> dict:
    """:func:`pid_runner` for shared cells that wait (up to 5 s) until two of them have
    started, so they overlap even where a loaded machine starts processes slowly."""
    if cell.exclusive:
        return pid_runner(log_dir, cell)
    Path(log_dir, f"{cell.cell_id}.start").touch()
    deadline = time.time() + 5
    while len(list(Path(log_dir).glob("*.start"))) < 2:
        if time.time() > deadline:
            break
        time.sleep(0.05)
    return pid_runner(log_dir, cell)


def read_log(log_dir: Path) -> list[tuple[int, int, int, float, float]]:
    out = []
    for p in sorted(log_dir.glob("*.log")):
        seed, rep, pid, start, end = p.read_text().split()
        out.append((int(seed), int(rep), int(pid), float(start), float(end)))
    return out


def test_a_job_expands_replicates_in_rounds(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(
        "name: r\nfixed: {model: elman, strategy: bptt, task: running_parity, hidden: 8,"
        " replicates: 3}\ngrid: {tau: [8, 16]}\n"
    )
    cells = jobfile.load(job).cells
    assert [(c.tau, c.replicate) for c in cells] == [
        (8, 0),
        (16, 0),
        (8, 1),
        (16, 1),
        (8, 2),
        (16, 2),
    ]
    assert len({c.cell_id for c in cells}) == 6  # each replicate its own id


def test_replicates_run_in_distinct_processes(ray_session, tmp_path):
    cells = jobfile.replicated([Cell(**BASE, replicates=3)])
    log = tmp_path / "log"
    log.mkdir()
    result = driver.run_sweep(
        cells, tmp_path / "out", runner=_bind(pid_runner, log), progress=False
    )
    assert result.counts == {OK: 3}
    pids = [pid for _, _, pid, _, _ in read_log(log)]
    assert len(pids) == 3 and len(set(pids)) == 3, pids  # a fresh process each
    assert driver.fresh_process(cells[0])
    assert not driver.fresh_process(Cell(**BASE, seed=9))  # one replicate: a reused worker


def test_resume_runs_only_the_missing_replicates(ray_session, tmp_path):
    cells = jobfile.replicated([Cell(**BASE, replicates=3)])
    out = tmp_path / "out"
    for c in (cells[0], cells[2]):
        store.write_row(out, row_of(c))
    log = tmp_path / "log"
    log.mkdir()
    result = driver.run_sweep(cells, out, runner=_bind(pid_runner, log), progress=False)
    assert result.skipped == 2 and result.counts == {OK: 1}
    assert [rep for _, rep, _, _, _ in read_log(log)] == [1]
    assert store.stored_ids(out) == {c.cell_id for c in cells}


def test_a_cell_that_must_run_alone_has_no_neighbour(ray_session, tmp_path):
    """Four sleeping cells on 2 CPUs: the shared ones run two at a time (they wait for
    each other), the exclusive one with nobody beside it (every other cell takes a
    sliver of its node's unit), and not first though listed first: a sweep's first
    moments are Ray's start-up."""
    shared = [Cell(**BASE, seed=s) for s in range(3)]
    alone = Cell(**BASE, seed=7, exclusive=True)
    log = tmp_path / "log"
    log.mkdir()
    driver.run_sweep(
        [alone, *shared], tmp_path / "out", runner=_bind(meeting_runner, log), progress=False
    )
    rows = {r["seed"]: r for r in store.read_rows(tmp_path / "out")}
    assert rows[7]["neighbours"] == 0
    spans = {seed: (start, end) for seed, _, _, start, end in read_log(log)}
    s7, e7 = spans[7]
    assert all(end <= s7 or start >= e7 for seed, (start, end) in spans.items() if seed != 7)
    assert s7 > min(spans[s][0] for s in range(3)), spans
    # the check sees overlap: shared cells whose runs overlapped count each other (the
    # registry's window holds the run; its counting alone: test_sweep)
    overlapped = {
        a
        for a, b in itertools.permutations(range(3), 2)
        if spans[a][0] < spans[b][1] and spans[b][0] < spans[a][1]
    }
    assert all(rows[s]["neighbours"] >= 1 for s in overlapped), (spans, rows)


def _bind(fn, log):
    import functools

    return functools.partial(fn, str(log))


# --------------------------------------------------------------------------- adaptive


def _drive(planner, first: list[Cell], value) -> list[dict]:
    """Feed the planner rows of the cells it asks for, their figure from ``value(cell)``."""
    queue, rows = list(first), []
    while queue:
        cell = queue.pop(0)
        row = row_of(cell, step_ms_median=value(cell))
        rows.append(row)
        more, _ = planner.after(row)
        queue += more
    return rows


@pytest.mark.parametrize("noise, precision", [(0.02, 0.05), (0.05, 0.05), (0.05, 0.03)])
def test_adaptive_replicates_stop_at_their_target(noise, precision):
    """Log-normal step times of known spread: replicates are added until the geometric
    mean's relative half-width is at most the target, and the rows say so."""
    rng = random.Random(7)
    cell = Cell(**BASE, replicates=3, precision=precision, max_replicates=40)
    first = jobfile.replicated([cell])
    planner = adaptive.Planner(first)
    rows = _drive(planner, first, lambda c: 10 * math.exp(rng.gauss(0, noise)))
    assert {r["replicates_stop"] for r in rows} == {"target"}
    reached = rows[0]["replicates_precision"]
    assert reached <= precision
    assert reached == pytest.approx(adaptive.relative_half_width(r["step_ms_median"] for r in rows))
    # the replicates it took: about (t * noise / precision)^2, never far more
    assert 3 <= len(rows) <= 4 + 2 * (2.6 * noise / precision) ** 2


def test_adaptive_replicates_stop_at_the_cap_when_the_noise_is_too_large():
    rng = random.Random(3)
    cell = Cell(**BASE, replicates=2, precision=0.01, max_replicates=6)
    first = jobfile.replicated([cell])
    rows = _drive(adaptive.Planner(first), first, lambda c: 10 * math.exp(rng.gauss(0, 0.5)))
    assert len(rows) == 6 and {r["replicates_stop"] for r in rows} == {"replicate cap"}
    assert rows[0]["replicates_precision"] > 0.01


def test_no_precision_no_extra_replicates():
    first = jobfile.replicated([Cell(**BASE, replicates=3)])
    rows = _drive(adaptive.Planner(first), first, lambda c: 10.0)
    assert len(rows) == 3 and "replicates_stop" not in rows[0]


def test_a_law_adds_replicates_until_its_verdict_is_decided():
    """Truly linear T = 1 + 0.01 τ with 15% noise: undecided at one replicate a τ, decided
    after more — where the fit is least certain — and linear."""
    rng = random.Random(11)
    cells = jobfile.replicated(
        [
            Cell(**{**BASE, "tau": t}, replicates=1, precision=0.05, max_replicates=12)
            for t in (64, 256, 1024, 4096)
        ]
    )
    planner = adaptive.Planner(cells)
    rows = _drive(planner, cells, lambda c: (1 + 0.01 * c.tau) * math.exp(rng.gauss(0, 0.15)))
    stops = {r["replicates_stop"] for r in rows}
    assert stops == {"decided"}, stops
    assert len(rows) > 4  # it had to add replicates
    from rnnbench.stats import LINEAR, law_verdict, overhead_fit

    fit = overhead_fit([r["tau"] for r in rows], [r["step_ms_median"] for r in rows])
    assert law_verdict(fit, 0.2) == LINEAR
