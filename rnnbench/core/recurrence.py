"""Elman's recurrence and its exact backward as two loops over t, behind one autograd
Function: the loops compiled (:mod:`rnnbench.core.compiled`) or written with the
framework's operations and no autograd graph (:data:`PYTHON_LOOPS`).

    forward   h^(t) = tanh(a^(t) + W h^(t-1)),  a^(t) = b + U x^(t),  h^(0) = 0
    backward  delta^(t) = (1 - h^(t)^2) * (g^(t) + W^T delta^(t+1))   (eqs. 10.21, 10.26)

where g^(t) = dL/dh^(t) through the outputs.  dL/dW = sum_t delta^(t) h^(t-1)^T is one
batched product after the loop; b + U x and o = c + V h stay batched torch products.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch


class Loops(Protocol):
    """The two loops: ``forward(a, W) -> h`` and ``backward(g, h, W) -> delta``."""

    def forward(self, a: torch.Tensor, W: torch.Tensor) -> torch.Tensor: ...

    def backward(self, g: torch.Tensor, h: torch.Tensor, W: torch.Tensor) -> torch.Tensor: ...


class PythonLoops:
    """The loops with the framework's operations, one step at a time, in place, with no
    autograd graph: the framework loop's per-operation cost without autograd's."""

    @staticmethod
    def forward(a: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        h = torch.empty_like(a)
        prev, w_t = torch.zeros_like(a[0]), W.t()
        for t in range(a.shape[0]):
            torch.addmm(a[t], prev, w_t, out=h[t])
            prev = h[t].tanh_()
        return h

    @staticmethod
    def backward(g: torch.Tensor, h: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        delta = torch.empty_like(g)
        later = torch.zeros_like(g[0])
        for t in range(g.shape[0] - 1, -1, -1):
            torch.addmm(g[t], later, W, out=delta[t])  # g + W^T delta^(t+1), row vectors
            delta[t].mul_(1 - h[t] * h[t])
            later = delta[t]
        return delta


PYTHON_LOOPS = PythonLoops()


class Recurrence(torch.autograd.Function):
    """h = (h^(1) .. h^(tau)) from a = b + U x and W by ``loops``; backward gives dL/da
    and dL/dW."""

    @staticmethod
    def forward(ctx: Any, loops: Loops, a: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        h = loops.forward(a, W)
        ctx.loops = loops
        ctx.save_for_backward(h, W)
        return h

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[None, torch.Tensor, torch.Tensor | None]:
        h, W = ctx.saved_tensors
        delta = ctx.loops.backward(g.contiguous(), h, W)  # dL/da^(t)
        dW = None
        if ctx.needs_input_grad[2]:  # sum_t delta^(t) h^(t-1)^T, h^(0) = 0: one product
            dW = delta[1:].flatten(0, 1).t() @ h[:-1].flatten(0, 1)
        return None, delta, dW


def recurrence(loops: Loops, a: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """h^(1..tau) (tau, B, H) for a = b + U x^(t) (tau, B, H), forward and backward by
    ``loops``."""
    return Recurrence.apply(loops, a, W)
