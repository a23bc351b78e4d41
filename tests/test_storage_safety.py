"""A results folder is handled without following links, reading only what is a row, and a
run stops (exit 3) when its folder goes away or its disk refuses (issue 25 points 2, 3, 4
and 8; docs/storage.md).  Each case is the probe's, with its opposite beside it.

Rows are made by the tests' runners on the session's Ray (``rnnbench run --address``
for the runs in a real process); the report and compare run as real commands.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import BIN, ROOT, subprocess_env
from ray import cloudpickle

from rnnbench import cli, raysession
from rnnbench.job.cell import Cell
from rnnbench.results import location, store, validate
from rnnbench.sweep import command

cloudpickle.register_pickle_by_value(sys.modules[__name__])

JOB = """\
name: safe
fixed: {model: elman, strategy: bptt, hidden: 8, repeats: 2, task: running_parity}
grid: {tau: [8]}
seeds: [0, 1, 2]
"""
RUNNER = f"{Path(__file__).stem}:ok_runner"
SLOW_RUNNER = f"{Path(__file__).stem}:slow_runner"


def ok_runner(cell: Cell) -> dict:
    return {
        **cell.config(),
        "cell_id": cell.cell_id,
        "status": "ok",
        "error": None,
        "step_ms_median": 1.0 + cell.seed,
        "threads": 1,
    }


def slow_runner(cell: Cell) -> dict:
    time.sleep(1.5)
    return ok_runner(cell)


def cells(n: int = 3) -> list[Cell]:
    return [
        Cell(
            model="elman",
            strategy="bptt",
            tau=8,
            hidden=8,
            repeats=2,
            task="running_parity",
            seed=s,
        )
        for s in range(n)
    ]


def stored(out: Path, n: int = 3) -> list[str]:
    """A results folder with ``n`` rows written as a run writes them (no Ray)."""
    (out / store.ROWS).mkdir(parents=True, exist_ok=True)
    ids = []
    for c in cells(n):
        store.write_row(out, {**ok_runner(c), "job": "safe"})
        ids.append(c.cell_id)
    return ids


def rnnbench(*args, timeout=180, limit_bytes: int | None = None, **env):
    """A real ``rnnbench`` process (optionally with RLIMIT_FSIZE: a disk that refuses)."""

    def refuse_big_files():
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [str(BIN / "rnnbench"), *map(str, args)],
        env=subprocess_env(MPLBACKEND="Agg", **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        preexec_fn=refuse_big_files,
        start_new_session=True,
    )


def run_here(monkeypatch, capsys, *args) -> tuple[int, str]:
    """``rnnbench run`` in this process, on the session's Ray, with :func:`ok_runner`:
    its exit code and what it printed (stdout, then stderr)."""
    monkeypatch.setattr(command, "connect", lambda *a, **k: False)
    # raysession.stop shuts down a Ray this process did not start too: keep the session's
    monkeypatch.setattr(raysession, "stop", lambda *a, **k: [])
    monkeypatch.setattr(command, "DEFAULT_RUNNER", ok_runner)
    code = cli.main(["run", *map(str, args), "--no-progress"])
    said = capsys.readouterr()
    return code, said.out + said.err


def one_line(err: str) -> str:
    lines = [x for x in err.strip().splitlines() if "warning" not in x]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def job(tmp_path) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(JOB)
    return path


# --------------------------------------------------------------------------- links


def test_a_lock_that_is_a_link_is_refused_and_its_target_kept(
    ray_session, tmp_path, job, monkeypatch, capsys
):
    out, victim = tmp_path / "out", tmp_path / "victim.txt"
    out.mkdir()
    victim.write_text("precious\n")
    (out / store.LOCK).symlink_to(victim)
    code, err = run_here(monkeypatch, capsys, job, "--out", out)
    assert code == 2 and ".rnnbench.lock is a link" in one_line(err), err
    assert victim.read_text() == "precious\n"
    # the opposite: the same folder with a real lock file runs, and the lock holds a pid
    (out / store.LOCK).unlink()
    code, err = run_here(monkeypatch, capsys, job, "--out", out)
    assert code == 0, err
    assert (out / store.LOCK).read_text().strip().isdigit()


def test_rows_as_a_link_is_refused_by_run_report_and_compare(
    ray_session, tmp_path, job, monkeypatch, capsys
):
    elsewhere, out = tmp_path / "elsewhere", tmp_path / "out"
    elsewhere.mkdir()
    (elsewhere / "unrelated.json").write_text("{}")
    out.mkdir()
    (out / store.ROWS).symlink_to(elsewhere, target_is_directory=True)
    code, err = run_here(monkeypatch, capsys, job, "--out", out)
    assert code == 2 and "rows is a link" in one_line(err), err
    assert sorted(p.name for p in elsewhere.iterdir()) == ["unrelated.json"]  # nothing moved
    good = tmp_path / "good"
    stored(good)
    for argv in (["report", out], ["compare", good, out]):
        code = cli.main([*map(str, argv)])
        err = capsys.readouterr().err
        assert code == 2 and "rows is a link" in one_line(err), (argv, err)
    # the opposite: a real rows/ folder is read
    assert len(store.scan(good).rows) == 3


def test_report_never_writes_through_links(tmp_path):
    results = tmp_path / "results"
    stored(results)
    outside = tmp_path / "outside"
    outside.mkdir()
    (results / "report").mkdir()
    (results / "report" / "tables").symlink_to(outside, target_is_directory=True)
    refused = rnnbench("report", results)
    assert refused.returncode == 2, refused.stderr
    assert "is a link" in one_line(refused.stderr)
    assert list(outside.iterdir()) == []  # nothing landed outside
    # the opposite: without the link the tables land in report/tables; index.html as a
    # link is replaced by the page, its target untouched
    (results / "report" / "tables").unlink()
    victim = tmp_path / "victim.html"
    victim.write_text("mine")
    (results / "report" / "index.html").symlink_to(victim)
    done = rnnbench("report", results)
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "mine"
    index = results / "report" / "index.html"
    assert not index.is_symlink() and "rnnbench report" in index.read_text()
    assert (results / "report" / "tables" / "summary.csv").is_file()
    assert list(outside.iterdir()) == []


# --------------------------------------------------------------------------- what is a row

BAD_ROWS = {
    "tau Infinity": ("tau", float("inf")),
    "hidden NaN": ("hidden", float("nan")),
    "tau abc": ("tau", "abc"),
    "model object": ("model", {"a": 1}),
    "strategy_options list": ("strategy_options", [1, 2, 3]),
    "strategy_options list as text": ("strategy_options", "[1, 2, 3]"),
    "tau negative": ("tau", -1),
    "seed past int64": ("seed", 2**63),
}


def _nested(levels: int) -> object:
    value: object = []
    for _ in range(levels - 1):
        value = [value]
    return value


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_the_validator_refuses_each_wrong_type(case):
    good = ok_runner(cells(1)[0])
    assert validate.problem(good) is None  # the opposite: a row a run writes passes
    key, value = BAD_ROWS[case]
    why = validate.problem({**good, key: value})
    assert why is not None and repr(key) in why, why


def test_nesting_is_bounded_without_recursion():
    good = ok_runner(cells(1)[0])
    deep = {**good, "extra": _nested(600)}
    assert "nested deeper" in validate.problem(deep)
    assert validate.problem({**good, "extra": _nested(100_000)}) is not None  # no RecursionError
    assert validate.problem({**good, "extra": _nested(validate.MAX_DEPTH - 1)}) is None


def _bad_files(out: Path) -> dict[str, str]:
    """The probe's row files, each named like a row: name -> what it is."""
    rows = out / store.ROWS
    made = {}
    for i, (case, (key, value)) in enumerate(sorted(BAD_ROWS.items())):
        c = Cell(
            model="elman",
            strategy="bptt",
            tau=8,
            hidden=8,
            repeats=2,
            task="running_parity",
            seed=100 + i,
        )
        text = json.dumps({**ok_runner(c), key: value})  # Infinity/NaN as Python writes them
        (rows / f"{c.cell_id}.json").write_text(text)
        made[c.cell_id] = case
    deep = Cell(
        model="elman", strategy="bptt", tau=8, hidden=8, repeats=2, task="running_parity", seed=200
    )
    row = ok_runner(deep)
    row["extra"] = "@"
    text = json.dumps(row).replace('"@"', "[" * 600 + "]" * 600)
    (rows / f"{deep.cell_id}.json").write_text(text)
    made[deep.cell_id] = "nested 600 deep"
    os.mkfifo(rows / "fifo0000000000000.json")
    made["fifo0000000000000"] = "a FIFO"
    (rows / "zero000000000000.json").symlink_to("/dev/zero")
    made["zero000000000000"] = "a link to /dev/zero"
    with open(rows / "sparse0000000000.json", "wb") as f:
        f.truncate(2**30)  # 1 GiB, sparse
    made["sparse0000000000"] = "a sparse 1 GiB file"
    return made


