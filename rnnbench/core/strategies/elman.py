"""Elman (hidden-to-hidden) strategies: the BPTT loops (framework, fused, compiled),
truncated and checkpointed BPTT, and the adjoint-scan strategies (scan_bptt, DEER,
quasi-DEER), whole or as one rank's time shard.

    a^(t) = b + W h^(t-1) + U x^(t);  h^(t) = tanh(a^(t));  o^(t) = c + V h^(t)
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from rnnbench.core import compiled
from rnnbench.core.models import Elman, Jordan
from rnnbench.core.recurrence import PYTHON_LOOPS, recurrence
from rnnbench.core.strategies.common import eager_sum, nll, partition, zeros
from rnnbench.core.strategies.jordan import free_running
from rnnbench.facts import TIME_SPLIT_SOLVERS
from rnnbench.pit import newton


def elman_loop(model: Elman, x: torch.Tensor, h: torch.Tensor) -> tuple[list, torch.Tensor]:
    """Run h^(t) = tanh(b + W h^(t-1) + U x^(t)) over x; return every h and the last."""
    hs = []
    w_t = model.W.t()  # once, not per step
    for ux_t in model.input_term(x).unbind(0):  # unbind, never x[t]: O(tau) backward
        h = model.step(ux_t, h, w_t)
        hs.append(h)
    return hs, h


def _elman_loss(model: Elman, x, y, h) -> tuple[torch.Tensor, torch.Tensor]:
    hs, h = elman_loop(model, x, h)
    if model.single_output:
        return nll(model.output(h), y), h
    return nll(model.output(torch.stack(hs)), y), h


# --------------------------------------------------------------------------- strategies


def bptt(model, x, y):
    """Explicit loop over t, autograd backward: depth tau, O(tau) memory, exact."""
    if isinstance(model, Jordan):
        return free_running(model, x, y, feedback="softmax")
    return _elman_loss(model, x, y, zeros(model, x.shape[1], model.n_hidden))[0]


def bptt_fused(model, x, y):
    """torch.nn.RNN with the model's U, W, b: h = tanh(b + W h^(t-1) + U x^(t)).

    What runs depends on the device: on CUDA cuDNN's fused RNN kernel; on CPU
    there is no fused kernel -- ATen's ``_rnn_tanh`` steps through time with one
    ``addmm`` + ``tanh`` per step, each an autograd node, much like :func:`bptt`.
    """
    rnn = nn.RNN(model.n_in, model.n_hidden, nonlinearity="tanh", device="meta")
    weights = {
        "weight_ih_l0": model.U,
        "weight_hh_l0": model.W,
        "bias_ih_l0": model.b,
        "bias_hh_l0": torch.zeros_like(model.b, requires_grad=False),
    }
    hs, h_last = torch.func.functional_call(rnn, weights, (x,))
    if model.single_output:
        return nll(model.output(h_last[0]), y)
    return nll(model.output(hs), y)


def bptt_compiled(model, x, y):
    """Exact BPTT with the recurrence and its backward as compiled loops (C++, BLAS).

    h^(t) = tanh(b + W h^(t-1) + U x^(t)) step by step in compiled code; b + U x
    and o = c + V h are batched products.  On CUDA this is cuDNN's fused kernel
    (:func:`bptt_fused`): there it already is the compiled baseline.
    """
    if x.device.type == "cuda":
        return bptt_fused(model, x, y)
    h = compiled.recurrence(model.input_term(x), model.W)
    return nll(model.output(h[-1] if model.single_output else h), y)


def bptt_no_graph(model, x, y):
    """The framework loop's operations without an autograd graph: the recurrence forward
    and its backward delta-loop written by hand with torch operations, one step at a time
    (:data:`rnnbench.core.recurrence.PYTHON_LOOPS`); the batched products around it as
    every strategy has them.  Exact.  The control that shows what the framework loop's
    autograd graph costs (against ``bptt``) and what per-operation dispatch costs
    (against ``bptt_compiled``)."""
    h = recurrence(PYTHON_LOOPS, model.input_term(x), model.W)
    return nll(model.output(h[-1] if model.single_output else h), y)


def prepare_compiled(device: str) -> None:
    """Build (once per machine) and load the kernel before anything is timed."""
    if device == "cpu":
        compiled.load()


def truncated_bptt(model, x, y, k: int = 32):
    """Back-propagate at most k steps: h is detached every k steps (biased gradient).

    Each k-step segment's gradient is computed as soon as its forward is done,
    so activation memory is O(k), not O(tau).
    """

    def segments():
        h = zeros(model, x.shape[1], model.n_hidden)
        for s in range(0, x.shape[0], k):
            seg, h = _elman_loss(model, x[s : s + k], y[s : s + k], h.detach())
            yield seg

    return eager_sum(model, segments)


class _Segment(torch.autograd.Function):
    """One checkpointed segment: forward without a graph, recompute it in backward.

    ``run(h_in)`` returns the segment's outputs; only h_in is kept.  The
    parameters are explicit inputs, so ``torch.autograd.grad`` (and gradcheck)
    see their gradients.  Same idea as torch.utils.checkpoint's reentrant mode,
    without its per-saved-tensor Python hooks (non-reentrant mode), which cost
    ~3.5x BPTT's time here against ~1.4x for this.
    """

    @staticmethod
    def forward(ctx, run, h_in, *params):
        ctx.run = run
        ctx.save_for_backward(h_in, *params)
        return run(h_in)

    @staticmethod
    def backward(ctx, *grad_outputs):
        h_in, *params = ctx.saved_tensors
        with torch.enable_grad():
            h = h_in.detach().requires_grad_(True)
            outputs = ctx.run(h)
            grads = torch.autograd.grad(outputs, (h, *params), grad_outputs, allow_unused=True)
        return (None, *grads)


CHECKPOINT_IMPLS = ("segment", "torch")


def segment_count(segments: int | None, tau: int) -> int:
    """Checkpointed segments: the option, or round(sqrt(tau)) by default."""
    return max(1, round(math.sqrt(tau))) if segments is None else segments


def checkpointed_bptt(model, x, y, segments: int | None = None, impl: str = "segment"):
    """Exact BPTT that keeps only each segment's entry state and recomputes the rest.

    With sqrt(tau) segments (the default) memory is O(sqrt(tau)) states at the
    price of a second forward pass (depth ~2 tau).  ``impl``: ``segment`` (a
    custom autograd Function per segment, the default) or ``torch``
    (torch.utils.checkpoint, non-reentrant: same result, more overhead).
    """
    tau = x.shape[0]
    segments = segment_count(segments, tau)
    params = tuple(p for p in model.parameters())
    h = zeros(model, x.shape[1], model.n_hidden)
    total = None
    for s, e in partition(tau, segments):
        xs, ys = x[s:e], y[s:e]

        def run(h0, xs=xs, ys=ys):
            if model.single_output:
                return (elman_loop(model, xs, h0)[1],)
            return _elman_loss(model, xs, ys, h0)

        if impl == "torch":
            out = checkpoint(run, h, use_reentrant=False)
        else:
            out = _Segment.apply(run, h, *params)
        if model.single_output:
            (h,) = out
            continue
        seg, h = out
        total = seg if total is None else total + seg
    return nll(model.output(h), y) if model.single_output else total


def _states_loss(model: Elman, hs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L from every h^(t): o^(t) = c + V h^(t) (only o = c + V h^(tau) for SingleOutput)."""
    return nll(model.output(hs[-1] if model.single_output else hs), y)


