"""Two runs side by side: `rnnbench compare` (the regression gate) and the report of
several runs, on results folders written by rnnbench.results.store."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import report_synthetic as rs
from helpers import CHROMIUM, NO_CHROMIUM, images_loaded, imports_torch

from rnnbench import cli
from rnnbench.report import build_report, compare
from rnnbench.results import store

# Three replicates (here: seeds), three τ, each run a fresh 3% noise draw.
TAUS = (32, 128, 512)
REPS = (0, 1, 2)


def job_rows(seed: int, taus=TAUS, reps=REPS, noise=0.03, **fields) -> list[dict]:
    """The same small job's timing rows, measured again: a fresh noise draw."""
    rows = rs.timing_rows(taus=taus, seeds=reps, noise=noise, rng=np.random.default_rng(seed))
    for r in rows:
        r.update(fields)
    return rows


def results(folder: Path, rows: list[dict]) -> Path:
    for row in rows:
        store.write_row(folder, row)
    return folder


@pytest.fixture
def two_runs(tmp_path):
    """The laptop and the cluster node: same job, another machine and thread count."""
    laptop = results(tmp_path / "laptop", job_rows(1))
    node = results(
        tmp_path / "node",
        job_rows(2, threads=4, host="node7", git_commit="def5678", cpu_model="Cluster CPU @ 2 GHz"),
    )
    return laptop, node


def run(*args, capsys):
    try:
        code = cli.main([*map(str, args)])
    except SystemExit as exc:  # argparse's own errors (one line, exit 2)
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def scale_config(folder: Path, factor: float, column="step_ms_median", **where) -> int:
    """Multiply one measure of every row file matching ``where`` by ``factor``, on disk."""
    n = 0
    for path in (folder / "rows").glob("*.json"):
        row = json.loads(path.read_text())
        if all(row[k] == v for k, v in where.items()):
            row[column] *= factor
            path.write_text(json.dumps(row))
            n += 1
    return n


# --------------------------------------------------------------------------- the rule


def test_the_marks_follow_the_interval():
    m = compare.MEASURES["step_ms"]
    assert compare.mark(1.15, 1.4, 1.3, (3, 3), 1.1, m) == "slower"
    assert compare.mark(0.6, 0.85, 0.7, (3, 3), 1.1, m) == "faster"
    assert compare.mark(0.95, 1.05, 1.0, (3, 3), 1.1, m) == "same"
    assert compare.mark(1.02, 1.4, 1.2, (3, 3), 1.1, m) == "unclear"  # past T, not its CI
    assert compare.mark(1.15, 1.4, 1.3, (2, 5), 1.1, m) == "undecided"  # < 3 a side
    s = compare.MEASURES["speedup"]  # a speedup is worse when it shrinks
    assert compare.mark(0.6, 0.85, 0.7, (3, 3), 1.1, s) == "smaller"
    exact = compare.MEASURES["saved_bytes"]
    assert compare.mark(math.nan, math.nan, 1.5, (1, 1), 1.1, exact) == "larger"


def aa_runs(rng, n_configs=10, reps=5, drift=0.06, spread=0.02, shift=None):
    """One run of a job: per configuration ``reps`` values; the whole run drifts by a
    draw of sd ``drift`` (machine state), each replicate by ``spread`` around it."""
    rows = []
    run_drift = rng.normal(0.0, drift)
    for c in range(n_configs):
        for r in range(reps):
            factor = (shift or {}).get(c, 1.0)
            ms = 10.0 * (c + 1) * factor * math.exp(run_drift + rng.normal(0.0, spread))
            rows.append(
                rs.row(model="elman", strategy="bptt", tau=64 * (c + 1), seed=r, step_ms_median=ms)
            )
    return pd.DataFrame(rows)


