"""Elman split along time over N ranks, without Ray: the shards' summaries give the
single-process scan, states, iterations and gradient (float64, to 1e-10).

The exchange is simulated: first by lists (each shard's summary computed, then
folded), then by N threads whose ``comm`` all-gathers through a barrier.
"""

from __future__ import annotations

import copy
import queue
import threading

import pytest
import torch

from rnnbench.core import models, strategies
from rnnbench.facts import TIME_SPLIT_SOLVERS
from rnnbench.pit import diagnostics
from rnnbench.pit.scan import fold, linear_scan, summary

DT = torch.float64
pytestmark = pytest.mark.usefixtures("one_thread")


def pieces(tau, parts):
    return strategies.partition(tau, parts)


@pytest.mark.parametrize("dense", [True, False], ids=["dense", "diagonal"])
@pytest.mark.parametrize("tau,parts", [(7, 2), (7, 3), (64, 3), (5, 5)])
def test_shard_summaries_give_the_whole_scan(dense, tau, parts):
    torch.manual_seed(tau + parts)
    H = 4
    A = torch.randn(tau, 2, H, H, dtype=DT) * 0.5 if dense else torch.randn(tau, 2, H, dtype=DT)
    b = torch.randn(tau, 2, H, dtype=DT)
    whole = linear_scan(A, b)
    sums = [summary(A[s:e], b[s:e]) for s, e in pieces(tau, parts)]  # the all-gather
    for r, (s, e) in enumerate(pieces(tau, parts)):
        h_in = fold(sums[:r], torch.zeros_like(b[0]))
        torch.testing.assert_close(
            linear_scan(A[s:e], b[s:e], h0=h_in), whole[s:e], rtol=1e-12, atol=1e-12
        )
    # the summary is the map h_0 -> h_tau: from a nonzero h_0 too
    h0 = torch.randn(2, H, dtype=DT)
    P, q = summary(A, b)
    torch.testing.assert_close(fold([(P, q)], h0), linear_scan(A, b, h0=h0)[-1])


def test_a_wrong_order_of_summaries_gives_another_state():
    """The check above can fail: folding the earlier shards in the wrong order differs."""
    torch.manual_seed(1)
    A, b = torch.randn(9, 1, 3, 3, dtype=DT), torch.randn(9, 1, 3, dtype=DT)
    sums = [summary(A[s:e], b[s:e]) for s, e in pieces(9, 3)]
    right = fold(sums[:2], torch.zeros_like(b[0]))
    assert not torch.allclose(fold(sums[1::-1], torch.zeros_like(b[0])), right)


# --------------------------------------------------------------------------- threads as ranks


class ThreadComm:
    """The four collectives of rnnbench.pit.distributed.DistComm among threads."""

    def __init__(self, rank, world, shared):
        self.rank, self.world, self.shared = rank, world, shared

    def all_gather(self, t):
        sh = self.shared
        sh["slots"][self.rank] = t.clone()
        sh["barrier"].wait()
        out = [s.clone() for s in sh["slots"]]
        sh["barrier"].wait()
        return out

    def all_max(self, t):
        return torch.stack(self.all_gather(t)).amax(0)

    def send(self, t, dst):
        self.shared["queues"][(self.rank, dst)].put(t.clone())

    def recv(self, like, src):
        return self.shared["queues"][(src, self.rank)].get(timeout=30)


