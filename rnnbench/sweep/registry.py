"""Which cells run on which node: a tiny actor on the driver's node, and the one way
the sweep asks it (a call that never breaks a sweep)."""

from __future__ import annotations

import time


class Registry:
    """Which cells run on which node (a tiny actor on the driver's node).

    Gives each cell its attempt number, counts the other cells that ran on the
    same node while it ran (``neighbours``), and when running cells first
    started (time-outs count from a cell's first start, across its attempts,
    not from when it was queued).
    """

    def __init__(self):
        self.running: dict[str, tuple[str, float]] = {}
        self.beside: dict[str, set] = {}
        self.attempts: dict[str, int] = {}
        self.first: dict[str, float] = {}

    def enter(self, cell_id: str, node: str) -> int:
        self.attempts[cell_id] = self.attempts.get(cell_id, 0) + 1
        self.first.setdefault(cell_id, time.time())
        self.running[cell_id] = (node, self.first[cell_id])
        peers = {c for c, (n, _) in self.running.items() if n == node and c != cell_id}
        self.beside[cell_id] = set(peers)
        for c in peers:
            self.beside.setdefault(c, set()).add(cell_id)
        return self.attempts[cell_id]

    def leave(self, cell_id: str) -> tuple[int, int]:
        self.running.pop(cell_id, None)
        return self.attempts.get(cell_id, 0), len(self.beside.pop(cell_id, ()))

    def forget(self, cell_ids: list[str]) -> None:
        """A new sweep of these cells: their attempts count from 1 again."""
        for c in cell_ids:
            self.attempts.pop(c, None)
            self.first.pop(c, None)

    def started(self) -> dict[str, float]:
        """cell_id -> first start (epoch seconds) of the cells running now."""
        return {c: t for c, (_, t) in self.running.items()}


_REGISTRIES: dict = {}


def registry():
    """The driver's registry actor, created once per Ray connection and kept
    (a handle dropped at the end of a sweep would let Ray destroy it)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    key = ray.get_runtime_context().get_job_id()
    if key not in _REGISTRIES:
        _REGISTRIES.clear()
        _REGISTRIES[key] = (
            ray.remote(num_cpus=0)(Registry)
            .options(
                max_restarts=-1,
                max_task_retries=3,
                scheduling_strategy=NodeAffinitySchedulingStrategy(
                    ray.get_runtime_context().get_node_id(), soft=False
                ),
            )
            .remote()
        )
    return _REGISTRIES[key]


def ask(call, default, timeout: float = 30):
    """A registry call that never breaks a sweep: ``default`` if the actor is unreachable."""
    import ray

    try:
        return ray.get(call, timeout=timeout)
    except Exception:
        return default