def test_an_aa_test_flags_at_most_five_percent_and_a_real_slowdown_is_flagged():
    """Identical code, runs drawn from one distribution whose between-run drift (6%) is
    three times the within-run spread (2%): over 10 configurations and 45 ordered pairs
    of 10 runs, at most 5% of the comparisons are flagged either way.  A true 1.3x
    slowdown of one configuration is flagged slower."""
    rng = np.random.default_rng(21)
    runs_ = [aa_runs(rng) for _ in range(10)]
    flagged = total = 0
    for i in range(len(runs_)):
        for j in range(i + 1, len(runs_)):
            c = compare.compare(runs_[i], runs_[j], labels=("a", "b"))
            flagged += int(c.matched["mark"].isin(["slower", "faster"]).sum())
            total += len(c.matched)
    assert total == 450 and flagged / total <= 0.05, flagged / total
    base = aa_runs(rng)
    slow = aa_runs(rng, shift={3: 1.3})
    c = compare.compare(base, slow, labels=("base", "new"))
    assert list(c.worse) == [c.matched.iloc[3]["configuration"]]
    assert c.exit_code == 1


def test_the_quartile_rule_it_replaces_fails_the_same_aa_test():
    """The old rule — raw samples of one run, the interval from both sides' quartiles —
    flags far more than 5% of identical configurations at this drift: the A/A test can
    fail, and did."""
    rng = np.random.default_rng(21)
    runs_ = [aa_runs(rng, reps=1) for _ in range(10)]
    flagged = total = 0
    for i in range(len(runs_)):
        for j in range(i + 1, len(runs_)):
            a, b = runs_[i], runs_[j]
            for (_, x), (_, y) in zip(a.iterrows(), b.iterrows()):
                samples_a = x["step_ms_median"] * np.linspace(0.98, 1.02, 9)
                samples_b = y["step_ms_median"] * np.linspace(0.98, 1.02, 9)
                lo = np.quantile(samples_b, 0.25) / np.quantile(samples_a, 0.75)
                hi = np.quantile(samples_b, 0.75) / np.quantile(samples_a, 0.25)
                flagged += int(lo > 1.1 or hi < 1 / 1.1)
                total += 1
    assert flagged / total > 0.05


# --------------------------------------------------------------------------- the command


def test_two_runs_of_the_same_job_are_the_same_everywhere(two_runs, capsys):
    code, out, err = run("compare", *two_runs, capsys=capsys)
    assert code == 0, out + err
    c = compare.compare(*two_runs)
    assert len(c.matched) == len(rs.LAWS) * len(TAUS)  # threads 1 vs 4 still match
    assert not c.matched["mark"].isin(["slower", "faster", "undecided"]).any()
    assert (c.matched["base_n"] == 3).all() and c.only.empty and "exit 0" in out
    assert "Synthetic CPU" in out and "Cluster CPU" in out and "def5678" in out
    assert "warning: the machines differ (CPU:" in out  # the fingerprints differ


def test_a_run_against_itself_is_the_same_everywhere(two_runs, capsys):
    code, out, _ = run("compare", two_runs[0], two_runs[0], capsys=capsys)
    n = len(rs.LAWS) * len(TAUS)
    assert code == 0 and f"{n} matched:" in out and "machines differ" not in out
    c = compare.compare(two_runs[0], two_runs[0])
    assert list(c.labels) == [str(two_runs[0]), f"{two_runs[0]} #2"]
    assert (c.matched["ratio"] == 1.0).all()
    assert not c.matched["mark"].isin(["slower", "faster", "undecided"]).any()


def test_one_configuration_made_slower_is_the_only_one_marked_and_fails(two_runs, capsys):
    base, new = two_runs
    assert scale_config(new, 1.5, model="elman", strategy="bptt", tau=128) == 3  # every rep
    code, out, err = run("compare", base, new, capsys=capsys)
    assert code == 1
    c = compare.compare(base, new)
    slower = c.matched[c.matched["mark"] == "slower"]
    assert list(slower["configuration"]) == ["elman + bptt, text, τ=128, B=1, H=32"]
    assert "baseline=" not in out  # a plain cell names no empty baseline
    assert slower.iloc[0]["ratio"] == pytest.approx(1.5, rel=0.1)
    assert not c.matched.drop(slower.index)["mark"].isin(["slower", "faster"]).any()
    assert f"SLOWER: {slower.iloc[0]['configuration']}" in out
    # The gate is the threshold: 1.5x is not slower beyond 1.6.
    code, out, _ = run("compare", base, new, "--threshold", "1.6", capsys=capsys)
    assert code == 0 and "exit 0" in out
    # ... and the other way round it is faster, which never fails the gate.
    code, out, _ = run("compare", new, base, capsys=capsys)
    assert code == 0
    assert list(compare.compare(new, base).matched["mark"]).count("faster") == 1