def test_bad_row_files_are_skipped_by_report_and_compare_and_rerun_by_run(
    ray_session, tmp_path, job, monkeypatch, capsys
):
    out = tmp_path / "out"
    good = stored(out)
    bad = _bad_files(out)
    for argv in (["report", out], ["compare", out, out]):
        done = rnnbench(*argv, timeout=240)  # a FIFO or /dev/zero would hang it
        assert done.returncode in (0, 1) and "Traceback" not in done.stderr, done.stderr
        warning = [x for x in done.stderr.splitlines() if "broken row file(s)" in x]
        sides = argv.count(out)  # one warning line per folder read
        assert len(warning) == sides and f"{len(bad)} broken" in warning[0], done.stderr
        assert all(x.startswith(f"rnnbench {argv[0]}: warning: ") for x in warning), warning
    listing = store.scan(out)
    assert sorted(r["cell_id"] for r in listing.rows) == sorted(good)  # the opposite
    assert len(listing.broken) == len(bad)
    # run moves them aside (links moved, not followed) and keeps the good rows
    code, err = run_here(monkeypatch, capsys, job, "--out", out)
    assert code == 0, err
    assert sorted(p.name for p in (out / store.ROWS / store.BROKEN).iterdir()) == sorted(
        f"{name}.json" for name in bad
    )
    assert store.stored_ids(out) == set(good)
    assert (out / store.PARQUET).is_file()


