"""Sweeps on Ray: rows as they arrive, resume, retries, failure rows, time-outs,
threads, exclusive mode, a 2-node cluster and ``ray job submit``.

Cells are tiny and the per-cell function is injected (``runner=``), so the
tests exercise the driver, not the measurements.  The in-process tests share
the session's Ray (``ray_session``); tests that need a Ray of their own run it
in a subprocess in a new session and clean up only what they started.
"""

from __future__ import annotations

import functools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from helpers import subprocess_env, wait_cpus_free

from rnnbench.harness.row import failure_row
from rnnbench.job import jobfile
from rnnbench.job.cell import Cell
from rnnbench.results import store
from rnnbench.sweep import driver, registry

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent

# Ray's workers cannot import tests/: ship this module's runners by value.
from ray import cloudpickle  # noqa: E402

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def tiny(n: int, **kw) -> list[Cell]:
    base = dict(model="elman", strategy="bptt", tau=8, hidden=8, repeats=2, task="running_parity")
    base.update(kw)
    return [Cell(**{**base, "seed": s}) for s in range(n)]


# --------------------------------------------------------------------------- runners


def _row(cell: Cell, **extra) -> dict:
    return {
        **cell.config(),
        "cell_id": cell.cell_id,
        "status": "ok",
        "error": None,
        "step_ms_median": 1.0,
        **extra,
    }


def _log(log_dir, cell: Cell) -> None:
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    (Path(log_dir) / f"{cell.cell_id}.{uuid.uuid4().hex}").write_text(str(os.getpid()))


def threads_runner(cell: Cell) -> dict:
    import torch

    return _row(cell, threads_seen=torch.get_num_threads())


def logging_runner(log_dir: str, cell: Cell) -> dict:
    _log(log_dir, cell)
    return _row(cell)


def failing_runner(log_dir: str, cell: Cell) -> dict:
    _log(log_dir, cell)
    raise ValueError(f"no good at tau={cell.tau}")


def crash_once_runner(log_dir: str, cell: Cell) -> dict:
    """SIGKILL our own worker on the first attempt (a marker file says which attempt)."""
    _log(log_dir, cell)
    marker = Path(log_dir) / f"crashed-{cell.cell_id}"
    if not marker.exists():
        marker.write_text("1")
        os.kill(os.getpid(), signal.SIGKILL)
    return _row(cell)


def sleepy_runner(seconds: float, cell: Cell) -> dict:
    time.sleep(seconds)
    return _row(cell)


def cli_runner(cell: Cell) -> dict:
    """For ``rnnbench run --runner test_sweep:cli_runner`` in a subprocess."""
    _log(os.environ["RB_TEST_LOG"], cell)
    time.sleep(float(os.environ.get("RB_TEST_SLEEP", "0")))
    return _row(cell)


def executions(log_dir) -> list[str]:
    d = Path(log_dir)
    return [p.name.split(".")[0] for p in d.glob("*.*")] if d.is_dir() else []


# --------------------------------------------------------------------------- in-process


def test_rows_arrive_one_file_per_cell_and_load_reads_them(ray_session, tmp_path):
    cells = tiny(3)
    result = driver.run_sweep(cells, tmp_path, runner=threads_runner, progress=False)
    assert result.counts == {"ok": 3} and result.skipped == 0
    assert sorted(p.stem for p in (tmp_path / "rows").glob("*.json")) == sorted(
        c.cell_id for c in cells
    )
    df = store.load(tmp_path)
    assert sorted(df["cell_id"]) == sorted(c.cell_id for c in cells)
    assert set(df["attempt"]) == {1} and (df["neighbours"] >= 0).all()
    parquet = tmp_path / "results.parquet"
    assert parquet.is_file()
    import pandas as pd

    assert sorted(pd.read_parquet(parquet)["cell_id"]) == sorted(df["cell_id"])


@pytest.mark.parametrize("threads", [1, 2])
def test_torch_threads_inside_a_cell_equal_the_cells_threads(ray_session, tmp_path, threads):
    cells = tiny(2, threads=threads)
    driver.run_sweep(cells, tmp_path, runner=threads_runner, progress=False)
    df = store.load(tmp_path)
    assert list(df["threads_seen"]) == [threads, threads]