def test_fewer_than_three_replicates_are_undecided_never_slower(tmp_path, capsys):
    base = results(tmp_path / "base", job_rows(1, reps=(0, 1)))
    new = results(tmp_path / "new", job_rows(2, reps=(0, 1)))
    scale_config(new, 3.0, model="elman", strategy="bptt")
    code, out, _ = run("compare", base, new, capsys=capsys)
    c = compare.compare(base, new)
    assert set(c.matched["mark"]) == {"undecided"} and code == 0
    assert "undecided with fewer than 3 repetitions" in out


def test_sides_of_several_folders_pool_their_replicates(tmp_path, capsys):
    one_each = [results(tmp_path / f"b{i}", job_rows(10 + i, reps=(i,))) for i in range(3)]
    new = [results(tmp_path / f"n{i}", job_rows(20 + i, reps=(i,))) for i in range(3)]
    scale_config(new[0], 2.0, model="jordan", tau=32)
    for folder in new[1:]:
        scale_config(folder, 2.0, model="jordan", tau=32)
    code, out, _ = run("compare", "--base", *one_each, "--new", *new, capsys=capsys)
    assert code == 1 and "n=" not in out
    c = compare.compare(one_each, new)
    assert (c.matched["base_n"] == 3).all() and len(c.worse) == 1
    code, _, err = run("compare", one_each[0], "--base", *one_each, capsys=capsys)
    assert code == 2 and err.count("\n") == 1


def test_the_json_names_the_regression(two_runs, capsys):
    base, new = two_runs
    scale_config(new, 2.0, model="jordan", tau=32)
    code, out, _ = run("compare", base, new, "--json", capsys=capsys)
    obj = json.loads(out)
    assert code == obj["exit_code"] == 1
    assert obj["worse"] == [m["configuration"] for m in obj["matched"] if m["mark"] == "slower"]
    assert len(obj["worse"]) == 1 and "jordan + teacher_forcing" in obj["worse"][0]
    assert obj["base"] == "laptop" and obj["env"]["node"]["git commit"] == "def5678"
    assert "Welch" in obj["rule"] and obj["machines_differ"]


def test_speedups_of_paired_cells_compare_too(tmp_path, capsys):
    """--measure speedup: a paired cell's speedup over its baseline, per replicate; a
    speedup that shrank is the regression.  One configuration: its shift cannot be told
    from the machine's within one run, so each side has three runs (folders)."""

    def side(name, seed, factor):
        rng = np.random.default_rng(seed)
        folders = []
        for run_ in range(3):
            rows = [
                rs.row(
                    model="jordan",
                    strategy="teacher_forcing",
                    tau=1024,
                    seed=r,
                    baseline='{"threads": 1}',
                    step_ms_median=10.0,
                    speedup_median=1.6 * factor * math.exp(rng.normal(0, 0.02)),
                )
                for r in range(2)
            ]
            folders.append(results(tmp_path / f"{name}{run_}", rows))
        return folders

    base, new = side("base", 1, 1.0), side("new", 2, 0.7)
    code, out, _ = run(
        "compare", "--base", *base, "--new", *new, "--measure", "speedup", capsys=capsys
    )
    assert code == 1 and "SMALLER: jordan + teacher_forcing" in out
    same = side("same", 3, 1.0)
    assert (
        run("compare", "--base", *base, "--new", *same, "--measure", "speedup", capsys=capsys)[0]
        == 0
    )
    # one run a side: undecided, never smaller
    code, out, _ = run("compare", base[0], new[0], "--measure", "speedup", capsys=capsys)
    assert code == 0 and "undecided" in out