def scan_bptt(model, x, y):
    """Sequential forward; exact backward by one reverse associative scan of the
    adjoint lambda_t = g_t + J_{t+1}^T lambda_{t+1}: depth tau + scan_depth(tau)."""
    return _states_loss(model, newton.elman_states(model.input_term(x), model.W), y)


def deer(model, x, y, tol: float | None = None, max_iter: int | None = None):
    """Newton iterations over the whole sequence, each one associative scan over
    (J_t, r_t) (DEER); exact adjoint-scan gradient at the converged states."""
    hs = newton.elman_states(model.input_term(x), model.W, "newton", tol, max_iter)
    return _states_loss(model, hs, y)


def quasi_deer(model, x, y, tol: float | None = None, max_iter: int | None = None):
    """As :func:`deer` with diag(J_t) in the Newton step (a diagonal scan); the
    gradient is still the exact dense adjoint scan at the converged states."""
    hs = newton.elman_states(model.input_term(x), model.W, "quasi", tol, max_iter)
    return _states_loss(model, hs, y)


def elman_time_shard(model, x, y, strategy: str, comm, **options):
    """This rank's share of L when the sequence is split along time over ``comm``'s
    ranks: x holds the rank's steps; y its targets (SingleOutput: the batch's, and
    only the last rank has a loss -- the others return 0 * sum(h) so that backward
    reaches the adjoint's exchange on every rank)."""
    hs = newton.elman_states(
        model.input_term(x), model.W, TIME_SPLIT_SOLVERS[strategy], comm=comm, **options
    )
    if not model.single_output:
        return nll(model.output(hs), y)
    if comm.rank == comm.world - 1:
        return nll(model.output(hs[-1]), y)
    return (hs * 0).sum()
