"""The worker-group harness: N Ray workers give the single-process gradient.

float64 throughout.  Actors ask for fractions of a CPU so that three fit the
session's 2-CPU Ray.  Two groups (N = 2 and N = 3) are started once and loaded
with several cells, because an actor's start-up (importing torch and its
optimizer machinery) costs seconds.
"""

from __future__ import annotations

import math
import os
import time

import pytest
import torch
from helpers import rel_err, wait_cpus_free

from rnnbench.core import strategies
from rnnbench.harness import group as tp
from rnnbench.harness import training
from rnnbench.job.cell import Cell
from rnnbench.results.rows import ROW_KEYS

# its module fixture is costly: one process runs the whole module (make test: loadgroup)
pytestmark = pytest.mark.xdist_group("groups")


CPUS = 0.5  # per actor: 3 actors on the 2-CPU test Ray

JORDAN = dict(
    model="jordan",
    strategy="teacher_forcing",
    task="delayed_recall",
    task_options={"symbols": 4},
    tau=11,
    batch=2,
    hidden=6,
    dtype="float64",
    lr=0.05,
    repeats=2,
)
ELMAN = dict(JORDAN, model="elman", strategy="bptt", batch=5)


@pytest.fixture(scope="module", autouse=True)
def _all_cpus_free(ray_session):
    """These tests count CPUs: wait until every CPU of the shared session is free (no
    module leaves a placement group behind: conftest checks)."""
    wait_cpus_free(ray_session, 60, "CPUs still held by earlier work")


def cell(workers, **over):
    base = dict(JORDAN)
    base.update(over)
    return Cell(workers=workers, **base)


# --------------------------------------------------------------------------- references


def reference(c: Cell, steps: int = 0):
    """Single process: the gradient at the initial parameters, and the parameters
    after ``steps`` Adam steps on the summed loss."""
    task, x, y = training.cell_batch(c)
    model = training.initial_model(c, task.n_in, task.n_out)
    opts = dict(c.strategy_options)
    strategies.loss(model, x, y, c.strategy, **opts).backward()
    grad = {n: p.grad.clone() for n, p in model.named_parameters()}
    opt = torch.optim.Adam(model.parameters(), lr=c.lr)
    for _ in range(steps):
        opt.zero_grad()
        strategies.loss(model, x, y, c.strategy, **opts).backward()
        opt.step()
    return grad, {n: p.detach().clone() for n, p in model.named_parameters()}


# --------------------------------------------------------------------------- pure helpers


def test_partition_is_contiguous_and_covers():
    for n, parts in [(11, 3), (10, 2), (2, 3), (65536, 7)]:
        ranges = strategies.partition(n, parts)
        assert len(ranges) == parts
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        sizes = [e - s for s, e in ranges]
        assert max(sizes) - min(sizes) <= 1


def test_split_kind_and_idle_workers():
    assert tp.split_kind(cell(2)) == "time"
    assert tp.split_kind(cell(2, model="elman", strategy="bptt")) == "batch"
    assert tp.split_kind(cell(2, model="elman", strategy="bptt_fused")) == "batch"
    for name in ("scan_bptt", "deer", "quasi_deer"):
        assert tp.split_kind(cell(2, model="elman", strategy=name)) == "time"
    assert tp.active_workers(cell(4, model="elman", strategy="bptt", batch=1)) == 1
    assert tp.active_workers(cell(4)) == 4


def test_time_shards_sum_to_the_whole_loss():
    """No Ray: the slices' losses with their prepended y^(s-1) add up to L."""
    c = cell(3)
    task, x, y = training.cell_batch(c)
    model = training.initial_model(c, task.n_in, task.n_out)
    whole = strategies.loss(model, x, y, "teacher_forcing")
    parts = [sum(tp.local_losses(model, c, tp.shard(c, x, y, r))) for r in range(3)]
    assert [tp.shard(c, x, y, r).end - tp.shard(c, x, y, r).start for r in range(3)] == [3, 4, 4]
    assert math.isclose(float(sum(parts).detach()), float(whole.detach()), rel_tol=1e-13)


# --------------------------------------------------------------------------- Ray groups


CASES = {
    "jordan_tf": {},
    "jordan_tf_chunk": {"strategy_options": {"chunk": 2}},
    "elman_bptt": {"model": "elman", "strategy": "bptt", "batch": 5},
    "elman_fused": {"model": "elman", "strategy": "bptt_fused", "batch": 5},
    # split along time: the shards exchange their scans' summaries
    "elman_scan_bptt": {"model": "elman", "strategy": "scan_bptt"},
    "elman_deer": {"model": "elman", "strategy": "deer"},
    "elman_quasi_deer": {"model": "elman", "strategy": "quasi_deer"},
    "single_deer": {
        "model": "single_output",
        "strategy": "deer",
        "task": "sequence_parity",
        "task_options": {},
    },
}