def test_a_slowdown_of_every_configuration_needs_runs_to_be_told_from_drift(tmp_path, capsys):
    """Every configuration 1.3x slower: within one run a side that is the machine's shift
    as much as the code's (undecided); with three runs a side it is judged, and fails."""
    base = [results(tmp_path / f"b{i}", job_rows(30 + i)) for i in range(3)]
    new = [results(tmp_path / f"n{i}", job_rows(40 + i)) for i in range(3)]
    for folder in new:
        scale_config(folder, 1.3)
    code, out, _ = run("compare", base[0], new[0], capsys=capsys)
    assert code == 0 and "shift (every configuration alike): NEW/BASE 1.2" in out
    assert "run(s): undecided (judged with 3 runs a side" in out
    code, out, _ = run("compare", "--base", *base, "--new", *new, capsys=capsys)
    assert code == 1 and "SLOWER: the whole run" in out


def test_exact_counts_compare_their_values(two_runs, capsys):
    base, new = two_runs
    scale_config(new, 3.0, column="saved_bytes", model="elman", strategy="bptt_fused", tau=512)
    code, out, _ = run("compare", base, new, "--measure", "saved_bytes", capsys=capsys)
    assert code == 1 and "LARGER: elman + bptt_fused" in out and "an exact count" in out
    # The step times were not touched: compared on step_ms the runs still agree.
    assert run("compare", base, new, capsys=capsys)[0] == 0


def test_an_extra_tau_is_listed_as_not_compared(tmp_path, capsys):
    base = results(tmp_path / "base", job_rows(1))
    new = results(tmp_path / "new", job_rows(2, taus=TAUS + (2048,)))
    code, out, _ = run("compare", base, new, capsys=capsys)
    assert code == 0
    c = compare.compare(base, new)
    assert len(c.matched) == len(rs.LAWS) * len(TAUS)
    assert len(c.only) == len(rs.LAWS) and c.only["configuration"].str.contains("τ=2048").all()
    assert set(c.only["base status"]) == {"absent"} and set(c.only["new status"]) == {"ok"}
    assert f"Not compared: {len(rs.LAWS)} configuration(s)" in out


def test_different_hidden_sizes_never_match(tmp_path, capsys):
    base = results(tmp_path / "base", job_rows(1))
    new = results(
        tmp_path / "new",
        [dict(r, hidden=64) if r["strategy"] != "bptt" else r for r in job_rows(2)],
    )
    c = compare.compare(base, new)
    assert set(c.matched["strategy_label"]) == {"bptt"} and (c.matched["hidden"] == 32).all()
    others = len(rs.LAWS) - 1  # every series but bptt, at H=32 and at H=64
    assert len(c.only) == others * 2 * len(TAUS)
    assert c.only["configuration"].str.endswith("H=64").sum() == others * len(TAUS)
    every = results(tmp_path / "every", job_rows(2, hidden=64))
    code, _, err = run("compare", base, every, capsys=capsys)
    assert code == 2 and "no configuration in common" in err and err.count("\n") == 1


def test_a_configuration_that_fails_in_new_fails_the_gate(two_runs, capsys):
    base, new = two_runs
    for path in (new / "rows").glob("*.json"):
        row = json.loads(path.read_text())
        if row["strategy"] == "bptt_fused" and row["tau"] == 512:
            row.update(status="oom", error="out of memory", step_ms_median=None, step_ms_samples=[])
            path.write_text(json.dumps(row))
    code, out, _ = run("compare", base, new, capsys=capsys)
    assert code == 1 and "NOT OK IN NEW: elman + bptt_fused" in out and "oom" in out


