"""Ray as rnnbench starts it (rnnbench.raysession): loopback only, its token file private,
a wrong --address refused at once; how a run stops on signals (rnnbench.stopping); where a
row ran; the compiled kernel's build lock.  Real processes, real signals, real sockets."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import BIN, ROOT, alive, listeners, process_tree, subprocess_env

from rnnbench import raysession, stopping
from rnnbench.errors import UsageError

# --------------------------------------------------------------------------- the token file


def test_the_token_file_is_created_private_and_an_open_one_is_tightened(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    path = raysession.secure_token()
    assert path == tmp_path / ".ray" / "auth_token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_text()) == 64  # 256 bits in hex, as Ray makes it
    path.chmod(0o644)  # as Ray 2.60 writes it with the usual umask
    token = path.read_text()
    assert raysession.secure_token() == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == token


def test_a_token_file_that_is_a_link_is_not_followed(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("not a token")
    elsewhere.chmod(0o644)
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").symlink_to(elsewhere)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    raysession.secure_token()
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o644
    assert elsewhere.read_text() == "not a token"


# --------------------------------------------------------------------------- listeners

BENCH_GROUP = [
    "bench",
    "--model",
    "jordan",
    "--strategy",
    "teacher_forcing",
    "--workers",
    "2",
    "--tau",
    "16",
    "--hidden",
    "8",
    "--repeats",
    "2",
    "--task",
    "running_parity",
]


def open_listeners(found: set[tuple[str, int, str]]) -> list[tuple[str, int, str]]:
    """The listeners not bound to the loopback (0.0.0.0, ::, or an outside address)."""
    return sorted(s for s in found if s[0] not in ("127.0.0.1", "::1"))


def test_the_listener_check_sees_a_socket_on_every_interface():
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        port = s.getsockname()[1]
        found = open_listeners(listeners({os.getpid()}))
        assert ("0.0.0.0", port) in {(ip, p) for ip, p, _ in found}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        mine = listeners({os.getpid()})
        assert any(p == port for _, p, _ in mine)
        assert not any(p == port for _, p, _ in open_listeners(mine))


@pytest.mark.slow
def test_bench_with_a_worker_group_listens_on_loopback_only_and_keeps_its_token_private(
    tmp_path,
):
    """A real `rnnbench bench --workers 2` in a fresh HOME.  Every TCP socket of it and its
    processes (Ray's servers, agents, workers, the group's TCPStore and gloo), listed from
    /proc while it runs, is on the loopback; the token file Ray made and used is 0600."""
    proc = subprocess.Popen(
        [str(BIN / "rnnbench"), *BENCH_GROUP],
        env=subprocess_env(HOME=str(tmp_path)),
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
            seen |= listeners(process_tree(proc.pid))
            time.sleep(0.1)
        out = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == 0, out[-3000:]
    names = {name for _, _, name in seen}
    assert {"gcs_server", "raylet"} <= names, seen  # the listing saw Ray's servers
    assert open_listeners(seen) == [], open_listeners(seen)
    assert "RAY_AUTH_MODE=disabled to opt out" not in out
    token = tmp_path / ".ray" / "auth_token"
    assert token.exists()
    assert stat.S_IMODE(token.stat().st_mode) == 0o600


# --------------------------------------------------------------------------- --address


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there now


@pytest.mark.parametrize("command", ["run", "bench"])
def test_an_address_where_nothing_listens_is_exit_2_at_once(tmp_path, command):
    job = tmp_path / "job.yaml"
    job.write_text(
        "name: t\nfixed: {hidden: 8, repeats: 2, task: running_parity, tau: 8}\n"
        "grid:\n  run:\n    - {model: elman, strategy: bptt}\n"
    )
    args = (
        [str(job), "--out", str(tmp_path / "out"), "--no-progress"]
        if command == "run"
        else ["--model", "elman", "--strategy", "bptt", "--tau", "8", "--hidden", "8"]
    )
    port = _closed_port()
    start = time.monotonic()
    proc = subprocess.run(
        [str(BIN / "rnnbench"), command, *args, "--address", f"127.0.0.1:{port}"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert time.monotonic() - start < 30
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [x for x in proc.stderr.splitlines() if "error" in x.lower()]  # not load warnings
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_reachability_probe_says_yes_where_something_listens():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert raysession.reachable("127.0.0.1", s.getsockname()[1]) is None
    assert raysession.reachable("127.0.0.1", _closed_port()) is not None


# --------------------------------------------------------------------------- signals


def test_a_signal_inside_a_deferred_stretch_waits_for_its_end():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with stopping.handled():
            with stopping.deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
                done.append("finished")
    assert done == ["finished"]
    # without the deferral the same signal cuts the stretch
    done.clear()
    with pytest.raises(KeyboardInterrupt):
        with stopping.handled():
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.5)
            done.append("finished")
    assert done == []


def test_a_second_signal_while_stopping_does_not_cut_the_clean_up():
    cleaned = []
    with pytest.raises(KeyboardInterrupt, match="first"):
        with stopping.handled():
            try:
                raise KeyboardInterrupt("first")
            finally:
                with stopping.deferred():
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(0.05)
                    cleaned.append(True)
    assert cleaned == [True]


SLEEPY_JOB = """\
name: signals
fixed: {hidden: 8, repeats: 2, task: running_parity, tau: 8, model: elman, strategy: bptt}
grid:
  seed: [0, 1, 2, 3, 4, 5, 6, 7]
