"""A run survives what the world does to it: broken row files, a deleted Parquet
file, a second driver on the same folder, a folder that cannot be written, a
full disk, cells that outlive their time across retries, memory kills.

Runners are injected from here (``runner=`` or ``command.DEFAULT_RUNNER``); the
in-process tests share the session's Ray, the others run ``rnnbench run`` in a
subprocess with a Ray of its own.
"""

from __future__ import annotations

import errno
import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import listeners, process_tree, subprocess_env

from rnnbench import cli
from rnnbench.errors import StorageError
from rnnbench.job.cell import Cell
from rnnbench.results import location, store
from rnnbench.sweep import command, driver, registry

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

from ray import cloudpickle  # noqa: E402

cloudpickle.register_pickle_by_value(sys.modules[__name__])

JOB = """\
name: sturdy
fixed: {model: elman, strategy: bptt, hidden: 8, repeats: 2, task: running_parity}
grid: {tau: [8]}
seeds: [0, 1, 2]
"""


def tiny(n: int) -> list[Cell]:
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


def ok_runner(cell: Cell) -> dict:
    return {
        **cell.config(),
        "cell_id": cell.cell_id,
        "status": "ok",
        "error": None,
        "step_ms_median": 1.0,
    }


def logging_runner(log_dir: str, cell: Cell) -> dict:
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    (Path(log_dir) / f"{cell.cell_id}.{os.getpid()}.{time.monotonic_ns()}").write_text("")
    return ok_runner(cell)


def ran(log_dir: Path) -> list[str]:
    return [p.name.split(".")[0] for p in log_dir.iterdir()] if log_dir.is_dir() else []


def slow_second_attempt_runner(marks: str, cell: Cell) -> dict:
    """First attempt: 2.5 s, then its worker dies; the retry takes 3 s and succeeds."""
    marker = Path(marks) / cell.cell_id
    if not marker.exists():
        marker.write_text("1")
        time.sleep(2.5)
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(3)
    return ok_runner(cell)


# --------------------------------------------------------------------------- in-process


