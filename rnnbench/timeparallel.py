"""Time-parallel training across Ray workers (DESIGN.md, "Time-parallel training").

A cell with ``workers = N`` runs as one group of N Ray actors, reserved together
in one placement group (all or nothing), joined with ``torch.distributed``
(gloo on CPU, NCCL on CUDA).  Every actor holds a replica of the model and a
shard of the cell's one batch:

- ``jordan`` + ``teacher_forcing`` -- ``split = "time"``: the sequence is cut
  into N contiguous time slices (uneven when N does not divide tau).  Under
  teacher forcing a slice needs nothing from its neighbours but y^(s-1), which
  is data, so each worker computes its slice's loss and gradient alone
  (:func:`rnnbench.strategies.teacher_forcing_slice`);
- every other model/strategy (Elman BPTT, fused BPTT, ...) -- ``split =
  "batch"``: the hidden-to-hidden recurrence cannot be cut along time, only the
  batch is shared out; with fewer sequences than workers the extra workers idle
  (they hold an empty shard and only join the all-reduce) and the row's
  ``error`` field carries a ``note:`` saying how many idled (status stays ``ok``).

Each training step: zero the gradients, local loss (forward), backward, one
all-reduce (SUM) of the flattened gradients with the loss piggy-backed, the
same Adam step on every replica.  The summed gradient equals the
single-process gradient of the summed loss (tests check it to 1e-10 in float64).

Rendezvous is race-free: rank 0 opens a ``TCPStore`` on port 0, so the kernel
picks a free port that rank 0 keeps bound; the real port goes to the others,
which connect to it, and all N call ``init_process_group(store=...)``.

Timing is done inside the workers with a (CUDA-synchronised) ``perf_counter``:
``torch.utils.benchmark`` times a statement in isolation and cannot line up the
N ranks' steps.  Per step the slowest rank's time counts (a step is done when
every rank is done), then median, IQR and the raw samples over ``repeats``
steps after ``WARMUP`` warm-up steps.  ``comm_ms_median``: per step the
*smallest* time any rank spent in the all-reduce -- the last rank to arrive
waits only for the transfer itself, the others also for the stragglers -- then
the median.

A worker that dies gives a ``crashed`` row; whatever happens, every actor is
killed and the placement group removed before :func:`run_cell` returns (the
store's port dies with rank 0's process).  If the process running
:func:`run_cell` is itself killed (the sweep force-cancels a timed-out cell),
the actors die with their owner but Ray keeps the placement group until the
job ends: :func:`release` removes it (the placement group is named after the
cell).  Every removal goes through :func:`remove_group`, which never removes a
group that Ray is still placing (Ray 2.60 leaks such a group's CPUs).

On CUDA each worker takes one GPU (NCCL; written, not tested here: no GPU on
the development machine); the trained replica is evaluated on the caller's CPU.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import socket
import statistics
import time
from typing import Sequence

import torch

from . import paired, procstat, strategies
from .cell import BEST_BPTT, Cell
from .errors import UsageError
from .models import build

WARMUP = 3  # untimed steps before the timed ones
PLACE_TIMEOUT_S = 600.0  # how long to wait for the placement group to be placed
DIST_TIMEOUT_S = 300.0  # torch.distributed timeout (rendezvous and collectives)

# --------------------------------------------------------------------------- work split


def split_kind(model: str, strategy: str) -> str:
    """``time`` for teacher-forced Jordan networks, ``batch`` for everything else."""
    return "time" if (model, strategy) == ("jordan", "teacher_forcing") else "batch"


def partition(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous near-equal ranges covering range(n); some empty if n < parts."""
    edges = [(i * n) // parts for i in range(parts + 1)]
    return list(zip(edges, edges[1:]))


def shard(cell: Cell, x: torch.Tensor, y: torch.Tensor, rank: int) -> dict:
    """Rank ``rank``'s share of the batch (x, y): the tensors it needs and what to compute.

    Time split: steps [s, e), sent as x[lo:e], y[lo:e] with lo = max(s - 1, 0)
    (one step of overlap for y^(s-1)); ``start``/``end`` are local indices.
    Batch split: the sequences [b0, b1).
    """
    kind = split_kind(cell.model, cell.strategy)
    if kind == "time":
        s, e = partition(x.shape[0], cell.workers)[rank]
        lo = max(s - 1, 0)
        return {"kind": kind, "x": x[lo:e].clone(), "y": y[lo:e].clone(), "rank": rank,
                "start": s - lo, "end": e - lo, "empty": e == s}
    b0, b1 = partition(x.shape[1], cell.workers)[rank]
    return {"kind": kind, "x": x[:, b0:b1].clone(), "y": y[..., b0:b1].clone(), "rank": rank,
            "start": 0, "end": x.shape[0], "empty": b1 == b0}


def active_workers(cell: Cell) -> int:
    """How many of the cell's workers get a non-empty shard."""
    n = cell.tau if split_kind(cell.model, cell.strategy) == "time" else cell.batch
    return min(n, cell.workers)


def local_losses(model, cell: Cell, part: dict, step: int | None = None):
    """Yield the loss pieces of one shard; backward each piece as it comes.

    Teacher forcing with a ``chunk`` option gives one piece per chunk (memory
    O(chunk)); otherwise one piece.  ``step`` is the training step, for
    scheduled sampling's schedule (as :mod:`rnnbench.measure` passes it).
    """
    from .measure import strategy_options

    options = strategy_options(cell, step, part.get("rank", 0))
    if part["kind"] == "time":
        chunk = options.get("chunk") or (part["end"] - part["start"])
        for s in range(part["start"], part["end"], chunk):
            yield strategies.teacher_forcing_slice(
                model, part["x"], part["y"], s, min(s + chunk, part["end"]))
    else:
        yield strategies.loss(model, part["x"], part["y"], cell.strategy, **options)


def initial_model(cell: Cell, n_in: int, n_out: int):
    """The cell's model, seeded with the cell's seed, in the cell's dtype (on CPU)."""
    torch.manual_seed(cell.seed)
    return build(cell.model, n_in, cell.hidden, n_out).to(getattr(torch, cell.dtype))


def cell_batch(cell: Cell, seed: int | None = None):
    """The cell's batch (x, y) -- the timed one unless ``seed`` -- and its task.

    Seeds as in :mod:`rnnbench.measure`: the timed batch uses the cell's seed,
    training step i the seed ``seed * 7919 + i + 1``.
    """
    task = cell.make_task()
    x, y = task.batch(cell.tau, cell.batch, cell.seed if seed is None else seed,
                      dtype=getattr(torch, cell.dtype))
    return task, x, y


# --------------------------------------------------------------------------- the worker


class Worker:
    """One rank: a model replica, its shard, an Adam optimizer and the process group.

    Used as a Ray actor (``ray.remote(Worker)``); methods run one at a time.
    """

    def __init__(self, rank: int, world: int, threads: int, device: str):
        self.rank, self.world, self.device = rank, world, device
        self.threads = threads
        torch.set_num_threads(threads)
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
        """Rank 0: bind a TCPStore on a kernel-chosen free port and hold it."""
        import ray
        import torch.distributed as dist

        assert self.rank == 0
        host = ray.util.get_node_ip_address()
        self.store = dist.TCPStore(host, 0, world_size=self.world, is_master=True,
                                   wait_for_workers=False,
                                   timeout=datetime.timedelta(seconds=timeout_s))
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
        dev = torch.device(self.device)
        self.model = build(cell.model, state["U"].shape[1], cell.hidden,
                           state["V"].shape[0]).to(dtype=state["U"].dtype, device=dev)
        self.model.load_state_dict(state)
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
    def _now(self) -> float:
        if self.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def pin(self, offset: int) -> None:
        """Every thread of this process onto ``threads`` CPUs of the ones it may
        use, from position ``threads * rank + offset`` (a no-op where the OS says no)."""
        allowed = self.affinity.allowed
        if allowed:
            self.affinity.pin(paired.cpu_window(allowed, self.threads,
                                                self.threads * self.rank + offset))

    def unpin(self) -> None:
        self.affinity.restore()

    def reset_peak(self) -> None:
        """Start a new peak-RSS stretch (:mod:`rnnbench.procstat`)."""
        self.rss_method = procstat.reset_peak_rss()

    def peak(self) -> tuple[int, str]:
        """This process's peak RSS (bytes) since :meth:`reset_peak`, and how it was read."""
        return procstat.peak_rss(self.rss_method), self.rss_method

    def _step(self, optimize: bool, die: bool = False, step: int | None = None) -> dict:
        import torch.distributed as dist

        f0 = procstat.minor_faults()
        c0 = time.process_time()
        t0 = self._now()
        for p in self.params:
            p.grad = None
        fwd = bwd = 0.0
        total = torch.zeros((), dtype=self.params[0].dtype, device=self.params[0].device)
        if not self.part["empty"]:
            for piece in local_losses(self.model, self.cell, self.part, step):
                t1 = self._now()
                fwd += t1 - t0
                if die:  # test hook: the process dies mid-step, before the all-reduce
                    os._exit(1)
                piece.backward()
                t0 = self._now()
                bwd += t0 - t1
                total += piece.detach()
        elif die:
            os._exit(1)
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
                "cpu": time.process_time() - c0, "loss": float(flat[0]),
                "faults": procstat.minor_faults() - f0}

    def steps(self, n: int, optimize: bool = True, die_at: int | None = None) -> list[dict]:
        """``n`` training steps; each entry has seconds (fwd, bwd, comm, step) and the loss."""
        torch.set_num_threads(self.threads)
        return [self._step(optimize, die=(i == die_at)) for i in range(n)]

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


