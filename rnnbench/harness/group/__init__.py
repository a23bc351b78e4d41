"""The worker-group harness: one cell trained across Ray workers (docs/design.md, "Harnesses").

A cell with ``workers = N`` runs as one group of N Ray actors, reserved together
in one placement group (all or nothing), joined with ``torch.distributed``
(gloo on CPU, NCCL on CUDA).  Every actor holds a replica of the model and a
shard of the cell's one batch, cut as the strategy's record says (``split``):

- ``time`` (teacher forcing): N contiguous time slices.  A slice needs nothing
  from its neighbours but y^(s-1), which is data, so each worker computes its
  slice's loss and gradient alone (:func:`rnnbench.core.strategies.teacher_forcing_slice`);
  ``time`` (Elman with ``scan_bptt``, ``deer``, ``quasi_deer``): each worker scans
  its slice and the workers all-gather one summary per scan
  (:mod:`rnnbench.pit.distributed`); every worker needs at least one step;
- ``batch`` (every other strategy: the hidden-to-hidden recurrence cannot be
  cut along time): with fewer sequences than workers the extra workers idle
  (an empty shard; they only join the all-reduce) and the row's ``error``
  carries a ``note:`` saying how many (status stays ``ok``).

Each step: local loss (forward), backward, one all-reduce (SUM) of the
flattened gradients with the loss piggy-backed, the same Adam step on every
replica: the single-process gradient of the summed loss (tested to 1e-10 in
float64).  Rendezvous is race-free: rank 0 opens a ``TCPStore`` on port 0 and
keeps the kernel-chosen port bound; the others connect to it.

Timing is done inside the workers (``torch.utils.benchmark`` cannot line up
the N ranks' steps): per step the slowest rank's time counts, then a
``benchmark.Measurement`` over ``repeats`` steps after ``WARMUP``.
``comm_ms_median``: per step the *smallest* time any rank spent in the
all-reduce (the last rank to arrive waits only for the transfer itself).
``minor_faults_per_step``: the ranks' minor page faults per timed step,
summed over the ranks; ``peak_rss_bytes``: the largest rank's peak RSS over
the steps (:mod:`rnnbench.harness.procstat`).

With a ``baseline`` (e.g. ``{workers: 1}``) its group is started beside the
cell's, each actor asking for a share of the CPUs so both fit where the larger
one would; both warm up, then they take turns one step at a time
(:func:`rnnbench.harness.paired.alternate`, A B B A ...), every rank moved to the next
CPUs between pairs.  A teacher-forcing baseline with fewer workers runs in
chunks of the workers' slice (:func:`fair_baseline`).

Whatever happens, every actor is killed and the placement group removed
before :func:`run_cell` returns.  If the process running it is killed (the
sweep force-cancels a timed-out cell), Ray keeps the placement group until the
job ends: :func:`release` removes it (it is named after the cell).  Every
removal goes through :func:`remove_group` (Ray 2.60 leaks the CPUs of a group
removed while it is being placed).  On CUDA each worker takes one GPU (written,
not tested here); the trained replica is evaluated on the caller's CPU.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import socket
import time
from typing import Sequence

import torch

from rnnbench.harness import allocator, paired, procstat, training
from rnnbench.pit import diagnostics
from rnnbench.core import strategies
from rnnbench.job.cell import BEST_BPTT, Cell
from rnnbench.errors import UsageError
from rnnbench.results.rows import NonFiniteLoss, WorkerDied, base_row, fail
from rnnbench.pit.distributed import DistComm
from rnnbench.harness.training import WARMUP, cell_batch, initial_model

PLACE_TIMEOUT_S = 600.0  # how long to wait for the placement group to be placed
DIST_TIMEOUT_S = 300.0  # torch.distributed timeout (rendezvous and collectives)

# --------------------------------------------------------------------------- work split


def split_kind(cell: Cell) -> str:
    """How the cell's strategy is shared out: ``time`` slices or ``batch`` shards."""
    return strategies.get(cell.strategy).split


