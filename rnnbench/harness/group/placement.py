"""The worker group's lifecycle: N :class:`~.worker.Worker` actors in one placement
group (all or nothing), joined by torch.distributed, called on every rank at once; and
the one safe way to remove a placement group (ray#64693)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from rnnbench import raysession
from rnnbench.errors import UsageError
from rnnbench.harness import training
from rnnbench.harness.group import collectives
from rnnbench.harness.group.shard import shard
from rnnbench.harness.group.worker import Worker
from rnnbench.harness.training import cell_batch, initial_model
from rnnbench.job.cell import Cell
from rnnbench.results.rows import WorkerDied

PLACE_TIMEOUT_S = 600.0  # how long to wait for the placement group to be placed
DIST_TIMEOUT_S = 300.0  # torch.distributed timeout (rendezvous and collectives)


def _ray():
    import ray

    raysession.ensure()  # embedded and loopback only, unless a sweep connected already
    return ray


def rank_nodes(infos: list[dict]) -> dict:
    """The row's node fields of a group: each rank's Ray node id and IP (in rank order);
    ``node_id`` / ``node_ip`` are rank 0's."""
    ids = [i.get("node_id") for i in infos]
    ips = [i.get("ip") for i in infos]
    return {
        "rank_node_ids": ids,
        "rank_node_ips": ips,
        "node_id": ids[0] if ids else None,
        "node_ip": ips[0] if ips else None,
    }


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


def _check_room(ray, n: int, bundle: dict, when: str = "") -> None:
    """A UsageError when the cluster cannot hold ``n`` bundles (``when``: a note on
    the cluster's state, appended to the message)."""
    total = ray.cluster_resources()
    for key, need in bundle.items():
        if need * n > total.get(key, 0) + 1e-9:
            raise UsageError(
                f"workers: {n} workers x {need:g} {key} need {need * n:g} {key}; "
                f"the Ray cluster has {total.get(key, 0):g}{when}"
            )


