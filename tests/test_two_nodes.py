"""A real two-node Ray cluster on this host (slow tier): a head and a worker started by
`ray start` with token authentication, each node with one CPU and its own resource; a
sweep driven by `rnnbench run --address` as a separate process.

- rows land in the results folder, cells run on both nodes, a 2-worker group cell has one
  rank per node (rows record node_id / node_ip and each rank's);
- a driver without ``RAY_AUTH_MODE=token`` is refused in one line naming it, exit 2;
- the worker node killed mid-run: finished rows stay, the lost cell is a failure row,
  exit 1 with a message, no hang.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import BIN, ROOT, free_ports, kill_tree, node_ports, subprocess_env, temp_processes

pytestmark = [pytest.mark.xdist_group("cluster"), pytest.mark.slow]


class Node:
    """One `ray start --block` node: its process (own session) and log."""

    def __init__(self, args: list[str], env: dict, log: Path):
        self.log = log
        self.out = log.open("w")
        self.proc = subprocess.Popen(
            [str(BIN / "ray"), "start", "--block", *args],
            env=env,
            start_new_session=True,
            stdout=self.out,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        kill_tree(self.proc.pid)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        self.proc.wait(timeout=30)
        self.out.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(env for drivers, GCS address, head, worker): token auth, one CPU per node."""
    home = tmp_path_factory.mktemp("home")
    temp = tempfile.mkdtemp(prefix="rb")  # short: Ray's socket paths must stay < 108 chars
    logs = tmp_path_factory.mktemp("logs")
    env = subprocess_env(HOME=str(home), RAY_AUTH_MODE="token")
    # the session's embedded Ray set its loopback-only switch in this process's
    # environment; `ray start` of a multi-node cluster refuses it
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    generated = subprocess.run(
        [str(BIN / "ray"), "get-auth-token", "--generate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert generated.returncode == 0, generated.stderr
    (home / ".ray" / "auth_token").chmod(0o600)
    (gcs,) = free_ports(1)
    address = f"127.0.0.1:{gcs}"
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    head = Node(
        [
            "--head",
            f"--port={gcs}",
            f"--temp-dir={temp}",
            "--include-dashboard=false",
            *common,
            '--resources={"rnnbench_exclusive": 1, "head_node": 1}',
            *node_ports(head=True),
        ],
        env,
        logs / "head.log",
    )
    worker = None
    try:
        _started(head)
        worker = Node(
            [
                f"--address={address}",
                *common,
                '--resources={"rnnbench_exclusive": 1, "worker_node": 1}',
                *node_ports(head=False),
            ],
            env,
            logs / "worker.log",
        )
        _started(worker)
        yield env, address, head, worker
    finally:
        for node in (worker, head):
            if node is not None and node.proc.poll() is None:
                node.kill()
        for pid in temp_processes(temp):
            kill_tree(pid)
        shutil.rmtree(temp, ignore_errors=True)


def _started(node: Node, within_s: float = 240) -> None:
    """Wait for the node's `ray start` to say it started (its raylet registered)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        assert node.proc.poll() is None, node.log.read_text()[-3000:]
        if "Ray runtime started" in node.log.read_text():
            return
        time.sleep(0.5)
    raise AssertionError(f"node not up: {node.log.read_text()[-3000:]}")


def spread_runner(cell):
    """A one-process cell waits 2 s first (so the two one-CPU nodes each get some), then
    is measured for real; a worker-group cell is measured at once."""
    from rnnbench.harness.runner import run_cell

    if not cell.grouped:
        time.sleep(2)
    return run_cell(cell)


JOB = """\
name: two-nodes
fixed: {hidden: 8, repeats: 2, task: running_parity, tau: 16}
grid:
  run:
    - {model: elman, strategy: bptt, seed: 0}
    - {model: elman, strategy: bptt, seed: 1}
    - {model: elman, strategy: bptt, seed: 2}
    - {model: elman, strategy: bptt, seed: 3}
    - {model: jordan, strategy: teacher_forcing, workers: 2, threads: 1}
"""


def _run(env: dict, args: list, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "rnnbench"), "run", *map(str, args), "--no-progress"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,
    )


def test_a_run_by_address_lands_rows_from_both_nodes_and_a_rank_on_each(cluster, tmp_path):
    env, address, _, _ = cluster
    job = tmp_path / "job.yaml"
    job.write_text(JOB)
    out = tmp_path / "out"
    proc = _run(
        env, [job, "--out", out, "--address", address, "--runner", "test_two_nodes:spread_runner"]
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    df = pd.read_parquet(out / "results.parquet")
    assert len(df) == 5 and set(df["status"]) == {"ok"}
    assert df["node_id"].notna().all() and df["node_ip"].notna().all()
    single = df[df["workers"] == 1]
    assert single["node_id"].nunique() == 2, single[["cell_id", "node_id"]]  # both nodes
    group = df[df["workers"] == 2].iloc[0]
    assert len(set(group["rank_node_ids"])) == 2  # one rank per node (one CPU each)
    assert group["node_id"] == group["rank_node_ids"][0]


def test_a_driver_without_the_token_setting_is_told_in_one_line(cluster, tmp_path):
    env, address, _, _ = cluster
    job = tmp_path / "job.yaml"
    job.write_text(JOB)
    bare = {k: v for k, v in env.items() if k != "RAY_AUTH_MODE"}
    bare["HOME"] = str(tmp_path)  # no token here either
    start = time.monotonic()
    proc = _run(bare, [job, "--out", tmp_path / "out", "--address", address], timeout=120)
    assert time.monotonic() - start < 60
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [x for x in proc.stderr.splitlines() if "error" in x.lower()]
    assert len(errors) == 1 and "RAY_AUTH_MODE=token" in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "rows").exists() or not list(
        (tmp_path / "out" / "rows").iterdir()
    )


def marked_runner(cell):
    """Writes its node's resource name into ~/marks/<cell_id> (the nodes' HOME is the
    test's), then sleeps 5 s."""
    import ray

    from rnnbench.harness.row import base_row

    node = ray.get_runtime_context().get_node_id()
    kind = next(
        (
            n["Resources"].keys() & {"head_node", "worker_node"}
            for n in ray.nodes()
            if n["NodeID"] == node
        ),
        set(),
    )
    marks = Path.home() / "marks"
    (marks / cell.cell_id).write_text(",".join(kind))
    time.sleep(5)
    return {**base_row(cell), "status": "ok", "error": None}


def test_the_worker_node_killed_mid_run_keeps_finished_rows_and_ends_with_exit_1(cluster, tmp_path):
    """Last in this module: it kills the worker node."""
    env, address, head, worker = cluster
    job = tmp_path / "job.yaml"
    job.write_text(
        "name: kill\nfixed: {hidden: 8, repeats: 2, task: running_parity, tau: 8,"
        " model: elman, strategy: bptt}\ngrid:\n  seed: [0, 1, 2, 3, 4, 5]\n"
    )
    out, marks = tmp_path / "out", Path(env["HOME"]) / "marks"
    marks.mkdir()
    killed: list[str] = []

    def kill_when_busy():
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline:
            done = (
                {p.name for p in (out / "rows").glob("*.json")}
                if (out / "rows").is_dir()
                else set()
            )
            on_worker = [p.name for p in marks.iterdir() if p.read_text() == "worker_node"]
            # a cell is running on the worker node and some row is written already
            if done and any(f"{c}.json" not in done for c in on_worker):
                killed.append(next(c for c in on_worker if f"{c}.json" not in done))
                worker.kill()
                return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_when_busy, daemon=True)
    killer.start()
    start = time.monotonic()
    proc = _run(
        env,
        [
            job,
            "--out",
            out,
            "--address",
            address,
            "--max-retries",
            "0",
            "--runner",
            "test_two_nodes:marked_runner",
        ],
        timeout=240,
    )
    killer.join(timeout=5)
    assert killed, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert time.monotonic() - start < 200
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    df = pd.read_parquet(out / "results.parquet")
    assert len(df) == 6 and df["cell_id"].is_unique  # every cell has its row
    lost = df[df["cell_id"] == killed[0]].iloc[0]
    assert lost["status"] in ("crashed", "failed"), lost["error"]
    assert (df["status"] == "ok").sum() >= 1  # finished rows survived
    assert "not ok" in proc.stdout and killed[0] in proc.stdout