def test_a_broken_rows_cell_runs_again(ray_session, tmp_path, job, monkeypatch, capsys):
    out = tmp_path / "out"
    ids = stored(out)
    path = out / store.ROWS / f"{ids[0]}.json"
    row = json.loads(path.read_text())
    path.write_text(json.dumps({**row, "tau": "abc", "step_ms_median": 99.0}))
    code, err = run_here(monkeypatch, capsys, job, "--out", out)
    assert code == 0 and "1 cell(s) run now, 2 already stored" in err, err
    assert json.loads(path.read_text())["tau"] == 8  # written anew by the runner
    assert (out / store.ROWS / store.BROKEN / path.name).is_file()


# --------------------------------------------------------------------------- folder identity


def _wait_for_rows(rows: Path, proc: subprocess.Popen, n: int = 1, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        if rows.is_dir() and len(list(rows.glob("*.json"))) >= n:
            return
        time.sleep(0.1)
    out, err = proc.communicate(timeout=30) if proc.poll() is not None else ("", "")
    raise AssertionError(f"no row appeared: {proc.returncode}\n{err}")


def _popen_run(job: Path, out: Path, address: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            str(BIN / "rnnbench"),
            "run",
            str(job),
            "--out",
            str(out),
            "--no-progress",
            "--runner",
            SLOW_RUNNER,
            "--address",
            address,
        ],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )


def _address(ray_session) -> str:
    return ray_session.get_runtime_context().gcs_address


@pytest.mark.parametrize("then", ["removed", "replaced"])
def test_a_folder_removed_or_replaced_mid_run_ends_it_with_exit_3(ray_session, tmp_path, then):
    job = tmp_path / "job.yaml"
    job.write_text(JOB.replace("seeds: [0, 1, 2]", "seeds: [0, 1, 2, 3, 4, 5, 6, 7]"))
    out = tmp_path / "out"
    proc = _popen_run(job, out, _address(ray_session))
    _wait_for_rows(out / store.ROWS, proc)
    if then == "removed":
        shutil.rmtree(out)
    else:  # another folder moved in its place (the old one moved away, kept)
        new = tmp_path / "new"
        new.mkdir()
        os.rename(out, tmp_path / "old")
        os.rename(new, out)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    line = [x for x in err.splitlines() if "error" in x]
    assert len(line) == 1 and f"was {then}" in line[0], err
    if then == "removed":
        assert not out.exists()  # never made again
    else:
        assert list(out.iterdir()) == []  # the new folder is not written to
        assert not (tmp_path / "old" / store.PARQUET).exists()