def test_rerun_computes_only_missing_cells(ray_session, tmp_path):
    log = tmp_path / "log"
    cells = tiny(5)
    runner = functools.partial(logging_runner, str(log))
    driver.run_sweep(cells[:2], tmp_path / "out", runner=runner, progress=False)
    result = driver.run_sweep(cells, tmp_path / "out", runner=runner, progress=False)
    assert result.skipped == 2 and result.counts == {"ok": 3}
    assert sorted(executions(log)) == sorted(c.cell_id for c in cells)  # each exactly once
    result = driver.run_sweep(cells, tmp_path / "out", runner=runner, fresh=True, progress=False)
    assert result.skipped == 0 and result.counts == {"ok": 5}


def test_exception_gives_failed_row_and_is_not_retried(ray_session, tmp_path):
    log = tmp_path / "log"
    cells = tiny(2)
    result = driver.run_sweep(
        cells,
        tmp_path / "out",
        runner=functools.partial(failing_runner, str(log)),
        max_retries=3,
        progress=False,
    )
    assert result.counts == {"failed": 2}
    df = store.load(tmp_path / "out")
    assert set(df["status"]) == {"failed"}
    assert all(e == "ValueError: no good at tau=8" for e in df["error"])
    assert set(df["attempt"]) == {1}
    assert sorted(executions(log)) == sorted(c.cell_id for c in cells)  # not retried
    # --retry-failed runs them again; plain resume does not
    again = driver.run_sweep(
        cells, tmp_path / "out", runner=functools.partial(logging_runner, str(log)), progress=False
    )
    assert again.ran == 0
    again = driver.run_sweep(
        cells,
        tmp_path / "out",
        runner=functools.partial(logging_runner, str(log)),
        retry_failed=True,
        progress=False,
    )
    assert again.counts == {"ok": 2}


def test_killed_worker_is_retried_and_its_row_is_ok(ray_session, tmp_path):
    log = tmp_path / "log"
    cells = tiny(1)
    result = driver.run_sweep(
        cells,
        tmp_path / "out",
        runner=functools.partial(crash_once_runner, str(log)),
        max_retries=2,
        progress=False,
    )
    assert result.counts == {"ok": 1}
    row = store.load(tmp_path / "out").iloc[0]
    assert row["status"] == "ok" and row["attempt"] == 2
    assert len(executions(log)) == 2 + 0  # two attempts (markers are not logged)


def test_killed_worker_without_retries_gives_crashed_row(ray_session, tmp_path):
    log = tmp_path / "log"
    result = driver.run_sweep(
        tiny(1),
        tmp_path / "out",
        runner=functools.partial(crash_once_runner, str(log)),
        max_retries=0,
        progress=False,
    )
    assert result.counts == {"crashed": 1}
    row = store.load(tmp_path / "out").iloc[0]
    assert row["status"] == "crashed" and row["attempt"] == 1
    assert "Worker" in row["error"] or "died" in row["error"].lower()


def test_time_out_cancels_the_cell_and_gives_timeout_row(ray_session, tmp_path):
    """The runner sleeps 120 s, then returns an ok row: a timeout row means it was
    cancelled at its 2 s time-out."""
    cells = tiny(1)
    result = driver.run_sweep(
        cells,
        tmp_path / "out",
        runner=functools.partial(sleepy_runner, 120.0),
        cell_timeout=2.0,
        progress=False,
    )
    assert result.counts == {"timeout": 1}
    row = store.load(tmp_path / "out").iloc[0]
    assert row["status"] == "timeout" and "2 s" in row["error"]


def placement_runner(cell: Cell) -> dict:
    """Holds a named placement group the way a time-parallel cell does, then hangs."""
    import ray
    from ray.util.placement_group import placement_group

    from rnnbench.harness import group

    pg = placement_group([{"CPU": 1}] * cell.workers, name=group.pg_name(cell))
    ray.get(pg.ready())
    time.sleep(120)
    return _row(cell)


def test_timed_out_time_parallel_cell_gives_back_its_cpus(ray_session, tmp_path):
    import ray

    from rnnbench.harness import group

    cell = Cell(
        model="jordan",
        strategy="teacher_forcing",
        tau=8,
        hidden=8,
        workers=2,
        task="running_parity",
    )
    result = driver.run_sweep(
        [cell], tmp_path / "out", runner=placement_runner, cell_timeout=3.0, progress=False
    )
    assert result.counts == {"timeout": 1}
    assert group.release(cell) is False  # the sweep removed it already
    wait_cpus_free(ray, 30, "CPUs not back after the time-out")


