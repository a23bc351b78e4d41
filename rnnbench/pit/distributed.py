"""Linear recurrences split along time over N ranks: one summary exchanged per scan.

Rank r owns the steps [s_r, e_r) of h_t = A_t h_{t-1} + b_t (a contiguous shard,
:func:`rnnbench.core.strategies.partition`).  It reduces its shard to one summary
(P_r, q_r) = (A_{e-1} ... A_s, h_{e-1} from h_{s-1} = 0) (:func:`rnnbench.pit.scan.summary`),
the N summaries are all-gathered (one (H x H, H) pair per rank and batch row),
and rank r applies those of the ranks before it to get its incoming state

    h_{s_r - 1} = P_{r-1} ( ... (P_1 q_0 + q_1) ... ) + q_{r-1},

then scans its shard from it (:func:`rnnbench.pit.scan.linear_scan` with ``h0``).
The adjoint lambda_t = g_t + J_{t+1}^T lambda_{t+1} splits the same way in
reverse: rank r's summary maps what it receives, c_r = J_{e_r}^T lambda_{e_r},
to what it sends back, c_{r-1} = J_{s_r}^T lambda_{s_r}; the summaries of the
ranks after it give its c_r.  Depth per scan: ceil(log2 tau / N) for the
local reduction, N - 1 compositions of the gathered summaries, ceil(log2 tau / N)
for the local scan; work about twice the single-process scan's.

The collectives go through a ``comm`` (:class:`DistComm`: torch.distributed's
default group, gloo on CPU); tests pass their own, with the same four methods.
"""

from __future__ import annotations

import torch

from rnnbench.pit.scan import fold, summary


class DistComm:
    """This process's rank in torch.distributed's default group (already initialised)."""

    def __init__(self):
        import torch.distributed as dist

        self.dist = dist
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    def all_gather(self, t: torch.Tensor) -> list[torch.Tensor]:
        out = [torch.empty_like(t) for _ in range(self.world)]
        self.dist.all_gather(out, t.contiguous())
        return out

    def all_max(self, t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        self.dist.all_reduce(t, op=self.dist.ReduceOp.MAX)
        return t

    def send(self, t: torch.Tensor, dst: int) -> None:
        self.dist.send(t.contiguous(), dst)

    def recv(self, like: torch.Tensor, src: int) -> torch.Tensor:
        t = torch.empty_like(like)
        self.dist.recv(t, src)
        return t


def exchange(comm, P: torch.Tensor, q: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every rank's summary (P, q), in rank order: one all-gather of P and q packed."""
    k = P.numel()
    return [
        (t[:k].view_as(P), t[k:].view_as(q))
        for t in comm.all_gather(torch.cat([P.reshape(-1), q.reshape(-1)]))
    ]


def total_steps(comm, n: int) -> int:
    """tau of the whole sequence, from every rank's shard length n."""
    return int(sum(comm.all_gather(torch.tensor([n], dtype=torch.int64))).item())


def incoming_state(A: torch.Tensor, b: torch.Tensor, comm) -> torch.Tensor:
    """h_{s-1} of this rank's shard of h_t = A_t h_{t-1} + b_t (0 on rank 0)."""
    before = exchange(comm, *summary(A, b))[: comm.rank]
    return fold(before, torch.zeros_like(b[0]))


def incoming_adjoint(
    A: torch.Tensor, g: torch.Tensor, J_first_T: torch.Tensor, comm
) -> torch.Tensor:
    """c_r = J_{e_r}^T lambda_{e_r} (0 on the last rank) for this rank's reversed shard.

    ``A``, ``g``: the shard's adjoint elements in reversed time, A[0] = I (the step
    e - 1 takes c_r as is), A[j] = J^T of the step after; ``J_first_T`` = J_{s_r}^T,
    which carries lambda_{s_r} to the rank before.
    """
    P, q = summary(A, g)  # c_r -> lambda_{s_r}
    sent = exchange(
        comm, torch.matmul(J_first_T, P), torch.matmul(J_first_T, q.unsqueeze(-1)).squeeze(-1)
    )
    return fold(sent[comm.rank + 1 :][::-1], torch.zeros_like(g[0]))