def test_the_opposite_a_folder_left_alone_finishes(ray_session, tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(JOB)
    out = tmp_path / "out"
    proc = _popen_run(job, out, _address(ray_session))
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert len(store.stored_ids(out)) == 3 and (out / store.PARQUET).is_file()


# --------------------------------------------------------------------------- a refusing disk


def test_a_rerun_on_a_refusing_disk_exits_3_in_one_line(tmp_path, job):
    out = tmp_path / "out"
    stored(out)  # every cell stored, no results.parquet yet: the rerun consolidates
    refused = rnnbench("run", job, "--out", out, "--no-progress", limit_bytes=2000)
    assert refused.returncode == 3, refused.stderr
    line = one_line(refused.stderr)
    assert "cannot write results" in line and "Traceback" not in refused.stderr
    assert not (out / store.PARQUET).exists()
    assert len(store.stored_ids(out)) == 3  # rows kept
    # the opposite: the same rerun on a disk that takes it
    done = rnnbench("run", job, "--out", out, "--no-progress")
    assert done.returncode == 0, done.stderr
    assert (out / store.PARQUET).is_file()


def test_a_report_on_a_refusing_disk_exits_3_in_one_line(tmp_path):
    results = tmp_path / "results"
    stored(results)
    refused = rnnbench("report", results, "--out", tmp_path / "rep", limit_bytes=2000)
    assert refused.returncode == 3, refused.stderr
    assert "cannot write the report" in one_line(refused.stderr)
    assert "Traceback" not in refused.stderr


# --------------------------------------------------------------------------- leftovers


def test_leftover_temp_files_are_cleaned_at_start_and_nothing_else(
    tmp_path, job, monkeypatch, capsys
):
    out = tmp_path / "out"
    ids = stored(out)
    ours = [
        out / store.ROWS / f".{ids[0]}.json.0123456789ab.tmp",
        out / f".{store.PARQUET}.abcdef012345.tmp",
    ]
    theirs = [out / store.ROWS / "notes.tmp", out / "keep.tmp"]
    for p in ours + theirs:
        p.write_text("x")
    code, err = run_here(monkeypatch, capsys, job, "--out", out)  # all stored: no Ray
    assert code == 0, err
    assert not any(p.exists() for p in ours)
    assert all(p.exists() for p in theirs)  # the opposite: files not ours stay


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("bad", ["s3:/x", "s3:x", "foo://x", "file://host/x"])
def test_a_bad_uri_is_one_line_exit_2_and_makes_nothing(tmp_path, job, monkeypatch, capsys, bad):
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    for argv in (["run", job, "--out", bad], ["report", bad], ["compare", bad, bad]):
        code = cli.main([*map(str, argv)])
        err = capsys.readouterr().err
        assert code == 2 and bad in one_line(err), (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_the_opposite_a_local_name_with_a_colon_and_file_uris(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert location.of("./s3:x").local
    store.check_writable("./s3:x")
    assert (tmp_path / "s3:x" / store.ROWS).is_dir()
    uri = location.of(f"file://{tmp_path}/a")
    assert uri.local and uri.path == f"{tmp_path}/a"
    assert location.of(f"file://localhost{tmp_path}/a").path == f"{tmp_path}/a"
    assert not location.of("memory://bucket/run").local  # fsspec's scheme


def test_only_regular_files_are_read_with_a_size_limit(tmp_path):
    where = location.of(tmp_path)
    (tmp_path / "small").write_bytes(b"x" * 10)
    assert where.read("small", 10) == b"x" * 10
    with pytest.raises(OSError):
        where.read("small", 9)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link").symlink_to(tmp_path / "small")
    for name in ("fifo", "link"):
        with pytest.raises(OSError):
            where.read(name, 10)


def test_a_write_replaces_a_link_and_never_makes_a_folder(tmp_path):
    where = location.of(tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("mine")
    (tmp_path / "page").symlink_to(victim)
    where.write("page", b"new")
    assert victim.read_text() == "mine" and (tmp_path / "page").read_bytes() == b"new"
    assert not (tmp_path / "page").is_symlink()
    with pytest.raises(FileNotFoundError):
        where.child("missing").write("row.json", b"{}")
    assert not (tmp_path / "missing").exists()