def test_cell_too_big_for_any_node_is_a_failed_row(ray_session, tmp_path):
    result = driver.run_sweep(
        tiny(1, threads=64), tmp_path / "out", runner=threads_runner, progress=False
    )
    assert result.counts == {"failed": 1}
    assert "infeasible" in store.load(tmp_path / "out").iloc[0]["error"]


def test_time_parallel_cells_hold_no_cpus():
    assert (
        driver.resources(
            Cell(model="jordan", strategy="teacher_forcing", tau=8, workers=2, threads=1), False
        )["num_cpus"]
        == 0
    )
    assert driver.resources(Cell(model="elman", strategy="bptt", tau=8, threads=2), True) == {
        "num_cpus": 2,
        "num_gpus": 0,
        "resources": {driver.EXCLUSIVE: 1},
    }
    assert (
        driver.resources(Cell(model="elman", strategy="bptt", tau=8, device="cuda"), False)[
            "num_gpus"
        ]
        == 1
    )


def test_registry_counts_neighbours_on_the_same_node_only():
    reg = registry.Registry()
    assert reg.enter("a", "n1") == 1
    reg.enter("b", "n1")
    reg.enter("c", "n2")
    assert reg.leave("b") == (1, 1)  # a ran beside it
    reg.enter("d", "n1")
    assert reg.leave("a") == (1, 2)  # b and d
    assert reg.leave("c") == (1, 0)
    assert reg.enter("d", "n1") == 2  # a retry is attempt 2


# --------------------------------------------------------------------------- subprocesses


def _stop(proc: subprocess.Popen, sig=signal.SIGINT, wait: float = 60) -> int | None:
    """Stop a process we started in its own session, then anything left in its group."""
    try:
        if proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        pass
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait(timeout=30)
    return proc.returncode


JOB = """\
name: resume
fixed: {model: elman, strategy: bptt, hidden: 8, repeats: 2, task: running_parity}
grid: {tau: [8, 16]}
seeds: [0, 1, 2, 3, 4]
"""


def _run_cmd(job, out) -> list[str]:
    return [
        str(BIN / "rnnbench"),
        "run",
        str(job),
        "--out",
        str(out),
        "--num-cpus",
        "2",
        "--runner",
        "test_sweep:cli_runner",
        "--no-progress",
    ]


def _stop_mid_run(cmd, log, out, rows: int, sig) -> tuple[int | None, str]:
    """Start ``rnnbench run`` with slow fake cells (3 s, so it is stopped mid-run), wait
    for ``rows`` stored rows, send ``sig``; return the exit code and the output."""
    # SIGINT at its default in the child: a shell's background job (`cmd &`) starts with
    # SIGINT ignored, and Python then never turns it into KeyboardInterrupt.
    reset = (
        "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", reset, *cmd],
        env=subprocess_env(RB_TEST_LOG=str(log), RB_TEST_SLEEP="3"),
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while len(store.stored_ids(out)) < rows and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.1)
        assert len(store.stored_ids(out)) >= rows
    finally:
        rc = _stop(proc, sig)
    return rc, proc.stdout.read()