def shard(cell: Cell, x: torch.Tensor, y: torch.Tensor, rank: int) -> dict:
    """Rank ``rank``'s share of the batch (x, y): the tensors it needs and what to compute.

    Time split: steps [s, e), sent as x[lo:e], y[lo:e] with lo = max(s - 1, 0)
    (one step of overlap for y^(s-1)); ``start``/``end`` are local indices.
    Batch split: the sequences [b0, b1).
    """
    kind = split_kind(cell)
    if kind == "time":
        s, e = strategies.partition(x.shape[0], cell.workers)[rank]
        if e == s and cell.strategy in strategies.TIME_SPLIT_METHODS:
            raise UsageError(f"workers: {cell.strategy} split along time needs tau >= workers, "
                             f"got tau {x.shape[0]} over {cell.workers} workers")
        lo = max(s - 1, 0)
        # SingleOutput's y is one target per sequence: every slice gets all of it
        return {"kind": kind, "x": x[lo:e].clone(), "rank": rank,
                "y": (y if y.dim() == 1 else y[lo:e]).clone(),
                "start": s - lo, "end": e - lo, "empty": e == s}
    b0, b1 = strategies.partition(x.shape[1], cell.workers)[rank]
    return {"kind": kind, "x": x[:, b0:b1].clone(), "y": y[..., b0:b1].clone(), "rank": rank,
            "start": 0, "end": x.shape[0], "empty": b1 == b0}


def active_workers(cell: Cell) -> int:
    """How many of the cell's workers get a non-empty shard."""
    n = cell.tau if split_kind(cell) == "time" else cell.batch
    return min(n, cell.workers)


def local_losses(model, cell: Cell, part: dict, step: int | None = None):
    """Yield the loss pieces of one shard; backward each piece as it comes.

    Teacher forcing with a ``chunk`` option gives one piece per chunk (memory
    O(chunk)); otherwise one piece.  ``step`` is the training step, for
    scheduled sampling's schedule (:func:`rnnbench.harness.training.strategy_options`).
    """
    options = training.strategy_options(cell, step, part.get("rank", 0))
    if part["kind"] == "time" and cell.strategy in strategies.TIME_SPLIT_METHODS:
        s, e, y = part["start"], part["end"], part["y"]
        yield strategies.elman_time_shard(model, part["x"][s:e], y if y.dim() == 1 else y[s:e],
                                          cell.strategy, DistComm(), **options)
    elif part["kind"] == "time":
        chunk = options.get("chunk") or (part["end"] - part["start"])
        for s in range(part["start"], part["end"], chunk):
            yield strategies.teacher_forcing_slice(
                model, part["x"], part["y"], s, min(s + chunk, part["end"]))
    else:
        yield strategies.loss(model, part["x"], part["y"], cell.strategy, **options)


# --------------------------------------------------------------------------- the worker