"""


def sleepy_runner(cell):
    """A row after a short sleep (the signal tests' cells)."""
    from rnnbench.harness.row import base_row

    time.sleep(float(os.environ.get("RB_TEST_SLEEP", "1.5")))
    return {**base_row(cell), "status": "ok", "error": None}


def _start_run(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    job = tmp_path / "job.yaml"
    job.write_text(SLEEPY_JOB)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            str(BIN / "rnnbench"),
            "run",
            str(job),
            "--out",
            str(out),
            "--num-cpus",
            "2",
            "--no-progress",
            "--runner",
            "test_cluster:sleepy_runner",
        ],
        env=subprocess_env(),
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, out


def _finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    try:
        return proc.communicate(timeout=timeout)[0]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _rows(out: Path) -> int:
    return len(list((out / "rows").glob("*.json"))) if (out / "rows").is_dir() else 0


@pytest.mark.slow
@pytest.mark.parametrize("after_s", [0.3, 1.5])
def test_sigterm_at_any_moment_exits_130_without_a_traceback(tmp_path, after_s):
    """While Python imports, while Ray starts (while cells run: the next test; inside an
    import's class body: test_a_signal_inside_the_commands_import_exits_130)."""
    proc, out = _start_run(tmp_path)
    time.sleep(after_s)
    proc.send_signal(signal.SIGTERM)
    log = _finish(proc)
    assert proc.returncode == 130, log[-3000:]
    assert "Traceback" not in log and "interrupted" in log


SIGNAL_IN_A_CLASS_BODY = """
import os, signal


class Sends:
    def __set_name__(self, owner, name):  # as scipy's cached_property is set up
        os.kill(os.getpid(), signal.SIGTERM)


class Holder:
    x = Sends()


def configure(parser):
    pass


def main(args):
    return 0
"""


def test_ray_that_cannot_start_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    """On a machine loaded beyond its CPUs Ray's node can time out starting (a bare
    Exception from ray.init, seen in CI): one line naming it, exit 2, no traceback."""
    from rnnbench import cli, raysession

    def timed_out(*_):
        raise Exception(
            "The current node timed out during startup. This could happen because some of "
            "the raylet failed to startup or the GCS has become overloaded."
        )

    tries, stops = [], []
    monkeypatch.setattr(raysession, "_init_local", lambda *a: tries.append(1) or timed_out())
    # what a failed start left is let go of before the next (here: nothing to stop, and
    # this test process's own Ray must not be)
    monkeypatch.setattr(raysession, "stop", lambda started, **k: stops.append(started) or [])
    job = tmp_path / "job.yaml"
    job.write_text("name: one\nfixed: {model: elman, strategy: bptt, tau: 8, hidden: 8}\n")
    code = cli.main(["run", str(job), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [x for x in err.splitlines() if "error" in x]
    assert len(lines) == 1 and "cannot start Ray: The current node timed out" in lines[0], err
    assert "Traceback" not in err
    # tried twice (Ray's node waits a fixed 30 s: a loaded machine can pass it once)
    assert len(tries) == 2 and err.count("starting it once more") == 1 and stops[0] is True


def test_ray_whose_node_timed_out_once_is_started_again(monkeypatch, capsys):
    from rnnbench import raysession

    tries, stops = [], []

    def once(*_):
        tries.append(1)
        if len(tries) == 1:
            raise Exception("The current node timed out during startup. This could happen")

    monkeypatch.setattr(raysession, "_init_local", once)
    monkeypatch.setattr(raysession, "stop", lambda started, **k: stops.append(started) or [])
    raysession.start(num_cpus=1)
    assert len(tries) == 2 and stops == [True]
    assert "starting it once more" in capsys.readouterr().err
    # any other failure is not tried again
    tries.clear()
    monkeypatch.setattr(
        raysession, "_init_local", lambda *a: tries.append(1) or (_ for _ in ()).throw(OSError("x"))
    )
    with pytest.raises(UsageError, match="cannot start Ray: x"):
        raysession.start(num_cpus=1)
    assert len(tries) == 1


def test_a_signal_inside_the_commands_import_exits_130(tmp_path, monkeypatch, capsys):
    """A signal that lands in a class body while the command's module is imported (a
    RuntimeError from __set_name__ on Python 3.11, exit 1 with a traceback before) is
    held until the import ends, then stops the command as Ctrl-C does."""
    from rnnbench import cli

    (tmp_path / "signalled_command.py").write_text(SIGNAL_IN_A_CLASS_BODY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, "run", ("signalled_command", "a test's command"))
    assert cli.main(["run"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_a_signal_wrapped_by_a_lazy_import_inside_the_command_exits_130(monkeypatch, capsys):
    """The same wrapping inside the command's own work (a lazy import) is an interrupt."""
    import types

    from rnnbench import cli

    def main(args):
        try:
            raise KeyboardInterrupt("SIGTERM")
        except KeyboardInterrupt as exc:
            raise RuntimeError("Error calling __set_name__") from exc

    module = types.SimpleNamespace(configure=lambda parser: None, main=main)
    monkeypatch.setitem(sys.modules, "wrapped_command", module)
    monkeypatch.setitem(cli.COMMANDS, "run", ("wrapped_command", "a test's command"))
    assert cli.main(["run"]) == 130
    assert "interrupted" in capsys.readouterr().err
    module.main = lambda args: (_ for _ in ()).throw(RuntimeError("a real bug"))
    with pytest.raises(RuntimeError, match="a real bug"):  # other RuntimeErrors stay bugs
        cli.main(["run"])


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, "twice"])
def test_sigterm_sighup_and_two_quick_sigints_consolidate_the_rows_written(tmp_path, sig):
    """While cells run: exit 130, no traceback, the resume hint, every row written so far
    in results.parquet."""
    proc, out = _start_run(tmp_path)
    deadline = time.monotonic() + 180
    while _rows(out) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert _rows(out) >= 2
    if sig == "twice":
        proc.send_signal(signal.SIGINT)
        time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
    else:
        proc.send_signal(sig)
    log = _finish(proc)
    assert proc.returncode == 130, log[-3000:]
    assert "Traceback" not in log and "run the same command again to resume" in log
    import pandas as pd

    kept = pd.read_parquet(out / "results.parquet")
    assert len(kept) == _rows(out) >= 2
    assert "Error" not in log, log[-3000:]  # none of Ray's error lines


def dying_runner(cell):
    """The first attempt of seed 0's cell kills its own worker; the rest give rows."""
    marker = Path(os.environ["RB_TEST_MARK"])
    if cell.seed == 0 and not marker.exists():
        marker.write_text("died")
        os._exit(1)
    return sleepy_runner(cell)


@pytest.mark.slow
def test_a_dead_worker_and_its_agents_leave_nothing_behind(tmp_path):
    """Ray's "A worker died" text goes to the session's log, not the run's output; after
    the run every process it started has ended."""
    job = tmp_path / "job.yaml"
    job.write_text(SLEEPY_JOB.replace("[0, 1, 2, 3, 4, 5, 6, 7]", "[0, 1]"))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            str(BIN / "rnnbench"),
            "run",
            str(job),
            "--out",
            str(out),
            "--num-cpus",
            "2",
            "--no-progress",
            "--runner",
            "test_cluster:dying_runner",
        ],
        env=subprocess_env(RB_TEST_MARK=str(tmp_path / "mark"), RB_TEST_SLEEP="0.2"),
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: set[int] = set()
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        seen |= process_tree(proc.pid) - {proc.pid}
        time.sleep(0.1)
    log = _finish(proc)
    assert proc.returncode == 0, log[-3000:]
    assert (tmp_path / "mark").exists()  # a worker did die
    assert "worker died" not in log.lower() and "(raylet)" not in log, log[-3000:]
    assert {"raylet", "gcs_server"} & {_comm(p) for p in seen} or seen
    left = sorted(p for p in seen if alive(p))
    assert left == [], [(p, _comm(p)) for p in left]


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


# --------------------------------------------------------------------------- where rows ran


def test_the_environment_line_counts_nodes_over_rows_and_ranks():
    import pandas as pd

    from rnnbench.report.env import environment, nodes

    rows = pd.DataFrame(
        {
            "node_id": ["a", "a", "b"],
            "node_ip": ["10.0.0.1", "10.0.0.1", "10.0.0.2"],
            "rank_node_ids": [None, ["a", "c"], None],
            "rank_node_ips": [None, ["10.0.0.1", "10.0.0.3"], None],
        }
    )
    assert nodes(rows) == "3 Ray nodes (10.0.0.1, 10.0.0.2, 10.0.0.3)"
    assert nodes(rows.iloc[:1]) == "1 Ray node (10.0.0.1)"
    assert nodes(pd.DataFrame({"status": ["ok"]})) == "not recorded"
    full = rows.assign(status="ok", device="cpu", timestamp=None)
    assert environment(full)["nodes"].startswith("3 Ray nodes")


def test_node_fields_are_in_the_schema_and_survive_parquet(tmp_path):
    import pandas as pd

    from rnnbench.results import rows, store

    for key in ("node_id", "node_ip", "rank_node_ids", "rank_node_ips"):
        assert key in rows.SCHEMA
    from rnnbench.job.cell import Cell

    (tmp_path / "rows").mkdir()
    cell = Cell(model="elman", strategy="bptt", tau=8, hidden=8)
    row = {
        **cell.config(),
        "cell_id": cell.cell_id,
        "status": "ok",
        "node_id": "abc",
        "node_ip": "127.0.0.1",
        "rank_node_ids": ["abc", "def"],
        "rank_node_ips": ["127.0.0.1", "127.0.0.2"],
    }
    (tmp_path / "rows" / f"{cell.cell_id}.json").write_text(json.dumps(row))
    store.consolidate(tmp_path)
    back = pd.read_parquet(tmp_path / "results.parquet").iloc[0]
    assert back["node_id"] == "abc" and list(back["rank_node_ids"]) == ["abc", "def"]
    from rnnbench.results import validate

    assert validate.problem(row) is None
    assert "rank_node_ids" in validate.problem({**row, "rank_node_ids": [1, {"a": 2}]})


# --------------------------------------------------------------------------- compiled kernel


def test_the_build_folder_is_keyed_by_interpreter_torch_and_source():
    from rnnbench.core import compiled

    folder = compiled.build_dir()
    assert folder.name == f"{compiled.NAME}-{compiled.key()}"
    code = "from rnnbench.core import compiled; print(compiled.key())"
    same = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env()
    )
    assert same.stdout.strip() == compiled.key()  # the same environment: the same folder
    other = subprocess.run(
        [sys.executable, "-S", "-c", f"import sys; sys.path[:0] = {sys.path!r}; {code}"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
    )
    assert other.stdout.strip() == compiled.key()
    import hashlib

    assert compiled.key() != hashlib.sha256(b"another interpreter").hexdigest()[:16]


def _dead_pid() -> tuple[int, str]:
    """A pid and start time of a process that has ended."""
    from rnnbench.core import compiled

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    start = compiled._start_time(child.pid)
    child.kill()
    child.wait()
    return child.pid, start


def test_a_lock_whose_holder_is_dead_is_broken_and_one_held_alive_times_out(tmp_path):
    from rnnbench.core import compiled

    pid, start = _dead_pid()
    lock = tmp_path / compiled.LOCK
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "start": start}))
    with pytest.warns(UserWarning, match=f"broke the build lock of process {pid}"):
        got = compiled.acquire(tmp_path, wait_s=5)
    assert got == lock and json.loads(lock.read_text())["pid"] == os.getpid()
    lock.unlink()
    # the opposite: a live holder (this process) is waited for, then named
    lock.write_text(
        json.dumps(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "start": compiled._start_time(os.getpid()),
            }
        )
    )
    t0 = time.monotonic()
    with pytest.raises(compiled.LockTimeout, match=str(lock)):
        compiled.acquire(tmp_path, wait_s=0.5)
    assert 0.5 <= time.monotonic() - t0 < 5


