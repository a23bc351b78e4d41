"""The results folder: which row files count as stored, the Parquet file's
freshness, the folder's lock and the check that it can be written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rnnbench.errors import UsageError
from rnnbench.results import store

ROOT = Path(__file__).resolve().parent.parent


def _row(cell_id: str, **extra) -> dict:
    return {
        "cell_id": cell_id,
        "model": "elman",
        "strategy": "bptt",
        "tau": 8,
        "status": "ok",
        "step_ms_median": 1.0,
        **extra,
    }


def _broken_folder(out: Path) -> list[str]:
    """Three good rows and one of each kind of broken file; return the good ids."""
    good = [f"{i:016x}" for i in range(3)]
    for cell_id in good:
        store.write_row(out, _row(cell_id))
    rows = out / store.ROWS
    whole = (rows / f"{good[0]}.json").read_text()
    (rows / "aaaaaaaaaaaaaaa1.json").write_text(whole.replace(good[0], "aaaaaaaaaaaaaaa1")[:40])
    (rows / "aaaaaaaaaaaaaaa2.json").write_text("[1, 2, 3]")
    (rows / "aaaaaaaaaaaaaaa3.json").write_text("null")
    (rows / "aaaaaaaaaaaaaaa4.json").write_text("[" * 100_000 + "]" * 100_000)
    (rows / "aaaaaaaaaaaaaaa5.json").write_text(whole)  # a copy under another name
    (rows / "aaaaaaaaaaaaaaa6.json").write_text(
        json.dumps({k: v for k, v in _row("aaaaaaaaaaaaaaa6").items() if k != "status"})
    )
    return good


def test_only_valid_row_files_count_as_stored_and_broken_ones_move_aside(tmp_path):
    good = _broken_folder(tmp_path)
    listing = store.scan(tmp_path)
    assert sorted(r["cell_id"] for r in listing.rows) == good
    why = {p.stem[-1]: reason for p, reason in listing.broken}
    assert why == {
        "1": "not whole JSON",
        "2": "not a JSON object (list)",
        "3": "not a JSON object (NoneType)",
        "4": "not whole JSON",
        "5": "its cell_id is not its file name",
        "6": "no 'status'",
    }
    assert store.stored_ids(tmp_path) == set(good)
    line = listing.broken_line("skipped")
    assert "\n" not in line and line.startswith("6 broken row file(s) skipped: ")
    assert "and 1 more" in line
    # nothing moved until asked
    assert len(list((tmp_path / store.ROWS).glob("*.json"))) == 9
    moved = store.scan(tmp_path, move_broken=True)
    assert len(moved.broken) == 6
    assert sorted(p.stem for p in (tmp_path / store.ROWS).glob("*.json")) == good
    assert len(list((tmp_path / store.ROWS / store.BROKEN).iterdir())) == 6
    assert store.scan(tmp_path).broken == []


def test_loading_skips_broken_rows_with_one_warning(tmp_path):
    good = _broken_folder(tmp_path)
    with pytest.warns(UserWarning, match="6 broken row file"):
        df = store.load(tmp_path)
    assert sorted(df["cell_id"]) == good


def test_report_skips_broken_rows_with_one_line(tmp_path, capsys):
    from rnnbench.report import tidy as report_load

    good = _broken_folder(tmp_path)
    df = report_load.load(tmp_path)
    assert sorted(df["cell_id"]) == good
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rnnbench report: warning: 6 broken row file(s)" in err


def test_parquet_is_stale_when_missing_or_older_than_the_rows(tmp_path):
    for i in range(2):
        store.write_row(tmp_path, _row(f"{i:016x}"))
    assert store.parquet_stale(tmp_path)  # missing
    store.consolidate(tmp_path)
    parquet = tmp_path / store.PARQUET
    rows = tmp_path / store.ROWS
    later = parquet.stat().st_mtime_ns + 10**9

    def age_all(ns):
        for p in [rows, *rows.iterdir()]:
            os.utime(p, ns=(ns, ns))

    age_all(parquet.stat().st_mtime_ns - 10**9)
    assert not store.parquet_stale(tmp_path)
    os.utime(rows / f"{0:016x}.json", ns=(later, later))  # a row rewritten
    assert store.parquet_stale(tmp_path)
    age_all(parquet.stat().st_mtime_ns - 10**9)
    (rows / f"{1:016x}.json").unlink()  # a row removed: the folder changes
    assert store.parquet_stale(tmp_path)


LOCKER = """\
import sys
from rnnbench.results import store
from rnnbench.errors import UsageError
try:
    with store.locked(sys.argv[1]):
        print("locked")
except UsageError as exc:
    print(exc)
"""


def _try_lock(out: Path) -> str:
    return subprocess.run(
        [sys.executable, "-c", LOCKER, str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    ).stdout.strip()


def test_a_second_process_cannot_lock_the_folder_and_is_told_the_holders_pid(tmp_path):
    with store.locked(tmp_path):
        with store.locked(tmp_path):  # the same process may take it again
            pass
        said = _try_lock(tmp_path)
        assert f"another rnnbench run (pid {os.getpid()})" in said, said
        assert str(tmp_path) in said and "\n" not in said
    assert _try_lock(tmp_path) == "locked"  # released


def test_out_that_cannot_hold_results_is_one_line(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        store.check_writable(a_file)
    with pytest.raises(UsageError, match="cannot write results there .Not a directory"):
        store.check_writable(a_file / "below")
    store.check_writable(tmp_path / "new" / "folder")
    assert (tmp_path / "new" / "folder" / store.ROWS).is_dir()
    assert list((tmp_path / "new" / "folder" / store.ROWS).iterdir()) == []  # no probe left


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_is_one_line(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(UsageError, match="Permission denied"):
            store.check_writable(ro)
    finally:
        ro.chmod(0o700)


def test_dry_run_names_broken_rows_on_one_line_and_moves_nothing(tmp_path, capsys):
    from rnnbench import cli

    job = tmp_path / "job.yaml"
    job.write_text("name: x\nfixed: {model: elman, strategy: bptt, hidden: 8}\ngrid: {tau: [8]}\n")
    out = tmp_path / "out"
    _broken_folder(out)
    assert cli.main(["run", str(job), "--out", str(out), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "6 broken row file(s) skipped" in err, err
    assert len(list((out / store.ROWS).glob("*.json"))) == 9
