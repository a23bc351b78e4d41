"""The sequential chain of exact BPTT, timed alone, and its control.

The chapter's claim that parallel hardware cannot reduce BPTT's O(τ) is about the
recurrence, not about the work batched over time around it (U x, V h, the softmax, dW,
Adam).  So a sequential-BPTT cell also times its chain alone:

    forward   h^(t) = tanh(a^(t) + W h^(t-1))                 t = 1 .. τ
    backward  δ^(t) = (1 − h^(t)²) ⊙ (g^(t) + Wᵀ δ^(t+1))     t = τ .. 1

as its strategy runs it (the compiled loop's kernels; the framework loop with its
autograd graph), from a fixed a and g; and, as the control, one step's operations (one
forward step and one backward step, the same products and element-wise maps, by the same
code: the compiled loop's kernels over one step) timed on their own, repeated: what P
cores give each step of the chain.  On P cores against one
(a baseline ``{threads: 1}``), both are timed in pairs: the chain can gain no more than
its steps do unless something cut the chain itself.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from rnnbench.core import compiled
from rnnbench.core.recurrence import PYTHON_LOOPS
from rnnbench.facts import COMPILED_BPTT, NO_GRAPH_BPTT
from rnnbench.harness import training
from rnnbench.harness.sides import Side
from rnnbench.job.cell import Cell

# The sequential BPTTs whose chain can be timed apart (the fused kernel folds U x into
# its loop: its chain is not separable).
CHAINED = ("bptt", COMPILED_BPTT, NO_GRAPH_BPTT)


def has_chain(cell: Cell) -> bool:
    """Whether the cell's row gets the chain's time (an Elman-recurrence BPTT on CPU)."""
    return (
        cell.strategy in CHAINED
        and cell.model in ("elman", "single_output")
        and cell.device == "cpu"
    )


def tensors(cell: Cell) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """a (τ, B, H) and g (τ, B, H), drawn once from the cell's seed, and the model's W."""
    task = cell.make_task()
    model = training.initial_model(cell, task.n_in, task.n_out)
    gen = torch.Generator().manual_seed(cell.seed)
    dtype = getattr(torch, cell.dtype)
    shape = (cell.tau, cell.batch, cell.hidden)
    a = torch.randn(shape, generator=gen, dtype=dtype)
    g = torch.randn(shape, generator=gen, dtype=dtype) * 0.01
    return a, g, model.W.detach().clone()


def chain_run(
    cell: Cell, a: torch.Tensor, g: torch.Tensor, W: torch.Tensor
) -> Callable[[], object]:
    """One forward and backward of the chain, as the cell's strategy runs it."""
    if cell.strategy == COMPILED_BPTT:
        ops = compiled.load()

        def kernels() -> object:
            h = ops.forward(a, W)
            return ops.backward(g, h, W)

        return kernels
    if cell.strategy == NO_GRAPH_BPTT:

        def by_hand() -> object:
            h = PYTHON_LOOPS.forward(a, W)
            return PYTHON_LOOPS.backward(g, h, W)

        return by_hand
    a_leaf, W_leaf = a.clone().requires_grad_(True), W.clone().requires_grad_(True)
    gs = list(g.unbind(0))

    def framework() -> object:
        h = torch.zeros_like(a_leaf[0])
        w_t = W_leaf.t()
        hs = []
        for a_t in a_leaf.unbind(0):
            h = torch.tanh(torch.addmm(a_t, h, w_t))
            hs.append(h)
        torch.autograd.backward(hs, gs)
        return None

    return framework


def op_run(cell: Cell, a: torch.Tensor, g: torch.Tensor, W: torch.Tensor) -> Callable[[], object]:
    """One step's operations of the chain, forward and backward, on their own, run by the
    code the chain runs: for the compiled loop its own kernels over the τ steps with
    each step's input given (the chain's own h^(t-1) and δ^(t+1), computed once), so no
    step waits for the one before and only the dependency differs from the chain; for a
    Python loop one step's operations, one call each, as each step of its loop makes."""
    if cell.strategy == COMPILED_BPTT:
        ops = compiled.load()
        h = ops.forward(a, W)
        d = ops.backward(g, h, W)
        prev = torch.cat([torch.zeros_like(h[:1]), h[:-1]])
        after = torch.cat([d[1:], torch.zeros_like(d[:1])])

        def steps() -> object:
            ops.forward_steps(a, W, prev)
            return ops.backward_steps(g, h, W, after)

        return steps
    a0, g0, h0 = a[0].clone(), g[0].clone(), torch.tanh(a[0])
    w_t = W.t().contiguous()

    def step() -> object:
        h = torch.tanh(torch.addmm(a0, h0, w_t))
        return (1 - h * h) * torch.addmm(g0, h0, W)

    return step


def control_runs(cell: Cell) -> int:
    """How many runs of the control make the chain's τ steps (1 where it runs them all)."""
    return 1 if cell.strategy == COMPILED_BPTT else cell.tau


def sides(cell: Cell, threads: int) -> tuple[Side, Side]:
    """(the chain, the control) as sides on ``threads`` threads."""
    a, g, W = tensors(cell)
    return Side(chain_run(cell, a, g, W), threads), Side(op_run(cell, a, g, W), threads)