def run_ranks(model, x, y, strategy, world, **options):
    """Each rank's loss, gradient and report, every rank in its own thread."""
    shared = {
        "slots": [None] * world,
        "barrier": threading.Barrier(world, timeout=30),
        "queues": {(a, b): queue.Queue() for a in range(world) for b in range(world)},
    }
    out, errors = [None] * world, []

    def rank(r, s, e):
        try:
            torch.set_num_threads(1)
            m = copy.deepcopy(model)
            ys = y if m.single_output else y[s:e]
            with diagnostics.recording() as rec:
                L = strategies.elman_time_shard(
                    m, x[s:e], ys, strategy, ThreadComm(r, world, shared), **options
                )
                L.backward()
            # a rank with no output of its own (SingleOutput) leaves V and c without grad
            out[r] = (
                L.detach(),
                {
                    n: torch.zeros_like(p) if p.grad is None else p.grad
                    for n, p in m.named_parameters()
                },
                rec.fields(),
            )
        except BaseException as err:
            errors.append(err)
            shared["barrier"].abort()

    threads = [
        threading.Thread(target=rank, args=(r, s, e))
        for r, (s, e) in enumerate(pieces(x.shape[0], world))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return out


def setup(model, tau=13, rho=None, seed=0):
    torch.manual_seed(seed)
    m = models.build(model, 3, 5, 4, rho).double()
    x = torch.randn(tau, 2, 3, dtype=DT)
    y = torch.randint(0, 4, (2,) if m.single_output else (tau, 2))
    return m, x, y


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("model", ["elman", "single_output"])
@pytest.mark.parametrize("strategy", list(TIME_SPLIT_SOLVERS))
def test_time_split_gradient_equals_single_process(strategy, model, world):
    m, x, y = setup(model)
    ref = copy.deepcopy(m)
    with diagnostics.recording() as rec:
        whole = strategies.loss(ref, x, y, strategy)
        whole.backward()
    whole = whole.detach()
    ranks = run_ranks(m, x, y, strategy, world)
    assert abs(float(sum(L for L, _, _ in ranks)) - float(whole)) <= 1e-10 * abs(float(whole))
    for name, p in ref.named_parameters():
        got = sum(g[name] for _, g, _ in ranks)
        assert float((got - p.grad).norm() / p.grad.norm()) < 1e-10, name
    for _, _, fields in ranks:  # every rank iterates as one process does
        assert fields == {**rec.fields(), "residual": fields["residual"]}
        if strategy != "scan_bptt":
            assert abs(fields["residual"] - rec.residual) < 1e-12


def test_every_rank_reports_a_non_converged_run():
    """max_iter 2 at spectral radius 3: no rank says converged, all say 2 iterations,
    and the residual is the whole sequence's largest."""
    m, x, y = setup("elman", tau=30, rho=3.0)
    with diagnostics.recording() as rec:
        strategies.loss(copy.deepcopy(m), x, y, "deer", max_iter=2)
    assert rec.converged is False
    for _, _, fields in run_ranks(m, x, y, "deer", 3, max_iter=2):
        assert fields["iterations"] == 2 and fields["converged"] is False
        assert fields["residual"] == pytest.approx(rec.residual, rel=1e-9)


def test_newton_with_default_max_iter_ends_at_the_sequential_answer_split():
    """Spectral radius 3 with the default max_iter (the whole tau, not the shard's):
    the split run still equals the sequential gradient."""
    m, x, y = setup("elman", tau=20, rho=3.0, seed=2)
    ref = copy.deepcopy(m)
    strategies.loss(ref, x, y, "bptt").backward()
    ranks = run_ranks(m, x, y, "deer", 2)
    assert all(f["converged"] for _, _, f in ranks)
    for name, p in ref.named_parameters():
        got = sum(g[name] for _, g, _ in ranks)
        assert float((got - p.grad).norm() / p.grad.norm()) < 1e-8, name


def test_time_split_elman_needs_a_step_per_worker():
    from rnnbench.errors import UsageError
    from rnnbench.harness import group as tp
    from rnnbench.harness import training
    from rnnbench.job.cell import Cell

    c = Cell(model="elman", strategy="deer", task="text", tau=2, batch=1, hidden=3, workers=3)
    task, x, y = training.cell_batch(c)
    assert tp.shard(c, x, y, 2).end - tp.shard(c, x, y, 2).start == 1
    with pytest.raises(UsageError, match="workers: deer split along time needs tau >= workers"):
        tp.shard(c, x, y, 0)  # partition(2, 3): rank 0 gets no step