class Worker:
    """One rank: a model replica, its shard, an Adam optimizer and the process group.

    Used as a Ray actor (``ray.remote(Worker)``); methods run one at a time.
    """

    def __init__(self, rank: int, world: int, threads: int, device: str):
        self.rank, self.world, self.device = rank, world, device
        self._now = training.clock(device)
        self.threads = threads
        torch.set_num_threads(threads)
        allocator.steady()  # the same allocator conditions as a one-process cell
        self.affinity = paired.Affinity()
        self.rss_method = procstat.MAXRSS
        self.store = None
        self.model = self.opt = self.part = None

    # -- rendezvous ---------------------------------------------------------
    def info(self) -> dict:
        import ray

        return {"rank": self.rank, "pid": os.getpid(), "host": socket.gethostname(),
                "ip": ray.util.get_node_ip_address(), "threads": torch.get_num_threads()}

    def open_store(self, timeout_s: float) -> tuple[str, int]:
        """Rank 0: bind a TCPStore on a kernel-chosen free port and hold it.

        It listens on the node's address only (127.0.0.1 on an embedded Ray),
        not on every interface as a TCPStore given just a port does: the socket
        is bound here and handed over (``master_listen_fd``)."""
        import ray
        import torch.distributed as dist

        assert self.rank == 0
        host = ray.util.get_node_ip_address()
        family = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0][0]
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.bind((host, 0))
        port = listener.getsockname()[1]
        self.store = dist.TCPStore(host, port, world_size=self.world, is_master=True,
                                   wait_for_workers=False,
                                   timeout=datetime.timedelta(seconds=timeout_s),
                                   master_listen_fd=listener.detach())  # the store owns it
        return host, self.store.port

    def join(self, host: str, port: int, timeout_s: float) -> int:
        """Join the process group through rank 0's store; returns the rank."""
        import torch.distributed as dist

        timeout = datetime.timedelta(seconds=timeout_s)
        if self.store is None:
            self.store = dist.TCPStore(host, port, world_size=self.world, is_master=False,
                                       timeout=timeout)
        if self.device == "cuda":
            torch.cuda.set_device(0)  # Ray shows each actor only its own GPU
        backend = "nccl" if self.device == "cuda" else "gloo"
        dist.init_process_group(backend, store=self.store, rank=self.rank,
                                world_size=self.world, timeout=timeout)
        return self.rank

    # -- model and data -----------------------------------------------------
    def setup(self, cell: Cell, state: dict, part: dict) -> None:
        torch.set_num_threads(self.threads)  # Ray may reuse processes: set it every time
        self.cell = cell
        self.model = initial_model(cell, state["U"].shape[1], state["V"].shape[0], self.device)
        self.set_part(part)
        self.params = list(self.model.parameters())
        self.numel = [p.numel() for p in self.params]
        self.reset(state)

    def set_part(self, part: dict) -> None:
        """A new shard (training uses a fresh batch every step)."""
        dev = torch.device(self.device)
        self.part = {k: (v.to(dev) if isinstance(v, torch.Tensor) else v)
                     for k, v in part.items()}

    def reset(self, state: dict) -> None:
        """Parameters back to ``state``, a fresh Adam."""
        with torch.no_grad():
            self.model.load_state_dict(state)
        self.opt = torch.optim.Adam(self.params, lr=self.cell.lr)

    def parameters(self) -> dict:
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    # -- one step -----------------------------------------------------------
    def pin(self, offset: int) -> None:
        """Every thread of this process onto ``threads`` of the CPUs it may use,
        from position ``threads * rank + offset`` (a no-op where the OS says no)."""
        allowed = self.affinity.allowed
        if allowed:
            self.affinity.pin(paired.cpu_window(allowed, self.threads,
                                                self.threads * self.rank + offset))

    def unpin(self) -> None:
        self.affinity.restore()

    def reset_peak(self) -> None:
        """Start a new peak-RSS stretch (:mod:`rnnbench.harness.procstat`)."""
        self.rss_method = procstat.reset_peak_rss()

    def peak(self) -> tuple[int, str]:
        """This process's peak RSS (bytes) since :meth:`reset_peak`, and how it was read."""
        return procstat.peak_rss(self.rss_method), self.rss_method

    def _step(self, optimize: bool, step: int | None = None) -> dict:
        import torch.distributed as dist

        f0 = procstat.minor_faults()
        t0 = self._now()
        for p in self.params:
            p.grad = None
        fwd = bwd = 0.0
        total = torch.zeros((), dtype=self.params[0].dtype, device=self.params[0].device)
        if not self.part["empty"]:
            for piece in local_losses(self.model, self.cell, self.part, step):
                t1 = self._now()
                fwd += t1 - t0
                piece.backward()
                t0 = self._now()
                bwd += t0 - t1
                total += piece.detach()
        t2 = self._now()
        flat = torch.cat([total.reshape(1)] + [
            p.grad.reshape(-1) if p.grad is not None else torch.zeros_like(p).reshape(-1)
            for p in self.params])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        t3 = self._now()
        for p, g in zip(self.params, flat[1:].split(self.numel)):
            p.grad = g.view_as(p)
        if optimize:
            self.opt.step()
        t4 = self._now()
        return {"fwd": fwd, "bwd": bwd, "comm": t3 - t2, "step": fwd + bwd + (t4 - t2),
                "loss": float(flat[0]), "faults": procstat.minor_faults() - f0}

    def _reported_step(self, optimize: bool) -> dict:
        """:meth:`_step` with what an iterative strategy reported (diagnostics.FIELDS)."""
        with diagnostics.recording() as rec:
            record = self._step(optimize)
        return {**record, **rec.fields()}

    def steps(self, n: int, optimize: bool = True) -> list[dict]:
        """``n`` training steps; each entry has seconds (fwd, bwd, comm, step), the loss
        and the strategy's report (iterations, converged, residual; None if none)."""
        torch.set_num_threads(self.threads)
        return [self._reported_step(optimize) for _ in range(n)]

    def train_step(self, part: dict, step: int) -> float:
        """One training step on a new shard; the whole batch's summed loss."""
        self.set_part(part)
        return self._step(True, step=step)["loss"]

    def gradient(self) -> dict:
        """One forward/backward/all-reduce, no optimizer step: the summed gradient."""
        self._step(optimize=False)
        return {name: p.grad.detach().cpu().clone() for name, p in self.model.named_parameters()}

    def close(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
        self.store = None


# --------------------------------------------------------------------------- the group


def _ray():
    import ray

    if not ray.is_initialized():  # "local": never attach to a head `ray start` left behind
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False)
    return ray


