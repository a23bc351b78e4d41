"""Results on shared storage (issue 23 point 4; docs/storage.md), against a real
S3-compatible server the tests start on 127.0.0.1 (moto's server mode, over HTTP):
rows, Parquet, resume and the lease lock on S3; no half row visible to a reader; a real
``rnnbench run`` stopped by SIGINT and resumed, then ``report`` and ``compare`` on S3;
an S3 URI with nothing listening is exit 2 before Ray starts.  Each with its opposite.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import BIN, ROOT, subprocess_env
from ray import cloudpickle

from rnnbench.errors import UsageError
from rnnbench.job.cell import Cell
from rnnbench.results import location, lock, store
from rnnbench.sweep import driver

cloudpickle.register_pickle_by_value(sys.modules[__name__])

moto_server = pytest.importorskip("moto.server")

# its module fixture is costly: one process runs the whole module (make test: loadgroup)
pytestmark = pytest.mark.xdist_group("s3")


JOB = """\
name: shared
fixed: {model: elman, strategy: bptt, hidden: 8, repeats: 2, task: running_parity}
grid: {tau: [8]}
seeds: [0, 1, 2, 3, 4, 5]
"""
SLOW_RUNNER = f"{Path(__file__).stem}:slow_runner"
AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


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
    time.sleep(1.0)
    return ok_runner(cell)


def cells(n: int) -> list[Cell]:
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on 127.0.0.1 and the environment that points at it."""
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    env = {**AWS, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        import boto3

        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"]).create_bucket(Bucket="bench")
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


_n = iter(range(10**6))


@pytest.fixture
def uri(s3) -> str:
    """A fresh results folder on the server."""
    return f"s3://bench/run{next(_n)}-{os.getpid()}"


def keys(uri: str) -> list[str]:
    where = location.of(uri)
    import pyarrow.fs as pafs

    infos = where.fs.get_file_info(
        pafs.FileSelector(where.path, recursive=True, allow_not_found=True)
    )
    return sorted(i.path[len(where.path) + 1 :] for i in infos if i.type == pafs.FileType.File)


def test_rows_parquet_and_resume_on_s3(ray_session, uri):
    driver.run_sweep(cells(2), uri, runner=ok_runner, progress=False, job="shared")
    assert keys(uri) == sorted(
        [store.PARQUET] + [f"rows/{c.cell_id}.json" for c in cells(2)]
    )  # the lease object is gone once the run ends
    first = store.load(uri)
    assert sorted(first["cell_id"]) == sorted(c.cell_id for c in cells(2))
    result = driver.run_sweep(cells(4), uri, runner=ok_runner, progress=False, job="shared")
    assert (result.skipped, result.ran) == (2, 2)  # resumed: the stored cells skipped
    assert len(store.read_parquet(location.of(uri).child(store.PARQUET))) == 4


def test_the_lease_keeps_a_second_run_out_until_it_is_stale(uri):
    where = location.of(uri)
    with store.locked(uri):
        lease = json.loads(where.read(store.LOCK, 4096))
        assert lease["pid"] == os.getpid() and lease["token"]
        said = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys\nfrom rnnbench.results import store\nfrom rnnbench.errors import "
                "UsageError\ntry:\n    with store.locked(sys.argv[1]): print('locked')\n"
                "except UsageError as e: print(e)",
                uri,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=subprocess_env(),
        ).stdout.strip()
        assert f"pid {os.getpid()}" in said and "another rnnbench run" in said, said
        store.check(uri)  # ours still
    assert where.kind(store.LOCK) == "missing"
    # the opposite: a lease not renewed for longer than STALE_S, or held by a dead
    # process on this host, is taken over
    for stale in (
        {"host": "elsewhere", "pid": 1, "renewed": time.time() - lock.STALE_S - 5},
        {"host": socket.gethostname(), "pid": _dead_pid(), "renewed": time.time()},
    ):
        where.write(store.LOCK, json.dumps({**stale, "token": "old"}).encode())
        with store.locked(uri):
            assert json.loads(where.read(store.LOCK, 4096))["pid"] == os.getpid()