@pytest.mark.slow
def test_sigint_then_rerun_resumes_and_exclusive_runs_alone(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(JOB)
    cells = jobfile.load(job).cells
    out = tmp_path / "out"
    cmd = _run_cmd(job, out)
    rc, log1 = _stop_mid_run(cmd, tmp_path / "log1", out, 4, signal.SIGINT)
    assert rc == 130, log1
    assert "Traceback" not in log1
    stored = store.stored_ids(out)
    assert 4 <= len(stored) < len(cells)
    # (whether these first cells overlapped depends on how fast the loaded machine starts
    # Ray's second worker; the neighbour count of overlapping cells: test_replicates)

    second = subprocess.run(
        cmd + ["--exclusive"],
        env=subprocess_env(RB_TEST_LOG=str(tmp_path / "log2"), RB_TEST_SLEEP="0.3"),
        capture_output=True,
        text=True,
        timeout=300,
        start_new_session=True,
    )
    assert second.returncode == 0, second.stdout + second.stderr
    ran = executions(tmp_path / "log2")
    assert sorted(ran) == sorted({c.cell_id for c in cells} - stored)  # only the missing ones
    df = store.load(out)
    assert len(df) == len(cells) and df["cell_id"].is_unique
    assert (df[~df["cell_id"].isin(stored)]["neighbours"] == 0).all()  # --exclusive
    import pandas as pd

    assert len(pd.read_parquet(out / "results.parquet")) == len(cells)
    assert "resume: " in second.stdout and "already stored" in second.stdout


CLUSTER_SCRIPT = """\
import functools, json, os, sys, threading, time
from pathlib import Path
import ray
from ray.cluster_utils import Cluster
from rnnbench.sweep import driver, registry
from rnnbench.results import store
from rnnbench.job.cell import Cell

log, out = Path(sys.argv[1]), sys.argv[2]
log.mkdir(parents=True, exist_ok=True)

def runner(log, cell):
    node = ray.get_runtime_context().get_node_id()
    (log / f"{cell.cell_id}-{os.getpid()}").write_text(node)
    time.sleep(4)
    return {**cell.config(), "cell_id": cell.cell_id, "status": "ok", "error": None,
            "node": node}

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
worker = cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
ray.init(address=cluster.address, log_to_driver=False)
victim = worker.node_id
removed = []

def remove_when_busy():
    while not any(p.read_text() == victim for p in log.iterdir()):
        time.sleep(0.05)
    cluster.remove_node(worker, allow_graceful=False)
    removed.append(victim)

threading.Thread(target=remove_when_busy, daemon=True).start()
cells = [Cell(model="elman", strategy="bptt", tau=8, hidden=8, seed=s) for s in range(3)]
result = driver.run_sweep(cells, out, runner=functools.partial(runner, log), max_retries=3,
                         progress=False)
df = store.load(out)
print("RESULT " + json.dumps({"counts": result.counts, "removed": removed, "victim": victim,
                  "rows": df[["cell_id", "status", "attempt", "node"]].to_dict("records")}),
      flush=True)
ray.shutdown()
cluster.shutdown()
"""


@pytest.mark.slow
def test_removing_the_node_that_runs_a_cell_still_completes_the_sweep(tmp_path):
    script = tmp_path / "cluster.py"
    script.write_text(CLUSTER_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "log"), str(tmp_path / "out")],
        env=subprocess_env(),
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        _stop(proc, signal.SIGTERM, wait=5)
    assert proc.returncode == 0, stderr[-3000:]
    report = json.loads(
        [line for line in stdout.splitlines() if line.startswith("RESULT ")][-1][len("RESULT ") :]
    )
    assert report["removed"] == [report["victim"]]
    rows = report["rows"]
    assert len(rows) == 3 and all(r["status"] == "ok" for r in rows)
    # the cell that was on the removed node ran again, elsewhere
    assert any(r["attempt"] >= 2 and r["node"] != report["victim"] for r in rows)


def _free_ports(n: int) -> list[int]:
    """``n`` free ports the kernel will not hand out meanwhile.

    They come from between Ray's worker ports (10002-19999) and the kernel's
    ephemeral range: a port from ``bind(0)`` would be free again once closed,
    and the ephemeral ports Ray's own processes take could land on it before
    ``ray start`` binds it."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    if low < 20000 + 4 * n:
        pytest.skip(f"the kernel's ephemeral ports start at {low}: no safe range for Ray's")
    ports = []
    for port in random.Random().sample(range(20000, low), 4 * n):
        with socket.socket() as s:
            try:
                s.bind(("", port))  # every interface, as Ray binds
            except OSError:
                continue
        ports.append(port)
        if len(ports) == n:
            return ports
    raise RuntimeError("no free ports below the ephemeral range")


def test_row_files_are_strict_json_and_load_back_as_nan(tmp_path):
    import json as _json
    import math as _math

    row = failure_row(Cell(model="elman", strategy="bptt", tau=8), "failed", "boom")
    store.write_row(tmp_path, row)
    text = (tmp_path / store.ROWS / f"{row['cell_id']}.json").read_text()
    assert "NaN" not in text
    _json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    df = store.load(tmp_path)
    assert _math.isnan(df.loc[0, "step_ms_median"]) and _math.isnan(df.loc[0, "comm_ms_median"])
    assert df["step_ms_median"].dtype == float