def pg_name(cell: Cell, role: str = "") -> str:
    """The placement group's name: one per cell and role ("" for the cell's own
    group, "baseline" for its baseline's), per Ray job namespace."""
    return f"rnnbench-timeparallel-{cell.cell_id}" + (f"-{role}" if role else "")


SETTLE_S = 10.0  # longest wait for an in-flight placement to settle before removing it


def remove_group(pg, settle_s: float = SETTLE_S) -> None:
    """Remove placement group ``pg`` -- never while Ray is still placing it.

    Ray 2.60 leaks the CPUs of a placement group removed while its bundles are
    being prepared on the raylets: the group reads REMOVED, its CPUs never come
    back (ray-project/ray#64693, still open; measured here: an immediate
    remove after ``placement_group()`` leaked on the 17th try of 600, the
    policy below on none of 600).  So removal waits, at most ``settle_s``,
    until the group is either placed (CREATED) or parked by the scheduler for
    want of resources (NO_RESOURCES / INFEASIBLE); both are safe to remove.
    "Parked" must read so on two looks 0.1 s apart: the scheduling state is a
    statistic, and a group Ray has just started placing again may still show it.
    """
    import ray
    from ray.util.placement_group import placement_group_table, remove_placement_group

    deadline = time.monotonic() + settle_s
    parked_before = False
    while True:
        entry = placement_group_table(pg)
        state = entry.get("state")
        if state == "REMOVED":
            return
        parked = entry.get("stats", {}).get("scheduling_state") in ("NO_RESOURCES", "INFEASIBLE")
        if state == "CREATED" or (parked and parked_before) or time.monotonic() >= deadline:
            break
        parked_before = parked
        ray.wait([pg.ready()], timeout=0.1)
    remove_placement_group(pg)


def release(cell: Cell) -> bool:
    """Remove the cell's placement group if one is still there; True if one was.

    A placement group outlives the task or actor that created it (until the
    job ends).  When the sweep force-cancels a time-parallel cell (time-out),
    the cell's actors die with their owner, but its placement group keeps the
    CPUs: the sweep calls ``release(cell)`` after cancelling.  ``run_cell``
    also calls it before placing, so a retry never waits on its predecessor.
    """
    import ray
    from ray.util.placement_group import placement_group_table

    if not ray.is_initialized():
        return False
    found = False
    for role in ("", "baseline"):
        try:
            pg = ray.util.get_placement_group(pg_name(cell, role))
        except ValueError:  # no such placement group
            continue
        if placement_group_table(pg).get("state") == "REMOVED":
            continue
        remove_group(pg)
        found = True
    return found


