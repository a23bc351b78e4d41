"""Elman's hidden states solved in parallel time, differentiated by an adjoint scan.

The recurrence h_t = f(h_{t-1}, x_t) = tanh(b + W h_{t-1} + U x_t), h_0 = 0, is
solved for all t in one of three ways:

- ``sequential``: the ordinary loop over t (depth tau);
- ``newton`` (DEER, Lim et al. 2024): Newton's method over the whole sequence
  from the guess h = 0.  Around the guess h^(k), with
  J_t = diag(1 - f_t^2) W and f_t = f(h^(k)_{t-1}, x_t), the step solves the
  linear recurrence h_t = J_t h_{t-1} + (f_t - J_t h^(k)_{t-1}) by one
  associative scan (:func:`rnnbench.pit.scan.linear_scan`), depth
  :func:`rnnbench.facts.scan_depth` (2 ceil(log2 tau) - 1);
- ``quasi`` (quasi-DEER, Gonzalez et al. 2024): the same with diag(J_t), a
  diagonal scan (O(tau H) per iteration, more iterations).

Iterating stops when every residual |h_t - f(h_{t-1}, x_t)| <= tol (1 + |h_t|) — the
test ``converged`` reports, so a run never stops short of it below its cap — or after
``max_iter`` iterations (default and
cap tau: after k iterations the first k states are exact, whatever the
linearisation, so tau iterations give the sequential answer).  The true states
lie in [-1, 1], so an iterate is clipped to it (a NaN set to 0): the exact
prefix is untouched and overflowing iterates cannot poison later steps.
``converged`` means every residual |h_t - f(h_{t-1}, x_t)| <= tol (1 + |h_t|);
iterations, converged and the largest residual go to
:func:`rnnbench.pit.diagnostics.report`.

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

from collections.abc import Callable
from functools import partial

import torch
from torch.autograd.function import once_differentiable

from rnnbench.pit import diagnostics, distributed
from rnnbench.pit.scan import linear_scan

METHODS = ("sequential", "newton", "quasi")
DEFAULT_TOL = {torch.float64: 1e-10, torch.float32: 1e-4}


def default_tol(dtype: torch.dtype) -> float:
    return DEFAULT_TOL.get(dtype, 1e-3)


# --------------------------------------------------------------------------- solvers


def _shifted(h: torch.Tensor, h_in: torch.Tensor | None = None) -> torch.Tensor:
    """h_{t-1} for every t: h_in (default 0), then h_1 .. h_{tau-1}."""
    first = torch.zeros_like(h[:1]) if h_in is None else h_in.unsqueeze(0)
    return torch.cat([first, h[:-1]])


def _sequential(ux: torch.Tensor, W: torch.Tensor, comm=None) -> tuple[torch.Tensor, torch.Tensor]:
    """h_t = tanh(ux_t + W h_{t-1}), one step at a time, written in place.

    Time-split (``comm``): rank r waits for h_{s-1} from rank r - 1 and sends its
    last state on, so the ranks run one after another (depth tau, as one process).
    Returns the states and h_{s-1}.
    """
    hs = torch.empty_like(ux)
    h_in, w_t = torch.zeros_like(ux[0]), W.t()
    if comm is not None and comm.rank > 0:
        h_in = comm.recv(h_in, comm.rank - 1)
    h = h_in
    for t in range(ux.shape[0]):
        torch.addmm(ux[t], h, w_t, out=hs[t])
        h = hs[t].tanh_()
    if comm is not None and comm.rank < comm.world - 1:
        comm.send(h, comm.rank + 1)
    return hs, h_in


def _newton(
    ux: torch.Tensor,
    W: torch.Tensor,
    quasi: bool,
    tol: float | None,
    max_iter: int | None,
    comm=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(Quasi-)Newton iterations over the whole sequence; reports how they went.

    Time-split (``comm``): each iteration's scan exchanges the shards' summaries,
    which give this shard's incoming state; the stopping rule and the report are
    all-reduced (MAX), so every rank iterates as often as one process would.
    Returns the states and h_{s-1} (0 unsplit).
    """
    tau = ux.shape[0] if comm is None else distributed.total_steps(comm, ux.shape[0])
    tol = default_tol(ux.dtype) if tol is None else tol
    max_iter = tau if max_iter is None else min(max_iter, tau)

    def anywhere(flag_or_max: torch.Tensor) -> torch.Tensor:
        return flag_or_max if comm is None else comm.all_max(flag_or_max)

    w_diag = W.diagonal()
    h = torch.zeros_like(ux)
    h_in = torch.zeros_like(ux[0])  # h^(k)_{s-1}: the state before the shard
    iterations = 0
    while True:
        h_prev = _shifted(h, h_in)
        wh = torch.matmul(h_prev, W.t())
        f = torch.tanh(ux + wh)
        # stop on the residual test that ``converged`` reports: |h - f(h_prev)| within
        # tol (1 + |h|) everywhere (all ranks), or at the cap
        misfit = (h - f).abs()
        unconverged = ~(misfit <= tol * (1 + h.abs())).all()
        worst = anywhere(torch.stack([unconverged.to(h.dtype), misfit.max()]))
        if not worst[0].item() or iterations >= max_iter:
            break
        d = 1 - f * f
        if quasi:
            A = d * w_diag
            r = f - A * h_prev
        else:
            A = d.unsqueeze(-1) * W  # diag(d_t) W, (tau, B, H, H)
            r = f - d * wh
        if comm is None:
            new = linear_scan(A, r)
        else:  # the previous shard's last state, unclipped as in one scan, then clipped
            h_in = distributed.incoming_state(A, r, comm)
            new = linear_scan(A, r, h0=h_in if comm.rank else None)
            h_in = h_in.nan_to_num(nan=0.0).clamp(-1, 1)
        h = new.nan_to_num_(nan=0.0).clamp_(-1, 1)
        iterations += 1
    diagnostics.report(iterations, not worst[0].item(), float(worst[1]))
    return h, h_in