def test_a_lease_taken_over_stops_the_holder(uri, monkeypatch):
    monkeypatch.setattr(lock, "RENEW_S", 0.2)
    where = location.of(uri)
    with store.locked(uri):
        where.write(
            store.LOCK,
            json.dumps({"host": "x", "pid": 1, "token": "theirs", "renewed": time.time()}).encode(),
        )
        deadline = time.monotonic() + 30
        with pytest.raises(Exception, match="taken over"):
            while time.monotonic() < deadline:
                store.check(uri)
                time.sleep(0.05)
    assert where.kind(store.LOCK) == "file"  # theirs is left in place


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_concurrent_reader_never_sees_half_a_row(uri):
    where = location.of(uri).child("rows")
    big = [float(i) for i in range(200_000)]  # ~2 MB of JSON per version
    versions = [json.dumps({"v": v, "samples": big}).encode() for v in range(2)]
    where.write("row.json", versions[0])
    stop = threading.Event()
    seen: list[int] = []
    torn: list[int] = []

    def read():
        while not stop.is_set():
            data = where.read("row.json", 16 * 2**20)
            try:
                seen.append(json.loads(data)["v"])
            except ValueError:
                torn.append(len(data))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(12):
            where.write("row.json", versions[(i + 1) % 2])
    finally:
        stop.set()
        reader.join(60)
    assert not torn, f"{len(torn)} partial reads"
    assert set(seen) == {0, 1}, seen  # the opposite: the reader did see both versions


def test_a_real_run_on_s3_interrupted_resumed_reported_compared(uri, s3, tmp_path):
    """Its own embedded Ray, as a user's run has (a driver on a shared Ray does not
    stop on SIGINT as cleanly: issue 25 point 8)."""
    job = tmp_path / "job.yaml"
    job.write_text(JOB)
    argv = [
        str(BIN / "rnnbench"),
        "run",
        str(job),
        "--out",
        uri,
        "--no-progress",
        "--runner",
        SLOW_RUNNER,
        "--num-cpus",
        "2",
    ]
    # SIGINT at its default in the child, whatever this process inherited
    reset = (
        "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    first = subprocess.Popen(
        [sys.executable, "-c", reset, *argv],
        env=subprocess_env(**s3),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and first.poll() is None:
        if any(k.startswith("rows/") and k.endswith(".json") for k in keys(uri)):
            break
        time.sleep(0.2)
    first.send_signal(signal.SIGINT)
    try:
        _, err = first.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == 130, err
    kept = [k for k in keys(uri) if k.startswith("rows/") and k.endswith(".json")]
    assert 1 <= len(kept) < 6, (kept, err)  # interrupted part-way, the rows kept
    second = subprocess.run(
        argv, env=subprocess_env(**s3), capture_output=True, text=True, cwd=ROOT, timeout=240
    )
    assert second.returncode == 0, second.stderr
    assert f"{6 - len(kept)} cell(s) run now, {len(kept)} already stored" in second.stdout
    assert f"results in {uri}/{store.PARQUET}" in second.stdout
    report = subprocess.run(
        [str(BIN / "rnnbench"), "report", uri],
        env=subprocess_env(MPLBACKEND="Agg", **s3),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=240,
    )
    assert report.returncode == 0, report.stderr
    assert {"report/index.html", "report/tables/summary.csv"} <= set(keys(uri))
    page = location.of(uri).child("report").read("index.html", 2**24).decode()
    assert "rnnbench report" in page
    compare = subprocess.run(
        [str(BIN / "rnnbench"), "compare", uri, uri],
        env=subprocess_env(**s3),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=240,
    )
    assert compare.returncode == 0 and "Traceback" not in compare.stderr, compare.stderr


def test_s3_with_nothing_listening_is_exit_2_before_ray_starts(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(JOB)
    env = subprocess_env(**AWS, AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}")
    done = subprocess.run(
        [str(BIN / "rnnbench"), "run", str(job), "--out", "s3://bench/x", "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    lines = [x for x in done.stderr.strip().splitlines() if "warning:" not in x]
    assert len(lines) == 1 and "--out s3://bench/x: cannot write results there" in lines[0]
    assert "Ray" not in done.stderr
    assert not (ROOT / "s3:").exists()


def test_the_opposite_parsing_a_uri_needs_no_server():
    where = location.of("s3://bench/x?endpoint_override=127.0.0.1:1&scheme=http")
    assert not where.local and where.atomic_put and where.path == "bench/x"
    with pytest.raises(UsageError, match="unknown scheme"):
        location.of("foo://x")


def test_memory_uri_through_fsspec_writes_by_temp_and_move():
    where = location.of("memory://rnnbench-test/run")
    assert not where.atomic_put
    where.make_dir()
    where.write("a.json", b"{}")
    assert where.read("a.json", 10) == b"{}"
    assert [n for n in where.names() if location.is_tmp(n)] == []