class Group:
    """N Worker actors in one placement group, joined by torch.distributed.

    ``with Group(cell) as g: g.steps(5)`` -- on exit (or :meth:`close`) every
    actor is killed and the placement group removed, whatever happened.

    ``cpus_per_worker`` is the CPU request of each actor (default: the cell's
    threads; tests ask for fractions to fit N actors on 2 CPUs); ``worker`` the
    class each actor runs (:class:`Worker` or a subclass of it).
    """

    def __init__(self, cell: Cell, cpus_per_worker: float | None = None,
                 place_timeout_s: float = PLACE_TIMEOUT_S,
                 dist_timeout_s: float = DIST_TIMEOUT_S, timeout_s: float | None = None,
                 worker: type = Worker, role: str = ""):
        self.cell = cell
        self.worker = worker
        self.role = role  # "" for the cell's own group, "baseline" for its baseline's
        self.cpus = float(cell.n_threads if cpus_per_worker is None else cpus_per_worker)
        self.place_timeout_s = place_timeout_s
        self.dist_timeout_s = dist_timeout_s
        self.timeout_s = timeout_s  # for everything from open() on; None: no limit
        self.deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self.actors: list = []
        self.pg = None
        self.infos: list[dict] = []
        self.address: tuple[str, int] | None = None
        self.n_in = self.n_out = None

    # -- lifecycle ----------------------------------------------------------
    def __enter__(self) -> "Group":
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        ray = _ray()
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        cell, n = self.cell, self.cell.workers
        bundle = {"CPU": self.cpus}
        if cell.device == "cuda":
            bundle["GPU"] = 1
        total = ray.cluster_resources()
        for key, need in bundle.items():
            if need * n > total.get(key, 0) + 1e-9:
                raise UsageError(
                    f"workers: {n} workers x {need:g} {key} need {need * n:g} {key}; "
                    f"the Ray cluster has {total.get(key, 0):g}")
        if not self.role:
            release(cell)  # a leftover of this cell's earlier, force-cancelled run
        self.pg = placement_group([dict(bundle) for _ in range(n)], strategy="PACK",
                                  name=pg_name(cell, self.role))
        wait_s = self.place_timeout_s if self.deadline is None else \
            min(self.place_timeout_s, max(0.0, self.deadline - time.monotonic()))
        # not pg.wait(): it takes whole seconds (0.5 s becomes no wait at all)
        ready, _ = ray.wait([self.pg.ready()], timeout=wait_s)
        if not ready:
            if wait_s < self.place_timeout_s:  # the cell's deadline came first
                from ray.exceptions import GetTimeoutError

                raise GetTimeoutError(f"time-out after {self.timeout_s:g} s waiting for "
                                      f"{n} x {bundle} (placement group)")
            raise TimeoutError(
                f"placement group of {n} x {bundle} not placed within "
                f"{self.place_timeout_s:g} s (available now: {ray.available_resources()})")
        actor_cls = ray.remote(self.worker)
        for rank in range(n):
            self.actors.append(actor_cls.options(
                num_cpus=self.cpus, num_gpus=bundle.get("GPU", 0), max_restarts=0,
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    placement_group=self.pg, placement_group_bundle_index=rank),
            ).remote(rank, n, cell.n_threads, cell.device))
        self.infos = self._all([a.info.remote() for a in self.actors])
        # Rendezvous: rank 0 holds the port from bind to init (no race), then all join.
        self.address = self._all([self.actors[0].open_store.remote(self.dist_timeout_s)])[0]
        self._all([a.join.remote(*self.address, self.dist_timeout_s) for a in self.actors])
        self.load(cell)

    def load(self, cell: Cell) -> None:
        """Give every rank ``cell``'s model and its shard of ``cell``'s batch.

        The group can be re-loaded with another cell of the same workers,
        threads and device (tests do, to pay the actors' start-up once).
        """
        import ray

        for key in ("workers", "threads", "device"):
            if getattr(cell, key) != getattr(self.cell, key):
                raise UsageError(f"{key}: the group was started with {getattr(self.cell, key)}, "
                                 f"the cell asks for {getattr(cell, key)}")
        self.cell = cell
        # One batch, one initial model, made here once: every rank gets its shard.
        task, x, y = cell_batch(cell)
        self.n_in, self.n_out = task.n_in, task.n_out
        self.state = initial_model(cell, task.n_in, task.n_out).state_dict()
        state_ref = ray.put(self.state)
        self._all([a.setup.remote(cell, state_ref, shard(cell, x, y, rank))
                   for rank, a in enumerate(self.actors)])

    def close(self) -> None:
        """Kill every actor, remove the placement group.  Safe to call twice."""
        if not self.actors and self.pg is None:
            return
        import ray
        if self.actors:
            # Graceful first (destroy the process group), bounded; then kill regardless.
            refs = [a.close.remote() for a in self.actors]
            try:
                ray.wait(refs, num_returns=len(refs), timeout=5.0)
            except Exception:  # noqa: BLE001 -- dead actors are killed below anyway
                pass
            for a in self.actors:
                try:
                    ray.kill(a, no_restart=True)
                except Exception:  # noqa: BLE001
                    pass
            self.actors = []
        if self.pg is not None:
            try:
                remove_group(self.pg)
            except Exception:  # noqa: BLE001
                pass
            self.pg = None

    # -- calls on every rank ------------------------------------------------
    def _all(self, refs: Sequence) -> list:
        """ray.get that fails fast: the first dead worker raises WorkerDied at once,
        instead of waiting for ranks stuck in a collective with it."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        rank_of = {ref: i for i, ref in enumerate(refs)}
        pending = list(refs)
        while pending:
            left = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
            ready, pending = ray.wait(pending, num_returns=1, timeout=left)
            if not ready:
                raise GetTimeoutError(f"time-out: the cell ran past {self.timeout_s:g} s")
            try:
                ray.get(ready[0])
            except RayActorError as err:
                raise WorkerDied(f"worker rank {rank_of[ready[0]]} died: "
                                 f"{str(err).splitlines()[0]}") from err
            except Exception:
                # A rank failed: if it failed because a peer died (gloo: connection
                # closed), report the death, not its echo.
                done, _ = ray.wait(pending, num_returns=len(pending), timeout=10.0)
                for ref in done:
                    try:
                        ray.get(ref)
                    except RayActorError as err:
                        raise WorkerDied(f"worker rank {rank_of[ref]} died: "
                                         f"{str(err).splitlines()[0]}") from err
                    except Exception:  # noqa: BLE001 -- the first error is re-raised
                        pass
                raise
        return ray.get(list(refs))

    def steps(self, n: int, optimize: bool = True) -> list[list[dict]]:
        """``n`` steps on every rank; per rank the list of per-step records."""
        return self._all([a.steps.remote(n, optimize) for a in self.actors])

    def pin(self, offset: int) -> None:
        """Rank r's threads onto CPUs from position ``threads * r + offset``."""
        self._all([a.pin.remote(offset) for a in self.actors])

    def unpin(self) -> None:
        self._all([a.unpin.remote() for a in self.actors])

    def reset_peak(self) -> None:
        self._all([a.reset_peak.remote() for a in self.actors])

    def peak(self) -> tuple[int, str]:
        """The largest peak RSS of any rank since :meth:`reset_peak`, and the method."""
        peaks = self._all([a.peak.remote() for a in self.actors])
        return max(p[0] for p in peaks), peaks[0][1]

    def gradients(self) -> list[dict]:
        """Every rank's all-reduced gradient after one forward/backward (no update)."""
        return self._all([a.gradient.remote() for a in self.actors])

    def parameters(self) -> list[dict]:
        return self._all([a.parameters.remote() for a in self.actors])

    def reset(self) -> None:
        """Every replica back to the initial parameters, with a fresh optimizer."""
        import ray

        ref = ray.put(self.state)
        self._all([a.reset.remote(ref) for a in self.actors])

    def train(self) -> list[list]:
        """The cell's training (:func:`rnnbench.harness.training.train`): each Adam step on
        a fresh batch, shared out as the timed one; returns the curve."""
        import ray

        cell = self.cell

        def step(i: int) -> float:
            _, x, y = cell_batch(cell, training.train_seed(cell, i))
            return self._all([a.train_step.remote(ray.put(shard(cell, x, y, r)), i)
                              for r, a in enumerate(self.actors)])[0]

        return training.train(cell, step)

    @property
    def pids(self) -> list[int]:
        return [i["pid"] for i in self.infos]


