"""A baseline inside a cell: alternating blocks, per-pair ratios, validated overrides,
threads: all, the best-BPTT choice, page faults and peak RSS."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from rnnbench import cli
from rnnbench.core import strategies
from rnnbench.errors import UsageError
from rnnbench.harness import group as tp
from rnnbench.harness import paired, procstat, sides, single
from rnnbench.harness.row import base_row
from rnnbench.job import jobfile
from rnnbench.job.cell import Cell

TINY = dict(task="delayed_recall", task_options={"symbols": 4}, tau=6, batch=2, hidden=5, repeats=4)


# --------------------------------------------------------------------------- the timer


def test_alternate_takes_turns_and_pairs_blocks_under_drift():
    """A fake clock: B costs 3 units, A 2, and the machine gets 2x slower every pair.
    The blocks run A B B A A B ..., and every pair's ratio is exactly 1.5 although
    each side's own times spread by a factor of 16."""
    now, order = [0.0], []

    def block(side, cost):
        def run(k):
            order.append((k, side))
            start = now[0]
            now[0] += cost * 2**k
            return now[0] - start

        return run

    out = paired.alternate(block("a", 2.0), block("b", 3.0), 5)
    assert order == [
        (0, "a"),
        (0, "b"),
        (1, "b"),
        (1, "a"),
        (2, "a"),
        (2, "b"),
        (3, "b"),
        (3, "a"),
        (4, "a"),
        (4, "b"),
    ]
    assert out.order == [s for _, s in order]
    assert out.ratios == [1.5] * 5
    assert max(out.a) / min(out.a) == 16
    f = paired.row_fields(out)
    assert f["speedup_median"] == f["speedup_q1"] == f["speedup_q3"] == 1.5
    assert f["baseline_step_ms_median"] == 3e3 * 4  # pair 2's 3 * 2**2 units, in ms


def test_quartiles_and_cpu_window():
    assert paired.quartiles([4.0, 1.0, 3.0, 2.0, 5.0]) == (2.0, 3.0, 4.0)
    assert all(math.isnan(v) for v in paired.quartiles([]))
    assert paired.cpu_window([0, 1, 2, 3], 1, 5) == {1}
    assert paired.cpu_window([0, 1, 2, 3], 2, 3) == {3, 0}
    assert paired.cpu_window([2, 5], 4, 1) == {2, 5}


def test_affinity_is_restored():
    if not paired.can_pin():
        pytest.skip("the OS does not let this process set CPU affinity")
    before = os.sched_getaffinity(0)
    with paired.Affinity() as aff:
        aff.pin({min(before)})
        assert os.sched_getaffinity(0) == {min(before)}
    assert os.sched_getaffinity(0) == before


class FakeSteps:
    """Training steps on a fake clock: A costs 2 units, B 3, every pair twice slower
    than the last; the log says which ran, in order."""

    def __init__(self):
        self.now, self.log, self.timed = 0.0, [], 0

    def clock(self):
        return self.now

    def step(self, side, cost):
        def run():
            # after the warm-ups, a pair is four runs: each block settled, then timed
            pair = max(0, len(self.log) - 2 * single.WARMUP) // 4
            self.log.append(side)
            self.now += cost * 2**pair

        return run


def test_time_step_pairs_the_cell_with_its_baseline(monkeypatch):
    fake = FakeSteps()
    c = Cell(model="elman", strategy="bptt", baseline={"strategy": "bptt_fused"}, **TINY)
    monkeypatch.setattr(
        single, "_build_side", lambda cell: single.Side(fake.step("b", 3.0), cell.n_threads)
    )
    out = single.time_step(c, fake.step("a", 2.0), math.inf, clock=fake.clock)
    warm = single.WARMUP
    assert fake.log == ["a"] * warm + ["b"] * warm + ["a", "a", "b", "b", "b", "b", "a", "a"] * 2
    assert out["speedup_samples"] == [1.5] * 4
    assert out["speedup_median"] == 1.5
    assert json.loads(out["baseline_config"]) == {"strategy": "bptt_fused"}
    assert out["step_ms_samples"] == [2e3, 4e3, 8e3, 16e3]
    assert out["minor_faults_per_step"] >= 0 and out["baseline_minor_faults_per_step"] >= 0


class Leftover:
    """Two sides on a fake clock, each run 1 unit, where the first run of a side right
    after the other side's pays ``left`` units more: what a P-thread block leaves on the
    CPUs (OpenMP's spinning workers) and in the caches."""

    def __init__(self, left: float):
        self.now, self.last, self.left = 0.0, None, left

    def clock(self):
        return self.now

    def side(self, name: str) -> sides.Side:
        def run():
            self.now += 1.0 + (self.left if self.last not in (None, name) else 0.0)
            self.last = name

        return sides.Side(run, 1)