@pytest.fixture(scope="class", params=[2, 3], ids=["N2", "N3"])
def group(request, ray_session):
    """One group per N, reloaded with each case; torn down at the end of the class,
    so the run_cell tests below get the CPUs back."""
    # no cell time-out: it would be one deadline for the whole class (DIST_TIMEOUT_S
    # still bounds a hung collective)
    with tp.Group(cell(request.param), cpus_per_worker=CPUS, timeout_s=None) as g:
        yield g


class TestGroup:
    @pytest.mark.parametrize("case", list(CASES))
    def test_allreduced_gradient_equals_single_process(self, group, case):
        c = cell(group.cell.workers, **CASES[case])
        group.load(c)
        want, _ = reference(c)
        grads = group.gradients()
        assert len(grads) == c.workers
        for g in grads:  # every replica holds the same summed gradient
            assert rel_err(g, want) < 1e-10

    @pytest.mark.parametrize("case", ["jordan_tf", "elman_bptt", "elman_deer"])
    def test_parameters_after_k_steps_equal_single_process(self, group, case):
        k = 4
        c = cell(group.cell.workers, **CASES[case])
        group.load(c)
        _, want = reference(c, steps=k)
        records = group.steps(k)
        assert len(records) == c.workers and all(len(r) == k for r in records)
        params = group.parameters()
        for p in params:
            assert rel_err(p, want) < 1e-10
            assert all(torch.equal(p[n], params[0][n]) for n in p)  # replicas stay identical
        # the loss piggy-backed on the all-reduce is the whole sequence's loss
        task, x, y = training.cell_batch(c)
        first = strategies.loss(training.initial_model(c, task.n_in, task.n_out), x, y, c.strategy)
        assert math.isclose(records[0][0]["loss"], float(first.detach()), rel_tol=1e-12)


# --------------------------------------------------------------------------- run_cell


def _gone(pid: int) -> bool:
    """The process has exited: no /proc entry, or a zombie with no thread left
    running (a leader shows Z while its other threads still run and hold its fds)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            zombie = any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
        return zombie and len(os.listdir(f"/proc/{pid}/task")) <= 1
    except FileNotFoundError:
        return True


def _listening_sockets(port: int) -> set[int]:
    """Inodes of the sockets on this machine that listen on ``port`` (/proc/net/tcp*).

    A socket, not a port, is what a leak would keep: once the store closes, the
    kernel may hand its port to another process (Ray's workers bind kernel-chosen
    ports too - it did, in CI) or to an outgoing connection."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for fields in map(str.split, lines):
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(int(fields[9]))
    return inodes


def watched(probe: dict) -> type:
    """A Group that notes in ``probe``, once it is up, what must be gone after
    ``run_cell``: the workers' pids, rank 0's store (its address and the socket
    listening on its port) and the placement group."""

    class Watched(tp.Group):
        def open(self) -> None:
            super().open()
            probe.update(
                pids=self.pids,
                address=self.address,
                placement_group=self.pg.id.hex(),
                store_sockets=_listening_sockets(self.address[1]),
            )

    return Watched


def killing(probe: dict, rank: int) -> type:
    """A watched Group whose rank ``rank`` process is killed (``ray.kill``) as soon as
    the timed steps are sent: the other ranks wait for it in the all-reduce."""

    class Killing(watched(probe)):
        def steps(self, n: int, optimize: bool = True) -> list[list[dict]]:
            import ray

            refs = [a.steps.remote(n, optimize) for a in self.actors]
            ray.kill(self.actors[rank], no_restart=True)
            return self._all(refs)

    return Killing


def assert_nothing_left(ray, probe: dict) -> None:
    from ray.util.placement_group import placement_group_table

    # run_cell kills the actors; Ray ends their processes moments later
    assert probe["store_sockets"], "no socket listened on the store's port while the cell ran"
    deadline = time.monotonic() + 30
    while True:
        pids_gone = all(_gone(pid) for pid in probe["pids"])
        cpus_back = ray.available_resources().get("CPU", 0) == ray.cluster_resources()["CPU"]
        store_open = probe["store_sockets"] & _listening_sockets(probe["address"][1])
        if (pids_gone and cpus_back and not store_open) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert pids_gone, "a worker process outlived run_cell by 30 s"
    assert cpus_back, ray.available_resources()
    assert placement_group_table()[probe["placement_group"]]["state"] == "REMOVED"
    assert not store_open, "the store's socket still listens 30 s after run_cell"
    assert os.getpid() not in probe["pids"]


def test_socket_check_sees_a_listening_socket_until_it_closes():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        inode = os.fstat(s.fileno()).st_ino
        assert _listening_sockets(port) == {inode}
    assert inode not in _listening_sockets(port)