# --------------------------------------------------------------------------- the row


def summarise(cell: Cell, per_rank: list[list[dict]], warmup: int = WARMUP) -> dict:
    """Row fields from every rank's per-step records (seconds): step, fwd and bwd as
    the slowest rank's per step, comm as the least-waiting rank's."""
    steps = list(zip(*per_rank))[warmup:]

    def stat(what: str, pick=max):
        return training.measurement([pick(r[what] for r in s) for s in steps], cell, what)

    faults = [sum(r.get("faults", 0) for r in s) for s in steps]
    return {**training.time_fields(stat("step"), stat("fwd"), stat("bwd")),
            "comm_ms_median": stat("comm", min).median * 1e3,
            "minor_faults_per_step": sum(faults) / len(faults) if faults else math.nan,
            **reported(per_rank)}


def reported(per_rank: list[list[dict]]) -> dict:
    """iterations, converged, residual of the first step (the initial parameters, as the
    one-process harness reports): the most iterations, converged only if every rank was,
    the largest residual (time-split ranks agree on all three)."""
    first = [steps[0] for steps in per_rank if steps and steps[0].get("iterations") is not None]
    if not first:
        return {name: None for name in diagnostics.FIELDS}
    return {"iterations": max(r["iterations"] for r in first),
            "converged": all(r["converged"] for r in first),
            "residual": max(r["residual"] for r in first)}