@pytest.mark.parametrize("taking_turns", ["pair", "rounds"])
def test_a_block_after_the_other_sides_is_settled_before_it_is_timed(taking_turns):
    """Every block of sides that take turns starts with one untimed run: the other side's
    leftovers are not timed.  The opposite: a block timed without it (a side's blocks
    one after another, ``settle`` off) pays them."""
    fake = Leftover(left=4.0)
    a, b = fake.side("a"), fake.side("b")
    if taking_turns == "pair":
        done, _ = sides.pair(a, b, 4, fake.clock, lambda what: None)
        times = [done.a, done.b]
    else:
        times = sides.rounds([a, b], 4, fake.clock, lambda what: None)
    assert times == [[1.0] * 4, [1.0] * 4]
    fake.last = "a"
    assert b.block(fake.clock) == 5.0  # unsettled: the leftover is timed
    fake.last = "a"
    assert b.block(fake.clock, settle=True) == 1.0


def test_all_cores_stay_all_cores_after_a_one_thread_block(monkeypatch):
    """``threads: all`` against ``{threads: 1}``: the 1-thread baseline's block pins the
    process to one CPU; every later block of the cell must still get every CPU and
    its thread count (it once shrank to 1: "all" was re-counted while pinned)."""
    if not paired.can_pin() or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPUs and CPU affinity")
    cpus = len(os.sched_getaffinity(0))
    seen = []

    def step(side):
        def run():
            seen.append((side, torch.get_num_threads(), len(os.sched_getaffinity(0))))

        return run

    c = Cell(model="elman", strategy="bptt", threads="all", baseline={"threads": 1}, **TINY)
    monkeypatch.setattr(single, "_build_side", lambda cell: single.Side(step("b"), cell.n_threads))
    single.time_step(c, step("a"), math.inf)
    timed = seen[2 * single.WARMUP :]
    assert {(t, n) for s, t, n in timed if s == "a"} == {(cpus, cpus)}
    assert {(t, n) for s, t, n in timed if s == "b"} == {(1, 1)}
    assert len(os.sched_getaffinity(0)) == cpus  # restored


# --------------------------------------------------------------------------- overrides


@pytest.mark.parametrize(
    "baseline, field",
    [
        ({"colour": 1}, "baseline.colour"),
        ({"repeats": 3}, "baseline.repeats"),
        ({"workers": 0}, "baseline.workers"),
        ({"strategy": "nope"}, "baseline.strategy"),
        ({"threads": "many"}, "baseline.threads"),
        ({"workers": 2}, "baseline.workers"),
        ({"tau": 6}, "baseline:"),
        ({"strategy": "teacher_forcing"}, "baseline.strategy"),
        ("x", "baseline:"),
    ],
)
def test_bad_overrides_name_the_field(baseline, field):
    with pytest.raises(UsageError) as err:
        Cell(model="elman", strategy="bptt", baseline=baseline, **TINY)
    assert str(err.value).startswith(field), str(err.value)
    assert "\n" not in str(err.value)


def test_baseline_ids_and_resets():
    plain = Cell(model="elman", strategy="truncated_bptt", strategy_options={"k": 2}, **TINY)
    with_base = Cell(
        model="elman",
        strategy="truncated_bptt",
        strategy_options={"k": 2},
        baseline={"strategy": "bptt"},
        **TINY,
    )
    assert plain.config()["baseline"] == {}
    assert with_base.cell_id != plain.cell_id
    base = with_base.baseline_cell()
    assert base.strategy == "bptt" and base.strategy_options == () and base.baseline == ()
    grouped = Cell(model="elman", strategy="bptt", workers=2, baseline={"workers": 1}, **TINY)
    assert grouped.baseline_cell().harness == "group"  # timed by the same harness