class Group:
    """N Worker actors in one placement group, joined by torch.distributed.

    ``with Group(cell) as g: g.steps(5)`` -- on exit (or :meth:`close`) every
    actor is killed and the placement group removed, whatever happened.

    ``cpus_per_worker`` is the CPU request of each actor (default: the cell's
    threads; tests ask for fractions to fit N actors on 2 CPUs); ``worker`` the
    class each actor runs (:class:`Worker` or a subclass of it).
    """

    def __init__(
        self,
        cell: Cell,
        cpus_per_worker: float | None = None,
        place_timeout_s: float = PLACE_TIMEOUT_S,
        dist_timeout_s: float = DIST_TIMEOUT_S,
        timeout_s: float | None = None,
        worker: type = Worker,
        role: str = "",
    ):
        self.cell = cell
        self.worker = worker
        self.role = role  # "" for the cell's own group, "baseline" for its baseline's
        self.cpus = float(cell.n_threads if cpus_per_worker is None else cpus_per_worker)
        self.place_timeout_s = place_timeout_s
        self.dist_timeout_s = dist_timeout_s
        self.timeout_s = timeout_s  # for everything from open() on; None: no limit
        self.deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self.actors: list = []
        self.pg: Any = None  # the placement group, once asked for
        self.infos: list[dict] = []
        self.address: tuple[str, int] | None = None
        self.n_in = self.n_out = None

    # -- lifecycle ----------------------------------------------------------
    def __enter__(self) -> Group:
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
        _check_room(ray, n, bundle)
        if not self.role:
            release(cell)  # a leftover of this cell's earlier, force-cancelled run
        self.pg = placement_group(
            [dict(bundle) for _ in range(n)], strategy="PACK", name=pg_name(cell, self.role)
        )
        wait_s = (
            self.place_timeout_s
            if self.deadline is None
            else min(self.place_timeout_s, max(0.0, self.deadline - time.monotonic()))
        )
        # not pg.wait(): it takes whole seconds (0.5 s becomes no wait at all)
        ready = self._placed(n, bundle, wait_s)
        if not ready:
            if wait_s < self.place_timeout_s:  # the cell's deadline came first
                from ray.exceptions import GetTimeoutError

                raise GetTimeoutError(
                    f"time-out after {self.timeout_s:g} s waiting for "
                    f"{n} x {bundle} (placement group)"
                )
            raise TimeoutError(
                f"placement group of {n} x {bundle} not placed within "
                f"{self.place_timeout_s:g} s (available now: {ray.available_resources()})"
            )
        actor_cls = ray.remote(self.worker)
        for rank in range(n):
            self.actors.append(
                actor_cls.options(
                    num_cpus=self.cpus,
                    num_gpus=bundle.get("GPU", 0),
                    max_restarts=0,
                    scheduling_strategy=PlacementGroupSchedulingStrategy(
                        placement_group=self.pg, placement_group_bundle_index=rank
                    ),
                ).remote(rank, n, cell.n_threads, cell.device)
            )
        self.infos = self._all([a.info.remote() for a in self.actors])
        # Rendezvous: rank 0 holds the port from bind to init (no race), then all join.
        self.address = self._all([self.actors[0].open_store.remote(self.dist_timeout_s)])[0]
        self._all([a.join.remote(*self.address, self.dist_timeout_s) for a in self.actors])
        self.load(cell)

    def _placed(self, n: int, bundle: dict, wait_s: float) -> list:
        """Wait for the placement group, at most ``wait_s``; a cluster that has shrunk
        below what it needs (a node lost) ends the wait at once with a UsageError."""
        import ray

        ref, deadline = self.pg.ready(), time.monotonic() + wait_s
        while True:
            ready, _ = ray.wait([ref], timeout=max(0.0, min(1.0, deadline - time.monotonic())))
            if ready or time.monotonic() >= deadline:
                return ready
            _check_room(ray, n, bundle, " now (a node was lost)")

    def load(self, cell: Cell) -> None:
        """Give every rank ``cell``'s model and its shard of ``cell``'s batch.

        The group can be re-loaded with another cell of the same workers,
        threads and device (tests do, to pay the actors' start-up once).
        """
        import ray

        for key in ("workers", "threads", "device"):
            if getattr(cell, key) != getattr(self.cell, key):
                raise UsageError(
                    f"{key}: the group was started with {getattr(self.cell, key)}, "
                    f"the cell asks for {getattr(cell, key)}"
                )
        self.cell = cell
        # One batch, one initial model, made here once: every rank gets its shard.
        task, x, y = cell_batch(cell)
        self.n_in, self.n_out = task.n_in, task.n_out
        self.state = initial_model(cell, task.n_in, task.n_out).state_dict()
        state_ref = ray.put(self.state)
        self._all(
            [
                a.setup.remote(cell, state_ref, shard(cell, x, y, rank))
                for rank, a in enumerate(self.actors)
            ]
        )

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
            except Exception:
                pass
            for a in self.actors:
                try:
                    ray.kill(a, no_restart=True)
                except Exception:
                    pass
            self.actors = []
        if self.pg is not None:
            try:
                remove_group(self.pg)
            except Exception:
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
                raise WorkerDied(
                    f"worker rank {rank_of[ready[0]]} died: {str(err).splitlines()[0]}"
                ) from err
            except Exception:
                # A rank failed: if it failed because a peer died (gloo: connection
                # closed), report the death, not its echo.
                done, _ = ray.wait(pending, num_returns=len(pending), timeout=10.0)
                for ref in done:
                    try:
                        ray.get(ref)
                    except RayActorError as err:
                        raise WorkerDied(
                            f"worker rank {rank_of[ref]} died: {str(err).splitlines()[0]}"
                        ) from err
                    except Exception:
                        pass
                raise
        return ray.get(list(refs))

    def steps(self, n: int, optimize: bool = True) -> list[list[dict]]:
        """``n`` steps on every rank; per rank the list of per-step records."""
        return self._all([a.steps.remote(n, optimize) for a in self.actors])

    def collectives(self) -> dict:
        """The row's collective-cost fields (:func:`.collectives.row_fields`), timed on
        every rank at once."""
        return collectives.row_fields(self._all([a.collectives.remote() for a in self.actors]))

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
            return self._all(
                [
                    a.train_step.remote(ray.put(shard(cell, x, y, r)), i)
                    for r, a in enumerate(self.actors)
                ]
            )[0]

        return training.train(cell, step)

    @property
    def pids(self) -> list[int]:
        return [i["pid"] for i in self.infos]