@pytest.mark.slow
def test_confirm_measures_the_flagged_configuration_again(
    ray_session, tmp_path, capsys, monkeypatch
):
    """The τ = 32 cell measured for real, three replicates, as ``rnnbench run`` measures
    them (fresh processes on the session's Ray); the τ = 16 and τ = 64 configurations,
    which only give the run's shift, are those rows again under their own cells' ids
    (time scaled by τ).  NEW is a copy whose τ = 32 step times were multiplied by a
    hundred (beyond any machine's noise: a 1 ms step's replicates on a CI machine loaded
    3 processes deep spread ~3x, which left a tenfold change undecided once; flagged
    slower against the run's shift); --confirm measures three more replicates of it for
    real, the same way, into NEW and decides on all six."""
    from rnnbench.job import jobfile
    from rnnbench.job.cell import Cell
    from rnnbench.sweep import command
    from rnnbench.sweep.driver import run_sweep

    monkeypatch.setattr(command, "connect", lambda *a, **k: False)  # the session's Ray

    def cells(tau: int) -> list[Cell]:
        cell = Cell(model="elman", strategy="bptt", tau=tau, hidden=16, repeats=3, replicates=3)
        return jobfile.replicated([cell])

    base, new = tmp_path / "base", tmp_path / "new"
    run_sweep(cells(32), base, progress=False, job="base")
    measured = [json.loads(p.read_text()) for p in sorted((base / "rows").glob("*.json"))]
    by_replicate = {row["replicate"]: row for row in measured}
    for tau in (16, 64):
        for cell in cells(tau):
            row = by_replicate[cell.replicate]
            store.write_row(
                base,
                {
                    **row,
                    **cell.config(),
                    "cell_id": cell.cell_id,
                    "step_ms_median": row["step_ms_median"] * tau / 32,
                },
            )
    for path in sorted((base / "rows").glob("*.json")):
        row = json.loads(path.read_text())
        if row["tau"] == 32:
            row["step_ms_median"] *= 100
        store.write_row(new, row)
    assert run("compare", base, new, capsys=capsys)[0] == 1
    before = compare.compare([base], [new]).matched.set_index("tau").loc[32, "ratio"]
    code, out, err = run("compare", base, new, "--confirm", capsys=capsys)
    assert "confirming 1 flagged configuration(s): 3 new replicate(s) measured" in err
    assert len(store.stored_ids(new)) == 12
    after = compare.compare([base], [new]).matched.set_index("tau")
    # decided on all six: three stored at 100x and three measured now, at this machine's
    # speed (its vCPUs differ by up to 1.7x, so the new three are not exactly 1x) - the
    # ratio falls from 100x to the geometric mean, below half of it unless the new three
    # ran 25x slower than BASE
    assert (after.loc[32, "base_n"], after.loc[32, "new_n"]) == (3, 6)
    assert after.loc[32, "ratio"] < before / 2, out
    assert code == (1 if "SLOWER" in out else 0)


def _empty(d: Path):
    d.mkdir()


def _failed_only(d: Path):
    results(d, rs.failed_rows())