STALE_LOCK_CELL = """\
import json, socket, sys, warnings
from rnnbench.core import compiled
from rnnbench.harness.runner import run_cell
from rnnbench.job.cell import Cell
compiled.LOCK_WAIT_S = float(sys.argv[1])
folder = compiled.build_dir()
folder.mkdir(parents=True, exist_ok=True)
(folder / compiled.LOCK).write_text(sys.argv[2])
(folder / "lock").write_text("")  # torch's own, left by the same dead builder
cell = Cell(model="elman", strategy="bptt_compiled", tau=8, hidden=8, repeats=2,
            task="running_parity")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    row = run_cell(cell)
(folder / compiled.LOCK).unlink(missing_ok=True)
print("ROW " + json.dumps({"status": row["status"], "error": row["error"],
                           "warned": [str(w.message) for w in caught]}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("holder", ["dead", "alive"])
def test_a_stale_build_lock_lets_the_next_cell_run_a_live_one_gives_a_failed_row(tmp_path, holder):
    """A real cell in a fresh process, after a build lock is left in the kernel's folder:
    by a process that has died (the cell runs, the warning says the lock was broken), or
    by one still alive (the cell is a failed row naming the lock, after the time limit)."""
    if holder == "dead":
        pid, start = _dead_pid()
    else:
        from rnnbench.core import compiled

        pid, start = os.getpid(), compiled._start_time(os.getpid())
    script = tmp_path / "cell.py"
    script.write_text(STALE_LOCK_CELL)
    lock = json.dumps({"host": socket.gethostname(), "pid": pid, "start": start})
    proc = subprocess.run(
        [sys.executable, str(script), "2", lock],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads([x for x in proc.stdout.splitlines() if x.startswith("ROW ")][-1][4:])
    if holder == "dead":
        assert got["status"] == "ok", got
        assert any(f"process {pid}" in w and "broke" in w for w in got["warned"]), got
    else:
        assert got["status"] == "failed", got
        assert "build lock" in got["error"] and "rnnbench.lock" in got["error"], got