def idle_note(cell: Cell) -> str | None:
    """The row's note when some workers get nothing to do (status stays ok)."""
    active = active_workers(cell)
    if active == cell.workers:
        return None
    kind = split_kind(cell)
    what = "tau" if kind == "time" else "batch"
    why = "tau < workers" if kind == "time" else "BPTT cannot be split along time"
    return (f"note: {cell.workers - active} of {cell.workers} workers idle "
            f"({what} {getattr(cell, what)} split {kind}-wise; {why})")


def fair_baseline(cell: Cell, base: Cell) -> Cell:
    """The baseline under the allocator conditions of the cell's workers.

    Split along time over N workers, each worker's tensors are 1/N of the
    sequence; one process holding all of them can cross glibc's mmap threshold
    (blocks of 32 MiB or more are mapped fresh on every allocation and unmapped
    on free, so every step pays page faults the workers never see).  So a
    teacher-forcing baseline with fewer workers, given no strategy options of
    its own, runs in chunks of the workers' slice (``chunk = ceil(tau / N)``):
    the same arithmetic and gradient, the same tensor sizes per piece as a worker.
    """
    if (split_kind(cell) != "time" or split_kind(base) != "time"
            or base.workers >= cell.workers or "strategy_options" in dict(cell.baseline)
            or base.strategy_options):
        return base
    return dataclasses.replace(base, strategy_options={"chunk": -(-base.tau // cell.workers)})


def _check_finite(cell: Cell, records: list[list[dict]]) -> None:
    bad = [r["loss"] for r in records[0] if not math.isfinite(r["loss"])]
    if bad:
        raise NonFiniteLoss(f"non-finite loss {bad[0]} ({cell.strategy})")


def _alone(cell: Cell, g: "Group") -> dict:
    """The cell's steps alone (``WARMUP`` untimed, then ``repeats`` timed)."""
    g.reset_peak()
    records = g.steps(WARMUP + cell.repeats)
    _check_finite(cell, records)
    out = summarise(cell, records)
    out["peak_rss_bytes"], out["peak_rss_method"] = g.peak()
    return out


class BaselineFailed(RuntimeError):
    """The baseline's group failed while the pair was timed (the cell's did not)."""


def _paired(cell: Cell, a: "Group", b: "Group") -> dict:
    """Both groups up, taking turns: ``repeats`` pairs of one step each, A B B A ...,
    every rank's threads moved to the next CPUs between pairs."""
    from ray.exceptions import GetTimeoutError

    def steps(group: "Group", n: int) -> list[list[dict]]:
        if group is a:
            records = group.steps(n)
            _check_finite(group.cell, records)
            return records
        try:
            records = group.steps(n)
            _check_finite(group.cell, records)
            return records
        except GetTimeoutError:
            raise  # the cell's time-out, not the baseline's failure
        except Exception as err:  # noqa: BLE001 -- the baseline's failure is data
            raise BaselineFailed(f"{type(err).__name__}: {err}") from err

    steps(a, WARMUP)
    steps(b, WARMUP)
    a.reset_peak()
    per = {"a": [], "b": []}

    def block(group: "Group", side: str) -> float:
        records = steps(group, 1)
        per[side].append(records)
        return max(r[0]["step"] for r in records)

    try:
        result = paired.alternate(lambda k: block(a, "a"), lambda k: block(b, "b"),
                                  cell.repeats,
                                  before=lambda k, side: (a if side == "a" else b).pin(k))
    finally:
        for g in (a, b):
            try:
                g.unpin()
            except Exception:  # noqa: BLE001 -- a dead group is reported by the caller
                pass
    joined = {side: [sum((rec[r] for rec in per[side]), []) for r in range(len(per[side][0]))]
              for side in per}
    out = summarise(cell, joined["a"], 0)
    out["peak_rss_bytes"], out["peak_rss_method"] = a.peak()
    out.update(paired.row_fields(result))
    out["baseline_minor_faults_per_step"] = summarise(b.cell, joined["b"], 0)[
        "minor_faults_per_step"]
    return out


def run_cell(cell: Cell, *, timeout_s: float | None = None,
             cpus_per_worker: float | None = None, group: type = Group,
             worker: type = Worker) -> dict:
    """Run a cell as one group of ``cell.workers`` Ray actors; return its row.

    The row is :func:`rnnbench.results.rows.base_row` with the worker-group measures:
    ``split``, step/fwd/bwd times (inside the workers, slowest rank per step),
    ``comm_ms_median``, minor page faults per step and peak RSS, with a
    ``baseline`` the paired fields (the baseline's failure leaves
    ``baseline_error`` and the cell timed alone), and -- with ``train_steps`` --
    the training curve and the held-out loss and accuracy of the trained
    replica (:func:`rnnbench.harness.training.evaluate`).  Memory and FLOPs are
    per-process measures and stay NaN here (the one-worker row has them).

    Needs Ray: joins the running instance (driver or inside a Ray task), else
    starts an embedded one.  Failure is data (:func:`rnnbench.results.rows.status_of`:
    a dead worker gives ``crashed``, ``oom`` when Ray says it was memory);
    when this returns the actors are killed (Ray ends their processes moments
    later) and the placement groups are removed.  ``group`` and ``worker``: the
    classes used (a subclass may watch the group or inject a fault).
    """
    from contextlib import ExitStack

    from ray.exceptions import GetTimeoutError

    t0 = time.perf_counter()
    row = base_row(cell)
    row["split"] = split_kind(cell)
    row["workers_active"] = active_workers(cell)
    row["error"] = idle_note(cell)
    base = None
    if cell.baseline:
        if dict(cell.baseline).get("strategy") == BEST_BPTT:
            row["baseline_error"] = ("best_bptt: chosen by timing in one process; "
                                     "not offered beside a worker group")
        else:
            base = fair_baseline(cell, cell.baseline_cell())
            row["baseline_config"] = json.dumps(cell.changed(base), sort_keys=True)
    share = cpus_per_worker
    if base is not None and share is None:  # both groups fit where the larger one would
        share = max(cell.workers * cell.n_threads, base.workers * base.n_threads) \
            / (cell.workers + base.workers)
    try:
        with ExitStack() as stack:
            g = stack.enter_context(group(cell, cpus_per_worker=share, timeout_s=timeout_s,
                                          worker=worker))
            other = None
            if base is not None:
                try:
                    other = stack.enter_context(group(base, cpus_per_worker=share,
                                                      timeout_s=timeout_s, worker=worker,
                                                      role="baseline"))
                except GetTimeoutError:
                    raise
                except Exception as err:  # noqa: BLE001 -- the baseline's failure is data
                    row["baseline_error"] = f"{type(err).__name__}: {err}"[:2000]
            times = None
            if other is not None:
                try:
                    times = _paired(cell, g, other)
                except BaselineFailed as err:
                    row["baseline_error"] = str(err)[:2000]
                    other.close()
            row.update(times or _alone(cell, g))
            if row["iterations"] is not None:  # as the one-process harness: measured depth
                row["depth"] = strategies.get(cell.strategy).depth(
                    cell.tau, iterations=row["iterations"], **dict(cell.strategy_options))
            if cell.train_steps:
                g.reset()
                row["train_curve"] = g.train()
                model = initial_model(cell, row["n_in"], row["n_out"])
                model.load_state_dict(g.parameters()[0])
                row.update(training.evaluate(cell, model, cell.make_task()))
    except Exception as err:  # noqa: BLE001 -- failure is data
        fail(row, err)
    row["wall_s"] = time.perf_counter() - t0
    return row