class WorkerDied(RuntimeError):
    """A worker process died (killed, crashed, out of memory) while the group ran."""


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
    threads; tests ask for fractions to fit N actors on 2 CPUs).
    """

    def __init__(self, cell: Cell, cpus_per_worker: float | None = None,
                 place_timeout_s: float = PLACE_TIMEOUT_S,
                 dist_timeout_s: float = DIST_TIMEOUT_S, timeout_s: float | None = None,
                 role: str = ""):
        self.cell = cell
        self.role = role
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
        actor_cls = ray.remote(Worker)
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

    def steps(self, n: int, optimize: bool = True, die_at: tuple[int, int] | None = None
              ) -> list[list[dict]]:
        """``n`` steps on every rank; per rank the list of per-step records.

        ``die_at = (rank, step)``: test hook, that rank's process exits mid-step.
        """
        return self._all([
            a.steps.remote(n, optimize, die_at[1] if die_at and die_at[0] == r else None)
            for r, a in enumerate(self.actors)])

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

    def train(self, steps: int, every: int = 1) -> list[list]:
        """``steps`` Adam steps, each on a fresh batch (seeds as in measure); the
        curve [step, wall seconds, loss per token] at every ``every``-th step and
        the last."""
        import ray

        from . import measure

        cell, curve = self.cell, []
        start = time.perf_counter()
        for i in range(steps):
            _, x, y = cell_batch(cell, measure.train_seed(cell, i))
            loss = self._all([a.train_step.remote(ray.put(shard(cell, x, y, r)), i)
                              for r, a in enumerate(self.actors)])[0]
            if not math.isfinite(loss):
                raise FloatingPointError(f"non-finite loss {loss} at training step {i + 1}")
            if i % every == 0 or i == steps - 1:
                curve.append([i + 1, time.perf_counter() - start, loss / measure.tokens(cell)])
        return curve

    @property
    def pids(self) -> list[int]:
        return [i["pid"] for i in self.infos]


# --------------------------------------------------------------------------- the row


def _ms_stats(samples: list[float]) -> tuple[float, float]:
    if not samples:
        return math.nan, math.nan
    q = statistics.quantiles(samples, n=4, method="inclusive") if len(samples) > 1 \
        else [samples[0]] * 3
    return statistics.median(samples), q[2] - q[0]


def summarise(per_rank: list[list[dict]], warmup: int) -> dict:
    """Row fields from every rank's per-step records (seconds): step, fwd and bwd as
    the slowest rank's per step, comm as the least-waiting rank's, in ms."""
    steps = list(zip(*per_rank))[warmup:]
    step = [1e3 * max(r["step"] for r in s) for s in steps]
    fwd = [1e3 * max(r["fwd"] for r in s) for s in steps]
    bwd = [1e3 * max(r["bwd"] for r in s) for s in steps]
    comm = [1e3 * min(r["comm"] for r in s) for s in steps]
    median, iqr = _ms_stats(step)
    faults = [sum(r.get("faults", 0) for r in s) for s in steps]
    return {"step_ms_median": median, "step_ms_iqr": iqr, "step_ms_samples": step,
            "minor_faults_per_step": sum(faults) / len(faults) if faults else math.nan,
            "fwd_ms_median": _ms_stats(fwd)[0], "bwd_ms_median": _ms_stats(bwd)[0],
            "comm_ms_median": _ms_stats(comm)[0],
            # not row keys: per rank, the CPU time its process used per step (median)
            "cpu_ms_median_per_rank": [
                _ms_stats([1e3 * r["cpu"] for r in rank[warmup:]])[0] for rank in per_rank]}


def idle_note(cell: Cell) -> str | None:
    """The row's note when some workers get nothing to do (status stays ok)."""
    active = active_workers(cell)
    if active == cell.workers:
        return None
    kind = split_kind(cell.model, cell.strategy)
    what = "tau" if kind == "time" else "batch"
    why = "tau < workers" if kind == "time" else "BPTT cannot be split along time"
    return (f"note: {cell.workers - active} of {cell.workers} workers idle "
            f"({what} {getattr(cell, what)} split {kind}-wise; {why})")