def test_broken_row_files_are_moved_aside_and_their_cells_run_again(ray_session, tmp_path, capsys):
    cells = tiny(3)
    out, log = tmp_path / "out", tmp_path / "log"
    runner = functools.partial(logging_runner, str(log))
    driver.run_sweep(cells, out, runner=runner, progress=False)
    rows = out / store.ROWS
    first = rows / f"{cells[0].cell_id}.json"
    text = first.read_text()
    first.write_text(text[: len(text) // 2])  # truncated
    (rows / f"{cells[1].cell_id}.json").write_text("[1, 2, 3]")  # not a row
    (rows / "0123456789abcdef.json").write_text(  # a copy, another name
        (rows / f"{cells[2].cell_id}.json").read_text()
    )
    capsys.readouterr()
    result = driver.run_sweep(cells, out, runner=runner, progress=False)
    err = capsys.readouterr().err
    assert result.skipped == 1 and result.counts == {"ok": 2}
    assert sorted(ran(log)) == sorted([c.cell_id for c in cells] + [c.cell_id for c in cells[:2]])
    warning = [line for line in err.splitlines() if "broken row file" in line]
    assert len(warning) == 1 and "3 broken row file(s) moved to" in warning[0], err
    assert len(list((rows / store.BROKEN).iterdir())) == 3
    import pandas as pd

    assert sorted(pd.read_parquet(out / store.PARQUET)["cell_id"]) == sorted(
        c.cell_id for c in cells
    )
    assert store.scan(out).broken == []


def test_deleted_parquet_is_rebuilt_when_nothing_is_left_to_run(ray_session, tmp_path):
    cells = tiny(2)
    driver.run_sweep(cells, tmp_path, runner=ok_runner, progress=False)
    (tmp_path / store.PARQUET).unlink()
    result = driver.run_sweep(cells, tmp_path, runner=ok_runner, progress=False)
    assert result.ran == 0 and result.skipped == 2
    import pandas as pd

    assert len(pd.read_parquet(tmp_path / store.PARQUET)) == 2


def test_rows_record_the_job_that_wrote_them(ray_session, tmp_path):
    driver.run_sweep(tiny(2), tmp_path, runner=ok_runner, progress=False, job="sturdy")
    driver.run_sweep(tiny(3), tmp_path, runner=ok_runner, progress=False, job="other")
    df = store.load(tmp_path)
    assert sorted(df["job"]) == ["other", "sturdy", "sturdy"]


def _full_disk_after(monkeypatch, n: int) -> None:
    """Row writes fail with ENOSPC after ``n`` of them (so do Parquet writes)."""
    real = location.Location.write
    written = []

    def write(self, name, data):
        if name.endswith(".json"):  # a row file
            if len(written) >= n:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)
            written.append(name)
        real(self, name, data)

    def no_parquet(out):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(location.Location, "write", write)
    monkeypatch.setattr(store, "consolidate", no_parquet)


def test_a_full_disk_stops_the_sweep_with_one_line_and_keeps_the_rows(
    ray_session, tmp_path, monkeypatch
):
    _full_disk_after(monkeypatch, 2)
    with pytest.raises(StorageError) as caught:
        driver.run_sweep(tiny(4), tmp_path, runner=ok_runner, progress=False, max_in_flight=1)
    message = str(caught.value)
    assert str(tmp_path) in message and "No space left on device" in message
    assert "\n" not in message and "rows written so far are kept" in message
    assert len(store.stored_ids(tmp_path)) == 2


def test_a_full_disk_exits_3_with_one_line(ray_session, tmp_path, monkeypatch, capsys):
    job = tmp_path / "job.yaml"
    job.write_text(JOB)
    _full_disk_after(monkeypatch, 1)
    monkeypatch.setattr(command, "connect", lambda *a, **k: False)  # the session's Ray
    monkeypatch.setattr(command, "DEFAULT_RUNNER", ok_runner)
    rc = cli.main(["run", str(job), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 3, err
    lines = [line for line in err.splitlines() if "error" in line]
    assert (
        len(lines) == 1
        and lines[0].startswith("rnnbench run: error: ")
        and str(tmp_path / "out") in lines[0]
    ), err
    assert "Traceback" not in err
    assert len(store.stored_ids(tmp_path / "out")) == 1


def test_time_out_counts_from_the_first_start_across_attempts(ray_session, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    result = driver.run_sweep(
        tiny(1),
        tmp_path / "out",
        runner=functools.partial(slow_second_attempt_runner, str(marks)),
        max_retries=2,
        cell_timeout=4.0,
        progress=False,
    )
    # each attempt alone is under 4 s; together they are not (on a loaded machine
    # the time-out may come between the attempts, before the second one starts)
    assert result.counts == {"timeout": 1}
    row = store.load(tmp_path / "out").iloc[0]
    assert row["status"] == "timeout" and row["attempt"] in (1, 2)


def test_registry_keeps_a_cells_first_start_across_attempts():
    reg = registry.Registry()
    reg.enter("a", "n1")
    first = reg.started()["a"]
    reg.leave("a")
    time.sleep(0.01)
    assert reg.enter("a", "n1") == 2
    assert reg.started() == {"a": first}
    reg.forget(["a"])
    reg.leave("a")
    reg.enter("a", "n1")
    assert reg.started()["a"] > first  # a new sweep starts the clock again


# --------------------------------------------------------------------------- command line


def _run(args, timeout=120, **env):
    return subprocess.run(
        [str(BIN / "rnnbench"), "run", *map(str, args)],
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        start_new_session=True,
    )


def test_second_run_on_a_locked_folder_exits_2_at_once_naming_the_holder(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(JOB)
    out = tmp_path / "out"
    with store.locked(out):
        second = _run([job, "--out", out, "--no-progress"])
    assert second.returncode == 2, second.stderr
    assert second.stderr.strip() == (
        f"rnnbench run: error: --out {out}: another rnnbench run (pid {os.getpid()}) is "
        "writing to this results folder; wait for it or give another --out"
    )
    # nothing else was said: no Ray was started (it logs "Started a local Ray instance")
    assert not (out / store.ROWS).exists() or not any((out / store.ROWS).iterdir())


def test_out_that_is_a_file_exits_2_before_ray_starts(tmp_path, capsys, monkeypatch):
    job = tmp_path / "job.yaml"
    job.write_text(JOB)
    a_file = tmp_path / "file"
    a_file.write_text("x")

    def no_ray(*a, **k):
        raise AssertionError("Ray started")

    monkeypatch.setattr(command, "connect", no_ray)
    for out in (a_file, a_file / "below"):
        rc = cli.main(["run", str(job), "--out", str(out)])
        err = capsys.readouterr().err
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert err.startswith(f"rnnbench run: error: --out {out}: ")


def idle_runner(cell: Cell) -> dict:
    """A cell that waits long enough for Ray's memory monitor to kill its worker."""
    time.sleep(120)
    return ok_runner(cell)


@pytest.mark.slow
def test_memory_kills_are_retried_a_bounded_number_of_times_then_give_an_oom_row(tmp_path):
    """Ray's memory monitor, with its threshold lowered to 1 % of this machine's
    memory, kills the cell's worker at every attempt (nothing is allocated)."""
    job = tmp_path / "job.yaml"
    job.write_text(JOB.replace("seeds: [0, 1, 2]", "seeds: [0]"))
    out = tmp_path / "out"
    start = time.perf_counter()
    proc = _run(
        [
            job,
            "--out",
            out,
            "--num-cpus",
            "1",
            "--max-retries",
            "1",
            "--no-progress",
            "--runner",
            "test_reliability:idle_runner",
        ],
        timeout=400,
        RAY_memory_usage_threshold="0.01",
        RAY_memory_monitor_refresh_ms="100",
    )
    took = time.perf_counter() - start
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    row = store.load(out).iloc[0]
    assert row["status"] == "oom", row["error"]
    assert "memory" in row["error"].lower()
    # Ray's default, 15 retries with a back-off growing to 60 s, takes about 10 minutes
    assert took < 200, took


# --------------------------------------------------------------------------- listening sockets


def listening(root: int) -> set[tuple[str, int, str]]:
    """(address, port, process name) of every TCP socket that a process of the tree
    below ``root`` is listening on."""
    return listeners(process_tree(root))


def test_listing_finds_a_socket_on_every_interface():
    import socket

    with socket.socket() as s:
        s.bind(("", 0))
        s.listen()
        port = s.getsockname()[1]
        assert ("0.0.0.0", port) in {(ip, p) for ip, p, _ in listening(os.getpid())}


SOCKET_JOB = """\
name: loopback
fixed: {hidden: 8, repeats: 2, task: running_parity, tau: 16}
grid:
  run:
    - {model: elman, strategy: bptt}
    - {model: jordan, strategy: teacher_forcing, workers: 2, threads: 1}
"""


@pytest.mark.slow
def test_an_embedded_run_listens_on_loopback_only(tmp_path):
    """Every TCP socket of the run's processes (driver, GCS, raylet, agents, workers,
    the time-parallel cell's TCPStore and gloo) while real cells run."""
    job = tmp_path / "job.yaml"
    job.write_text(SOCKET_JOB)
    proc = subprocess.Popen(
        [
            str(BIN / "rnnbench"),
            "run",
            str(job),
            "--out",
            str(tmp_path / "out"),
            "--num-cpus",
            "2",
            "--no-progress",
        ],
        env=subprocess_env(),
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: set = set()
    try:
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            seen |= listening(proc.pid)
            time.sleep(0.2)
        out = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == 0, out[-3000:]
    names = {name for _, _, name in seen}
    assert {"gcs_server", "raylet"} <= names, seen  # the listing saw Ray's servers
    open_ = sorted(s for s in seen if s[0] not in ("127.0.0.1", "::1"))
    assert open_ == [], open_