def _solver(method: str, tol: float | None, max_iter: int | None, comm=None) -> Callable:
    if method == "sequential":
        return partial(_sequential, comm=comm)
    return partial(_newton, quasi=method == "quasi", tol=tol, max_iter=max_iter, comm=comm)


# --------------------------------------------------------------------------- gradient


def adjoint(
    hs: torch.Tensor, W: torch.Tensor, g: torch.Tensor, h_in: torch.Tensor | None = None, comm=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """delta_t = dL/da_t and dL/dW from g_t = dL/dh_t, by one reverse scan.

    Time-split (``comm``): the scan of this rank's shard, whose first state
    follows h_in; the ranks after it send lambda in (:mod:`rnnbench.pit.distributed`).
    """
    d = 1 - hs * hs
    # J_{t+1}^T = W^T diag(d_{t+1}), (tau, B, H, H), built in reversed time so that
    # no flipped copy of the Jacobians is made: the reverse scan is a forward one
    # over t = tau .. 1 (the element of t = tau multiplies lambda_{tau+1} = 0).
    A = hs.new_empty(hs.shape + hs.shape[-1:])
    torch.mul(W.t(), d[1:].flip(0).unsqueeze(-2), out=A[1:])
    g = g.flip(0)
    if comm is None or comm.world == 1:
        A[0] = 0
        lam = linear_scan(A, g)
    else:  # the shard's last step takes c_r = J_e^T lambda_e from the ranks after it
        A[0] = torch.eye(hs.shape[-1], dtype=hs.dtype, device=hs.device)
        c = distributed.incoming_adjoint(A, g, W.t() * d[0].unsqueeze(-2), comm)
        lam = linear_scan(A, g, h0=c)
    delta = d * lam.flip(0)
    H = hs.shape[-1]
    grad_W = delta.reshape(-1, H).t() @ _shifted(hs, h_in).reshape(-1, H)
    return delta, grad_W


class _ElmanStates(torch.autograd.Function):
    """hs = solve(ux, W) without a graph; backward by :func:`adjoint` at hs."""

    @staticmethod
    def forward(ctx, solve, comm, ux, W):
        hs, h_in = solve(ux, W)
        ctx.save_for_backward(hs, h_in, W)
        ctx.comm = comm
        return hs

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        hs, h_in, W = ctx.saved_tensors
        delta, grad_W = adjoint(hs, W, g, h_in, ctx.comm)
        return None, None, delta, grad_W


def elman_states(
    ux: torch.Tensor,
    W: torch.Tensor,
    method: str = "sequential",
    tol: float | None = None,
    max_iter: int | None = None,
    comm=None,
) -> torch.Tensor:
    """Every h_t of h_t = tanh(ux_t + W h_{t-1}), h_0 = 0, as (tau, B, H), with
    ux_t = b + U x_t; differentiable in ux and W through the adjoint scan.

    ``comm`` (:mod:`rnnbench.pit.distributed`): ux is this rank's time shard of the
    sequence; the states of that shard come back, and backward must be called on
    every rank (it exchanges the adjoint's summaries)."""
    if method not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    return _ElmanStates.apply(_solver(method, tol, max_iter, comm), comm, ux, W)