def _died_status(err: BaseException) -> str:
    text = str(err).lower()
    return "oom" if ("out of memory" in text or "memory pressure" in text
                     or "oom" in text.split()) else "crashed"


def fair_baseline(cell: Cell, base: Cell) -> Cell:
    """The baseline with the allocator conditions of the cell's workers.

    Split along time over N workers, each worker's tensors are 1/N of the
    sequence; one process holding all of them crosses glibc's mmap threshold
    (blocks >= 32 MiB are mapped fresh on every allocation and unmapped on
    free, so every step pays page faults the workers never see).  So a
    teacher-forcing baseline with fewer workers, given no strategy options of
    its own, computes its sequence in chunks of the workers' slice
    (``chunk = ceil(tau / N)``): the same arithmetic, the same gradient, the
    same block sizes per piece as a worker.
    """
    if (split_kind(cell.model, cell.strategy) != "time" or base.strategy != "teacher_forcing"
            or base.workers >= cell.workers or "strategy_options" in dict(cell.baseline)
            or base.strategy_options):
        return base
    return dataclasses.replace(base, strategy_options={"chunk": -(-base.tau // cell.workers)})


def _timed(cell: Cell, group: "Group", warmup: int, die_at=None) -> dict:
    """The cell's steps alone (``warmup`` untimed, then ``repeats`` timed): row
    fields, the largest rank's peak RSS over the steps, per-rank CPU time."""
    group.reset_peak()
    records = group.steps(warmup + cell.repeats, die_at=die_at)
    _check_finite(cell, records)
    out = summarise(records, warmup)
    out["peak_rss_bytes"], out["peak_rss_method"] = group.peak()
    return out


class BaselineFailed(RuntimeError):
    """The baseline's group failed while the pair was timed (the cell's did not)."""


def _check_finite(cell: Cell, records: list[list[dict]]) -> None:
    bad = [r["loss"] for r in records[0] if not math.isfinite(r["loss"])]
    if bad:
        raise FloatingPointError(f"non-finite loss {bad[0]} ({cell.strategy})")


def _paired(cell: Cell, a: "Group", b: "Group", warmup: int) -> dict:
    """Both groups up, taking turns: ``repeats`` pairs of one step each, A B B A ...,
    every rank's threads moved to the next CPUs between pairs."""
    _check_finite(cell, a.steps(warmup))
    try:
        _check_finite(b.cell, b.steps(warmup))
    except (WorkerDied, FloatingPointError) as err:
        raise BaselineFailed(f"{type(err).__name__}: {err}") from err
    a.reset_peak()
    per = {"a": [], "b": []}

    def block(group: "Group", side: str) -> float:
        if side == "a":
            records = group.steps(1)
            _check_finite(group.cell, records)
        else:
            try:
                records = group.steps(1)
                _check_finite(group.cell, records)
            except Exception as err:  # noqa: BLE001 -- a time-out is the cell's, below
                from ray.exceptions import GetTimeoutError

                if isinstance(err, GetTimeoutError):
                    raise
                raise BaselineFailed(f"{type(err).__name__}: {err}") from err
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
    out = summarise(joined["a"], 0)
    out["peak_rss_bytes"], out["peak_rss_method"] = a.peak()
    out.update(paired.row_fields(result))
    out["baseline_minor_faults_per_step"] = summarise(joined["b"], 0)["minor_faults_per_step"]
    return out


def run_cell(cell: Cell, *, timeout_s: float | None = None,
             cpus_per_worker: float | None = None, warmup: int = WARMUP,
             die_at: tuple[int, int] | None = None, probe: dict | None = None) -> dict:
    """Run a cell as one group of ``cell.workers`` Ray actors; return its row.

    The row is :func:`rnnbench.measure.base_row` with the time-parallel
    measures: ``split``, step/fwd/bwd times (inside the workers, slowest rank
    per step), ``comm_ms_median``, minor page faults per step (summed over the
    ranks), the largest rank's peak RSS over the timed steps, and -- with
    ``train_steps`` -- the training curve and
    :func:`rnnbench.measure.evaluate`'s held-out loss and accuracy of the
    trained replica.  Memory and FLOPs are per-process measures and stay NaN
    here (the one-worker row has them).

    With a ``baseline`` (e.g. ``{workers: 1}``) its group is started beside
    the cell's (each actor asks for a share of the CPUs, so both fit where
    one would), both warm up, then they take turns one step at a time
    (:func:`rnnbench.paired.alternate`), every rank moved to the next CPUs
    between pairs.  The baseline is :func:`fair_baseline`.  A baseline that
    fails leaves ``baseline_error`` and the cell is timed alone.

    Needs Ray: joins the running instance (driver or inside a Ray task), else
    starts an embedded one.  Failure is data: a dead worker gives ``crashed``
    (``oom`` when Ray says it was memory), running past ``timeout_s`` gives
    ``timeout``, anything else ``failed``; when this returns the actors are
    killed (Ray ends their processes moments later) and the placement group
    is removed.  ``probe``, when given, is filled with the
    workers' pids, the store's address and the placement group id (tests check
    nothing is left behind) and each rank's CPU time per step (the benchmark
    compares it with the wall time to see starved workers); ``die_at = (rank,
    step)`` is the tests' fault injection.
    """
    from contextlib import ExitStack

    from ray.exceptions import GetTimeoutError

    from . import measure

    t0 = time.perf_counter()
    row = measure.base_row(cell)
    row["split"] = split_kind(cell.model, cell.strategy)
    row["workers_active"] = active_workers(cell)
    row["error"] = idle_note(cell)
    base = None
    if cell.baseline:
        if dict(cell.baseline).get("strategy") == BEST_BPTT:
            row["baseline_error"] = "best_bptt: chosen by timing in one process; not offered " \
                                    "beside a worker group"
        else:
            base = fair_baseline(cell, cell.baseline_cell())
            row["baseline_config"] = json.dumps(measure.changed(cell, base), sort_keys=True)
    share = cpus_per_worker
    if base is not None and share is None:  # both groups fit where the larger one would
        share = max(cell.workers * cell.n_threads, base.workers * base.n_threads) \
            / (cell.workers + base.workers)
    try:
        with ExitStack() as stack:
            group = stack.enter_context(Group(cell, cpus_per_worker=share, timeout_s=timeout_s))
            if probe is not None:
                probe.update(pids=group.pids, address=group.address, infos=group.infos,
                             placement_group=group.pg.id.hex())
            other = None
            if base is not None:
                try:
                    other = stack.enter_context(Group(base, cpus_per_worker=share,
                                                      timeout_s=timeout_s, role="baseline"))
                except (GetTimeoutError, WorkerDied):
                    raise
                except Exception as err:  # noqa: BLE001 -- the baseline's failure is data
                    row["baseline_error"] = f"{type(err).__name__}: {err}"[:2000]
            times = None
            if other is not None:
                try:
                    times = _paired(cell, group, other, warmup)
                except BaselineFailed as err:
                    row["baseline_error"] = str(err)[:2000]
                    other.close()
            if times is None:
                times = _timed(cell, group, warmup, die_at)
            if probe is not None:
                probe["cpu_ms_median_per_rank"] = times.pop("cpu_ms_median_per_rank")
            row.update({k: v for k, v in times.items() if k in row})
            if cell.train_steps:
                group.reset()
                every = max(1, cell.train_steps // measure.CURVE_POINTS)
                row["train_curve"] = group.train(cell.train_steps, every)
                model = initial_model(cell, row["n_in"], row["n_out"])
                model.load_state_dict(group.parameters()[0])
                row.update(measure.evaluate(cell, model, cell.make_task()))
    except WorkerDied as err:
        row.update(status=_died_status(err), error=str(err))
    except GetTimeoutError as err:
        row.update(status="timeout", error=str(err))
    except Exception as err:  # noqa: BLE001 -- failure is data
        row.update(status="failed", error=f"{type(err).__name__}: {err}"[:2000])
    row["wall_s"] = time.perf_counter() - t0
    return row