def test_cli_baseline_errors_are_one_line_exit_2(capsys):
    args = ["bench", "--model", "elman", "--strategy", "bptt", "--tau", "4"]
    assert cli.main(args + ["--baseline", "colour=red"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "baseline.colour" in err[0]
    assert cli.main(args + ["--baseline", "tau=4"]) == 2
    assert "identical" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        cli.main(args + ["--baseline", "nonsense"])
    assert stop.value.code == 2 and "--baseline" in capsys.readouterr().err


def test_cli_baseline_parses_fields_and_options():
    from rnnbench.bench import overrides

    assert overrides("model=elman,strategy=bptt") == {"model": "elman", "strategy": "bptt"}
    assert overrides("workers=1, strategy_options.chunk=8") == {
        "workers": 1,
        "strategy_options": {"chunk": 8},
    }


def test_job_file_baseline_in_fixed_part_and_run(tmp_path):
    job = jobfile.validate(
        {
            "name": "pairs",
            "fixed": {"baseline": {"threads": 1}, **TINY, "threads": "all"},
            "parts": [
                {"name": "a", "grid": {"model": ["elman"], "strategy": ["bptt"]}},
                {
                    "name": "c",
                    "grid": {
                        "run": [
                            {
                                "model": "jordan",
                                "strategy": "teacher_forcing",
                                "baseline": {"model": "elman", "strategy": "best_bptt"},
                            }
                        ]
                    },
                },
                {
                    "name": "b",
                    "fixed": {"baseline": {"strategy": "bptt_fused"}},
                    "grid": {"model": ["elman"], "strategy": ["bptt"]},
                },
            ],
        }
    )
    assert [dict(c.baseline) for c in job.cells] == [
        {"threads": 1},
        {"model": "elman", "strategy": "best_bptt"},
        {"strategy": "bptt_fused"},
    ]
    with pytest.raises(jobfile.JobError) as err:
        jobfile.validate(
            {
                "name": "bad",
                "fixed": TINY,
                "grid": {
                    "run": [{"model": "elman", "strategy": "bptt", "baseline": {"workers": 0}}]
                },
            }
        )
    assert err.value.problems == ["grid.run[0].baseline.workers: must be a positive integer, got 0"]
    with pytest.raises(jobfile.JobError) as err:
        jobfile.validate(
            {
                "name": "bad",
                "fixed": {**TINY, "baseline": [1]},
                "grid": {"model": ["elman"], "strategy": ["bptt"]},
            }
        )
    assert err.value.problems[0].startswith("fixed.baseline: must be a mapping")


# --------------------------------------------------------------------------- threads: all


def test_threads_all_is_the_cpu_count():
    c = Cell(model="elman", strategy="bptt", threads="all", **TINY)
    assert c.n_threads == len(os.sched_getaffinity(0)) >= 1
    assert base_row(c)["threads"] == c.n_threads
    assert c.cell_id != Cell(model="elman", strategy="bptt", threads=c.n_threads, **TINY).cell_id
    with pytest.raises(UsageError, match="threads: must be a positive integer or 'all'"):
        Cell(model="elman", strategy="bptt", threads="every", **TINY)


# --------------------------------------------------------------------------- best BPTT


def test_best_bptt_picks_the_fastest_candidate(monkeypatch, one_thread):
    """Three candidates on a fake clock: each loss call costs its strategy 3, 2 or 1
    units; the cheapest wins, and the row fields say which and what each took."""
    now = [0.0]

    def costing(fn, cost):
        def run(model, x, y):
            now[0] += cost
            return fn(model, x, y)

        return run

    reg = strategies.STRATEGIES
    plain, fused = reg["bptt"], reg["bptt_fused"]
    monkeypatch.setitem(reg, "bptt", _replace(plain, fn=costing(plain.fn, 3.0)))
    monkeypatch.setitem(reg, "bptt_fused", _replace(fused, fn=costing(fused.fn, 2.0)))
    monkeypatch.setitem(
        reg, "bptt_compiled", _replace(plain, name="bptt_compiled", fn=costing(plain.fn, 1.0))
    )
    assert strategies.bptt_candidates("elman") == ["bptt", "bptt_fused", "bptt_compiled"]
    c = Cell(
        model="jordan",
        strategy="teacher_forcing",
        baseline={"model": "elman", "strategy": "best_bptt"},
        **TINY,
    )
    side, out = single.baseline_side(c, lambda: now[0], lambda what: None)
    assert json.loads(out["baseline_config"]) == {"model": "elman", "strategy": "bptt_compiled"}
    assert json.loads(out["baseline_candidates_ms"]) == {
        "bptt": 3000.0,
        "bptt_fused": 2000.0,
        "bptt_compiled": 1000.0,
    }


def test_best_tf_picks_the_fastest_form_of_teacher_forcing(monkeypatch, one_thread):
    """best_tf times every form of teacher forcing (the same gradient) and keeps the
    fastest: here the in-place form costs 1 unit a call, the default 2."""
    now = [0.0]
    reg = strategies.STRATEGIES
    tf = reg["teacher_forcing"]

    def costing(model, x, y, **options):
        now[0] += 1.0 if options.get("impl") == "inplace" else 2.0
        return tf.fn(model, x, y, **options)

    monkeypatch.setitem(reg, "teacher_forcing", _replace(tf, fn=costing))
    c = Cell(
        model="elman", strategy="bptt", baseline={"model": "jordan", "strategy": "best_tf"}, **TINY
    )
    _, out = single.baseline_side(c, lambda: now[0], lambda what: None)
    assert json.loads(out["baseline_config"]) == {
        "model": "jordan",
        "strategy": "teacher_forcing",
        "strategy_options": {"impl": "inplace"},
    }
    assert json.loads(out["baseline_candidates_ms"]) == {
        "teacher_forcing impl=sum": 2000.0,
        "teacher_forcing impl=inplace": 1000.0,
    }


def _replace(strategy, **changes):
    import dataclasses

    return dataclasses.replace(strategy, **changes)


def test_best_bptt_candidates_are_exact_sequential():
    assert strategies.bptt_candidates("elman")[:2] == ["bptt", "bptt_fused"]
    assert strategies.bptt_candidates("jordan") == ["bptt"]  # free running, same model
    for name in strategies.bptt_candidates("elman"):
        s = strategies.STRATEGIES[name]
        assert s.exact and s.depth(100) == 100


# --------------------------------------------------------------------------- the OS


def test_page_faults_and_peak_rss_see_fresh_memory():
    import mmap

    method = procstat.reset_peak_rss()
    low = procstat.peak_rss(method)
    f0 = procstat.minor_faults()
    # 64 MiB of fresh anonymous pages, every page touched (mmap directly: malloc may be
    # set to reuse its heap, rnnbench.harness.allocator)
    block = mmap.mmap(-1, 64 << 20)
    for i in range(0, 64 << 20, 4096):
        block[i] = 1
    faults = procstat.minor_faults() - f0
    assert faults >= (64 << 20) // (2 << 20)  # at least one per page (2 MiB with huge pages)
    assert procstat.peak_rss(method) >= low + 0.9 * (64 << 20)
    block.close()


def test_cell_row_has_faults_rss_and_a_failing_baseline_is_data(one_thread):
    c = Cell(model="elman", strategy="bptt", baseline={"device": "cuda"}, **TINY)
    row = single.run_cell(c)
    assert row["status"] == "ok", row["error"]
    assert row["step_ms_median"] > 0 and len(row["step_ms_samples"]) == c.repeats
    assert row["minor_faults_per_step"] >= 0 and row["peak_rss_bytes"] > 0
    assert row["peak_rss_method"] in (procstat.HWM, procstat.MAXRSS)
    assert row["baseline"] == '{"device": "cuda"}'
    if not __import__("torch").cuda.is_available():
        assert "cuda" in row["baseline_error"]
        assert math.isnan(row["speedup_median"]) and row["speedup_samples"] == []


# --------------------------------------------------------------------------- time split


def test_fair_baseline_chunks_a_time_split_to_the_workers_slice():
    c = Cell(
        model="jordan", strategy="teacher_forcing", tau=65536, workers=2, baseline={"workers": 1}
    )
    assert dict(tp.fair_baseline(c, c.baseline_cell()).strategy_options) == {"chunk": 32768}
    mine = Cell(
        model="jordan",
        strategy="teacher_forcing",
        tau=65536,
        workers=2,
        baseline={"workers": 1, "strategy_options": {}},
    )
    assert tp.fair_baseline(mine, mine.baseline_cell()).strategy_options == ()
    elman = Cell(model="elman", strategy="bptt", tau=64, workers=2, baseline={"workers": 1})
    assert tp.fair_baseline(elman, elman.baseline_cell()) == elman.baseline_cell()
    # DEER is split in time too but has no chunks: its baseline stays as given (a chunk
    # option made chapter10's paired DEER cells fail: "deer.chunk: unknown option")
    deer = Cell(model="elman", strategy="deer", tau=4096, workers=2, baseline={"workers": 1})
    assert tp.fair_baseline(deer, deer.baseline_cell()) == deer.baseline_cell()
    base = tp.fair_baseline(deer, deer.baseline_cell())
    strategies.check("elman", base.strategy, dict(base.strategy_options), base.tau)  # runs


def test_worker_groups_take_turns(ray_session):
    c = Cell(
        model="jordan",
        strategy="teacher_forcing",
        workers=2,
        baseline={"workers": 1},
        dtype="float64",
        **dict(TINY, tau=11),
    )
    row = tp.run_cell(c, cpus_per_worker=0.5)
    assert row["status"] == "ok", row["error"]
    assert row["baseline_error"] is None
    assert len(row["speedup_samples"]) == c.repeats and row["speedup_median"] > 0
    assert json.loads(row["baseline_config"]) == {
        "harness": "group",
        "workers": 1,
        "strategy_options": {"chunk": 6},
    }
    assert row["minor_faults_per_step"] >= 0 and row["peak_rss_bytes"] > 0
    assert row["baseline_minor_faults_per_step"] >= 0