def test_run_cell_row_and_nothing_left(ray_session):
    """Elman BPTT at batch 1 on 2 workers: an ok row, split 'batch', one idle worker."""
    c = cell(2, model="elman", strategy="bptt", batch=1, repeats=3, train_steps=2)
    probe = {}
    row = tp.run_cell(c, cpus_per_worker=CPUS, group=watched(probe))
    assert row["status"] == "ok", row["error"]
    assert set(ROW_KEYS) <= set(row)
    assert row["split"] == "batch" and row["workers"] == 2 and row["workers_active"] == 1
    assert row["error"].startswith("note: 1 of 2 workers idle")
    assert len(row["step_ms_samples"]) == 3
    assert row["step_ms_median"] > 0 and row["comm_ms_median"] > 0
    assert row["step_ms_median"] >= row["comm_ms_median"]
    # trained on fresh batches, evaluated held-out by training.evaluate, like a 1-worker row
    assert [p[0] for p in row["train_curve"]] == [1, 2]
    assert all(math.isfinite(row[k]) for k in ("loss_tf", "loss_free", "acc_tf", "acc_free"))
    assert len(probe["pids"]) == 2
    assert_nothing_left(ray_session, probe)


def test_a_worker_killed_while_stepping_gives_crashed_row(ray_session):
    c = cell(2, repeats=3)
    probe = {}
    row = tp.run_cell(c, cpus_per_worker=CPUS, group=killing(probe, 1))
    assert row["status"] == "crashed"
    assert "rank 1 died" in row["error"], row["error"]
    assert row["split"] == "time" and math.isnan(row["step_ms_median"])
    assert_nothing_left(ray_session, probe)


def test_time_out_gives_timeout_row_and_frees_the_cpus(ray_session):
    row = tp.run_cell(cell(2), cpus_per_worker=CPUS, timeout_s=0.5)
    assert row["status"] == "timeout" and "time-out" in row["error"], row["error"]
    assert row["wall_s"] >= 0.5  # it waited its time (pg.wait(0.5) would not wait at all)
    wait_cpus_free(ray_session, 30, "CPUs not back after the time-out")


def test_removing_a_group_as_it_is_placed_gives_its_cpus_back(ray_session):
    """remove_group right after placement_group(), many times: every CPU comes back.
    (Ray 2.60's own remove_placement_group at that moment leaks the group's CPUs
    now and then -- ray-project/ray#64693 -- which failed this module's later tests.)"""
    from ray.util.placement_group import placement_group

    for i in range(100):
        pg = placement_group([{"CPU": CPUS}, {"CPU": CPUS}], strategy="PACK")
        tp.remove_group(pg)
        wait_cpus_free(ray_session, 10, f"try {i}: CPUs not back")


def test_force_cancelled_cell_is_released(ray_session):
    """The sweep's time-out path: the task running a time-parallel cell is killed.
    Its actors die with it; its placement group does not (Ray keeps a placement
    group until the job ends), so the sweep calls release(cell)."""
    ray = ray_session
    c = cell(2, tau=4096, repeats=100_000)  # runs until cancelled
    task = ray.remote(num_cpus=0, max_retries=0)(tp.run_cell)
    ref = task.remote(c, cpus_per_worker=1)
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) > 0:  # the group holds both CPUs
        assert time.monotonic() < deadline, "the group was never placed"
        time.sleep(0.2)
    ray.cancel(ref, force=True)
    with pytest.raises(ray.exceptions.RayError):
        ray.get(ref, timeout=30)
    assert tp.release(c) is True
    assert tp.release(c) is False  # already gone
    wait_cpus_free(ray, 30, "CPUs not back after release")
    with pytest.raises(ValueError):  # no live placement group has the cell's name
        ray.util.get_placement_group(tp.pg_name(c))


def test_time_split_deer_row_reports_its_iterations(ray_session):
    """deer over 2 workers: a 'time' row with the iterations, convergence and residual
    of one process at the initial parameters (the ranks agree through their
    all-reduce), and the measured depth; spectral radius 3 with max_iter 2 gives
    converged false, not a crash.  (One cell: each starts its actors, seconds.)"""
    from rnnbench.pit import diagnostics

    options = {"max_iter": 2}
    c = cell(
        2, model="elman", strategy="deer", repeats=2, rho=3.0, tau=16, strategy_options=options
    )
    task, x, y = training.cell_batch(c)
    with diagnostics.recording() as rec:
        strategies.loss(training.initial_model(c, task.n_in, task.n_out), x, y, "deer", **options)
    row = tp.run_cell(c, cpus_per_worker=CPUS)
    assert row["status"] == "ok", row["error"]
    assert row["split"] == "time" and row["workers_active"] == 2
    assert (row["iterations"], row["converged"]) == (2, False) == (rec.iterations, rec.converged)
    assert row["residual"] == pytest.approx(rec.residual, rel=1e-9)
    assert row["depth"] == 2 * 7  # iterations x scan_depth(16)


def test_one_worker_in_the_group_harness_is_a_baseline_row(ray_session):
    """harness='group' times a 1-worker cell exactly like the N-worker cells."""
    from rnnbench.harness import runner

    c = cell(1, model="jordan", strategy="teacher_forcing", repeats=3, harness="group")
    row = runner.run_cell(c)
    assert row["status"] == "ok", row["error"]
    assert row["split"] == "time" and row["workers"] == 1 and row["workers_active"] == 1
    assert row["harness"] == "group" and row["step_ms_median"] > 0
