"""Elman's hidden states solved in parallel time, differentiated by an adjoint scan.

The recurrence h_t = f(h_{t-1}, x_t) = tanh(b + W h_{t-1} + U x_t), h_0 = 0, is
solved for all t in one of three ways:

- ``sequential``: the ordinary loop over t (depth tau);
- ``newton`` (DEER, Lim et al. 2024): Newton's method over the whole sequence
  from the guess h = 0.  Around the guess h^(k), with
  J_t = diag(1 - f_t^2) W and f_t = f(h^(k)_{t-1}, x_t), the step solves the
  linear recurrence h_t = J_t h_{t-1} + (f_t - J_t h^(k)_{t-1}) by one
  associative scan (:func:`rnnbench.scan.linear_scan`), depth ceil(log2 tau);
- ``quasi`` (quasi-DEER, Gonzalez et al. 2024): the same with diag(J_t), a
  diagonal scan (O(tau H) per iteration, more iterations).

Iterating stops when |h^(k+1) - h^(k)| <= tol (1 + |h^(k+1)|) everywhere (DEER's
rule with atol = rtol = tol) or after ``max_iter`` iterations (default and
cap tau: after k iterations the first k states are exact, whatever the
linearisation, so tau iterations give the sequential answer).  The true states
lie in [-1, 1], so an iterate is clipped to it (a NaN set to 0): the exact
prefix is untouched and overflowing iterates cannot poison later steps.
``converged`` means every residual |h_t - f(h_{t-1}, x_t)| <= tol (1 + |h_t|);
iterations, converged and the largest residual go to
:func:`rnnbench.diagnostics.report`.

The gradient never goes through the iterations.  Given g_t = dL/dh_t (from the
outputs), the adjoint of the recurrence is linear,

    lambda_tau = g_tau,  lambda_t = g_t + J_{t+1}^T lambda_{t+1},
    J_{t+1}^T = W^T diag(1 - h_{t+1}^2)         (book eqs. 10.18-10.21),

and one reverse scan solves it at the converged trajectory; then
delta_t = (1 - h_t^2) * lambda_t is dL/da_t, so dL/dW = sum_t delta_t h_{t-1}^T and
dL/d(b + U x_t) = delta_t (autograd takes that on to U, b and x).  The dense
scan forms tau B H x H Jacobians: O(tau H^3) work, O(tau H^2) transient memory.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable

import torch
from torch.autograd.function import once_differentiable

from . import diagnostics
from .scan import linear_scan

METHODS = ("sequential", "newton", "quasi")
DEFAULT_TOL = {torch.float64: 1e-10, torch.float32: 1e-4}


def default_tol(dtype: torch.dtype) -> float:
    return DEFAULT_TOL.get(dtype, 1e-3)


def scan_depth(tau: int) -> int:
    """Rounds of one associative scan over tau elements, counted as ceil(log2 tau) (>= 1)."""
    return max(1, math.ceil(math.log2(tau)))


# --------------------------------------------------------------------------- solvers


def _shifted(h: torch.Tensor) -> torch.Tensor:
    """h_{t-1} for every t: h_0 = 0, then h_1 .. h_{tau-1}."""
    return torch.cat([torch.zeros_like(h[:1]), h[:-1]])


def _sequential(ux: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """h_t = tanh(ux_t + W h_{t-1}), one step at a time, written in place."""
    hs = torch.empty_like(ux)
    h, w_t = torch.zeros_like(ux[0]), W.t()
    for t in range(ux.shape[0]):
        torch.addmm(ux[t], h, w_t, out=hs[t])
        h = hs[t].tanh_()
    return hs


def _newton(ux: torch.Tensor, W: torch.Tensor, quasi: bool, tol: float | None,
            max_iter: int | None) -> torch.Tensor:
    """(Quasi-)Newton iterations over the whole sequence; reports how they went."""
    tau = ux.shape[0]
    tol = default_tol(ux.dtype) if tol is None else tol
    max_iter = tau if max_iter is None else min(max_iter, tau)
    w_diag = W.diagonal()
    h = torch.zeros_like(ux)
    iterations = 0
    while iterations < max_iter:
        h_prev = _shifted(h)
        wh = torch.matmul(h_prev, W.t())
        f = torch.tanh(ux + wh)
        d = 1 - f * f
        if quasi:
            A = d * w_diag
            r = f - A * h_prev
        else:
            A = d.unsqueeze(-1) * W  # diag(d_t) W, (tau, B, H, H)
            r = f - d * wh
        new = linear_scan(A, r).nan_to_num_(nan=0.0).clamp_(-1, 1)
        iterations += 1
        done = bool(((new - h).abs() <= tol * (1 + new.abs())).all())
        h = new
        if done:
            break
    misfit = (h - torch.tanh(ux + torch.matmul(_shifted(h), W.t()))).abs()
    converged = bool((misfit <= tol * (1 + h.abs())).all())
    diagnostics.report(iterations, converged, float(misfit.max()))
    return h


def _solver(method: str, tol: float | None, max_iter: int | None) -> Callable:
    if method == "sequential":
        return _sequential
    return partial(_newton, quasi=method == "quasi", tol=tol, max_iter=max_iter)


# --------------------------------------------------------------------------- gradient


def adjoint(hs: torch.Tensor, W: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """delta_t = dL/da_t and dL/dW from g_t = dL/dh_t, by one reverse scan."""
    d = 1 - hs * hs
    # J_{t+1}^T = W^T diag(d_{t+1}), (tau, B, H, H), built in reversed time so that
    # no flipped copy of the Jacobians is made: the reverse scan is a forward one
    # over t = tau .. 1 (the element of t = tau multiplies lambda_{tau+1} = 0).
    A = hs.new_empty(hs.shape + hs.shape[-1:])
    A[0] = 0
    torch.mul(W.t(), d[1:].flip(0).unsqueeze(-2), out=A[1:])
    lam = linear_scan(A, g.flip(0)).flip(0)
    delta = d * lam
    H = hs.shape[-1]
    grad_W = delta.reshape(-1, H).t() @ _shifted(hs).reshape(-1, H)
    return delta, grad_W


class _ElmanStates(torch.autograd.Function):
    """hs = solve(ux, W) without a graph; backward by :func:`adjoint` at hs."""

    @staticmethod
    def forward(ctx, solve, ux, W):
        hs = solve(ux, W)
        ctx.save_for_backward(hs, W)
        return hs

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        hs, W = ctx.saved_tensors
        delta, grad_W = adjoint(hs, W, g)
        return None, delta, grad_W


def elman_states(ux: torch.Tensor, W: torch.Tensor, method: str = "sequential",
                 tol: float | None = None, max_iter: int | None = None) -> torch.Tensor:
    """Every h_t of h_t = tanh(ux_t + W h_{t-1}), h_0 = 0, as (tau, B, H), with
    ux_t = b + U x_t; differentiable in ux and W through the adjoint scan."""
    if method not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    return _ElmanStates.apply(_solver(method, tol, max_iter), ux, W)
