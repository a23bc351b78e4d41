"""One rank of a worker group: a model replica, its shard, an Adam optimizer and the
torch.distributed process group (a Ray actor)."""

from __future__ import annotations

import datetime
import os
import socket
from typing import Any

import torch

from rnnbench import raysession
from rnnbench.harness import allocator, paired, procstat, training
from rnnbench.harness.group import collectives
from rnnbench.harness.group.shard import Shard, local_losses
from rnnbench.harness.training import initial_model
from rnnbench.job.cell import Cell
from rnnbench.pit import diagnostics


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
        self.store: Any = None  # torch.distributed.TCPStore, once joined
        self.model: Any = None
        self.opt: Any = None
        self.part: Any = None

    # -- rendezvous ---------------------------------------------------------
    def info(self) -> dict:
        import ray

        return {
            "rank": self.rank,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "ip": raysession.node_ip(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "threads": torch.get_num_threads(),
        }

    def open_store(self, timeout_s: float) -> tuple[str, int]:
        """Rank 0: bind a TCPStore on a kernel-chosen free port and hold it.

        It listens on the node's address only (127.0.0.1 on an embedded Ray),
        not on every interface as a TCPStore given just a port does: the socket
        is bound here and handed over (``master_listen_fd``)."""
        import torch.distributed as dist

        assert self.rank == 0
        host = raysession.node_ip()  # the node's address: 127.0.0.1 on an embedded Ray
        family = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0][0]
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.bind((host, 0))
        port = listener.getsockname()[1]
        self.store = dist.TCPStore(
            host,
            port,
            world_size=self.world,
            is_master=True,
            wait_for_workers=False,
            timeout=datetime.timedelta(seconds=timeout_s),
            master_listen_fd=listener.detach(),
        )  # the store owns it
        return host, self.store.port

    def join(self, host: str, port: int, timeout_s: float) -> int:
        """Join the process group through rank 0's store; returns the rank."""
        import torch.distributed as dist

        timeout = datetime.timedelta(seconds=timeout_s)
        if self.store is None:
            self.store = dist.TCPStore(
                host, port, world_size=self.world, is_master=False, timeout=timeout
            )
        if self.device == "cuda":
            torch.cuda.set_device(0)  # Ray shows each actor only its own GPU
        backend = "nccl" if self.device == "cuda" else "gloo"
        dist.init_process_group(
            backend, store=self.store, rank=self.rank, world_size=self.world, timeout=timeout
        )
        return self.rank

    def collectives(self) -> dict[str, list[float]]:
        """This rank's median seconds of all-reduce and all-gather at each of
        :data:`.collectives.SIZES` (:mod:`rnnbench.harness.group.collectives`)."""
        import torch.distributed as dist

        return collectives.time_collectives(dist, self._now, self.device)

    # -- model and data -----------------------------------------------------
    def setup(self, cell: Cell, state: dict, part: Shard) -> None:
        torch.set_num_threads(self.threads)  # Ray may reuse processes: set it every time
        self.cell = cell
        self.model = initial_model(cell, state["U"].shape[1], state["V"].shape[0], self.device)
        self.set_part(part)
        self.params = list(self.model.parameters())
        self.numel = [p.numel() for p in self.params]
        self.reset(state)

    def set_part(self, part: Shard) -> None:
        """A new shard (training uses a fresh batch every step)."""
        self.part = part.to(torch.device(self.device))

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
            self.affinity.pin(
                paired.cpu_window(allowed, self.threads, self.threads * self.rank + offset)
            )

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
        if not self.part.empty:
            for piece in local_losses(self.model, self.cell, self.part, step):
                t1 = self._now()
                fwd += t1 - t0
                piece.backward()
                t0 = self._now()
                bwd += t0 - t1
                total += piece.detach()
        t2 = self._now()
        flat = torch.cat(
            [total.reshape(1)]
            + [
                p.grad.reshape(-1) if p.grad is not None else torch.zeros_like(p).reshape(-1)
                for p in self.params
            ]
        )
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        t3 = self._now()
        for p, g in zip(self.params, flat[1:].split(self.numel)):
            p.grad = g.view_as(p)
        if optimize:
            self.opt.step()
        t4 = self._now()
        return {
            "fwd": fwd,
            "bwd": bwd,
            "comm": t3 - t2,
            "step": fwd + bwd + (t4 - t2),
            "loss": float(flat[0]),
            "faults": procstat.minor_faults() - f0,
        }

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

    def train_step(self, part: Shard, step: int) -> float:
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