@pytest.mark.parametrize(
    "make, extra, message",
    [
        (_empty, (), "not a results folder"),
        (lambda d: None, (), "no such results folder"),
        (_failed_only, (), "no ok rows to compare"),
        (lambda d: results(d, job_rows(3)), ("--measure", "loss_tf"), "--measure: invalid choice"),
        (
            lambda d: results(d, job_rows(3)),
            ("--measure", "loss_free"),
            "loss_free measured in both",
        ),
        (lambda d: results(d, job_rows(3)), ("--measure", "speedup"), "speedup_median"),
        (
            lambda d: results(d, job_rows(3)),
            ("--threshold", "0.9"),
            "--threshold: must be a number >= 1",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, make, extra, message):
    good = results(tmp_path / "good", job_rows(1))
    make(tmp_path / "bad")
    code, out, err = run("compare", good, tmp_path / "bad", *extra, capsys=capsys)
    assert code == 2, out + err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_a_real_cell_measured_twice_saves_the_same_bytes(tmp_path, capsys, one_thread):
    """Two real runs of one small cell: saved bytes are a property of the computation,
    so the two runs compare at exactly 1.0 (step times are noisy and not asserted)."""
    from rnnbench.harness.single import run_cell
    from rnnbench.job.cell import Cell

    cells = [Cell(model="elman", strategy="bptt", tau=16, hidden=8, repeats=2)]
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        for cell in cells:
            row = run_cell(cell)
            assert row["status"] == "ok", row["error"]
            store.write_row(folder, row)
    code, out, _ = run("compare", a, b, "--measure", "saved_bytes", capsys=capsys)
    assert code == 0
    c = compare.compare(a, b, measure="saved_bytes")
    assert list(c.matched["ratio"]) == [1.0] and list(c.matched["mark"]) == ["same"]
    assert run("compare", a, b, "--json", capsys=capsys)[0] in (0, 1)


def test_comparing_runs_does_not_import_torch():
    assert not imports_torch("import rnnbench.report.compare, rnnbench.report.runs")


# --------------------------------------------------------------------------- report


@pytest.fixture(scope="session")  # once per test process: xdist may interleave modules
def multi(tmp_path_factory):
    """The laptop and the node in one report (plots drawn), once for the module."""
    tmp = tmp_path_factory.mktemp("multi")
    laptop = results(tmp / "laptop", job_rows(1))
    node = results(
        tmp / "node", job_rows(2, threads=4, git_commit="def5678", cpu_model="Cluster CPU @ 2 GHz")
    )
    return build_report([laptop, node], tmp / "both")


def test_a_report_of_two_runs_lines_them_up(multi):
    assert multi.runs == ("laptop", "node")
    s = multi.summary
    assert list(s.columns[:1]) == ["run"] and set(s["run"]) == {"laptop", "node"}
    # A matched configuration sits on adjacent lines, first run first.
    assert list(s["run"][:2]) == ["laptop", "node"]
    assert s.iloc[0]["tau"] == s.iloc[1]["tau"] and s.iloc[0]["threads"] == 1
    assert s.iloc[1]["threads"] == 4
    assert set(multi.compared["mark"]) <= {"same", "unclear"}
    assert len(multi.compared) == len(rs.LAWS) * len(TAUS)
    for name, _, _, _, shown in multi.tables():
        assert list(shown.columns[:1]) == ["run"], name
    # Each run keeps its environment.
    assert "laptop: Synthetic CPU" in multi.env["CPU"] and "node: Cluster CPU" in multi.env["CPU"]
    assert "def5678" in multi.env["git commit"] and multi.env["torch"] == rs.ENV["torch"]
    # The claims engine judged each run: one verdict column per run.
    for name in multi.runs:
        assert multi.claims[f"verdict: {name}"].notna().all()
    text = (multi.out_dir / "claims.md").read_text()
    assert "**laptop: " in text and "**node: " in text  # a tally line per run
    csv = pd.read_csv(multi.out_dir / "tables" / "summary.csv")
    assert csv["run"].tolist() == s["run"].astype(str).tolist()


def test_each_run_has_its_own_line_style(multi):
    ax = multi.figures["time_vs_tau"].axes[0]
    fitted = {ln.get_linestyle() for ln in ax.get_lines() if len(ln.get_xdata()) == 50}
    assert fitted == {"-", "--"}
    labels = [t.get_text() for t in multi.figures["time_vs_tau"].legends[0].get_texts()]
    assert any("[laptop]" in x for x in labels) and any("[node]" in x for x in labels)
    # One panel holds both runs: threads 1 and 4 tell the runs apart, not the settings.
    assert len(multi.figures["time_vs_tau"].axes) == 1


def test_one_folder_in_a_list_is_the_single_run_report(two_runs, tmp_path):
    one = build_report([two_runs[0]], figures=False)
    assert one.runs == () and "run" not in one.summary.columns and "verdict" in one.claims


def test_report_cli_takes_labels_and_checks_their_count(tmp_path, capsys):
    one_law = {("elman", "bptt"): rs.LAWS[("elman", "bptt")]}
    two_runs = [
        results(tmp_path / name, rs.timing_rows(laws=one_law, taus=(16, 64), seeds=(0,)))
        for name in ("a", "b")
    ]
    code, out, err = run(
        "report",
        *two_runs,
        "--out",
        tmp_path / "r",
        "--format",
        "md",
        "--label",
        "before",
        "after",
        capsys=capsys,
    )
    assert code == 0, err
    assert "claims before:" in out and "claims after:" in out
    assert "**before: " in (tmp_path / "r" / "claims.md").read_text()
    code, _, err = run("report", *two_runs, "--label", "only-one", capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and "--label" in err


@pytest.mark.chromium
@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_a_report_of_two_runs_renders_with_every_image(multi):
    drawn = sum(1 for f in multi.figures.values() if f is not None)
    assert drawn >= 2
    assert images_loaded(multi.out_dir / "index.html") == f"{drawn}/{drawn}"
    from rnnbench.report.markdown import FIGURES

    # every drawn figure is one the page shows (plots.py's, the scaling model's, the regime map)
    assert {p for p, f in multi.figures.items() if f is not None} <= set(FIGURES)
