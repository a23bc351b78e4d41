"""Jordan (output-to-hidden) strategies: teacher forcing (all steps at once, or a time
slice of them), free running and scheduled sampling (the model fed its own outputs).

    a^(t) = b + W f^(t-1) + U x^(t);  h^(t) = tanh(a^(t));  o^(t) = c + V h^(t)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from rnnbench.core.models import Jordan
from rnnbench.core.strategies.common import eager_sum, generator, nll, one_hot, zeros
from rnnbench.errors import UsageError, check_int


def jordan_outputs(model: Jordan, x, y, feed: Callable) -> torch.Tensor:
    """Step-by-step Jordan network; ``feed(t, o_t, y_t)`` gives f^(t) for step t+1."""
    f = zeros(model, x.shape[1], model.n_out)
    outs = []
    w_t = model.W.t()  # once, not per step
    ys = y.unbind(0) if y is not None else [None] * x.shape[0]
    for t, (ux_t, y_t) in enumerate(zip(model.input_term(x).unbind(0), ys)):
        o = model.output(model.step(ux_t, f, w_t))
        outs.append(o)
        f = feed(t, o, y_t)
    return torch.stack(outs)


def feedback_fn(kind: str, generator: torch.Generator | None) -> Callable:
    """f^(t) from the model's own o^(t): softmax (differentiable), argmax or a sample."""
    if kind == "softmax":
        return lambda o: torch.softmax(o, dim=-1)
    if kind == "argmax":
        return lambda o: one_hot(o.detach().argmax(-1), o.shape[-1], o)
    if kind == "sample":

        def sample(o):
            p = torch.softmax(o.detach(), dim=-1)
            idx = torch.multinomial(p, 1, generator=generator).squeeze(-1)
            return one_hot(idx, o.shape[-1], o)

        return sample
    raise UsageError(f"feedback: unknown feedback {kind!r}; allowed: softmax, argmax, sample")


# How teacher forcing forms a = b + U x^(t) + W f^(t-1): "sum" adds a lookup of the
# previous targets (f^(0) = 0 as a lookup of an extra zero column of W) to the input term
# out of place; "inplace" writes into the input term's slice a[1:], which autograd pays for
# with a copy of the slice in backward (the slower form, kept as a candidate of best_tf).
TF_IMPLS = ("sum", "inplace")


def teacher_forced(model: Jordan, x, y, impl: str = "sum") -> torch.Tensor:
    """All steps at once: a = b + U x^(t) + W one_hot(y^(t-1)), f^(0) = 0.

    W one_hot(y) is column y of W: an embedding lookup, no one-hot tensor."""
    if impl == "inplace":
        a = model.input_term(x)
        if x.shape[0] > 1:
            a[1:] += F.embedding(y[:-1], model.W.t())
        return model.output(torch.tanh(a))
    columns = torch.cat([model.W.t(), model.W.new_zeros(1, model.n_hidden)])
    previous = torch.cat([y.new_full((1, *y.shape[1:]), model.n_out), y[:-1]])
    return model.output(torch.tanh(model.input_term(x) + F.embedding(previous, columns)))


def hold_w_zero(model: Jordan) -> None:
    """W = 0, frozen (no gradient): a = b + U x^(t), the fed-back f^(t-1) reaches nothing."""
    with torch.no_grad():
        model.W.zero_()
    model.W.requires_grad_(False)


def teacher_forcing(model, x, y, chunk: int | None = None, w_zero: bool = False, impl: str = "sum"):
    """The true y^(t-1) is fed back, so all tau steps run as one batched computation.

    Depth 1.  With ``chunk`` the steps are processed ``chunk`` at a time, each
    chunk's gradient computed at once, so activation memory is O(chunk).
    ``w_zero``: the no-feedback control — the model's W is held at 0 (:func:`hold_w_zero`),
    so its teacher-forced and free-running losses are equal by construction and the
    teacher-forced loss shows what the input alone is worth.  ``impl``: how a is formed
    (:data:`TF_IMPLS`; the same arithmetic and gradient).
    """
    if w_zero:
        hold_w_zero(model)
    if chunk is None:
        return nll(teacher_forced(model, x, y, impl), y)

    def segments():
        for s in range(0, x.shape[0], chunk):
            yield teacher_forcing_slice(model, x, y, s, s + chunk, impl)

    return eager_sum(model, segments)


def teacher_forcing_slice(model, x, y, start: int, end: int, impl: str = "sum") -> torch.Tensor:
    """Teacher-forced loss of the steps [start, end) of the sequence (x, y).

    The slice's first step needs y^(start-1) from the data, so it is prepended;
    f^(0) = 0 only when start is 0.  Summing the slices of a partition of
    range(tau) gives :func:`teacher_forcing`'s loss (the time-parallel split).
    """
    lo = max(start - 1, 0)
    o = teacher_forced(model, x[lo:end], y[lo:end], impl)
    return nll(o[start - lo :], y[start:end])


def free_running(model, x, y, feedback: str = "softmax", seed: int = 0):
    """The model consumes its own outputs: f^(t) = softmax(o^(t)) | one_hot(argmax) | sample.

    BPTT through the whole chain: depth tau, O(tau) memory.  Gradients flow
    through the feedback only for ``softmax``.
    """
    feed = feedback_fn(feedback, generator(model, seed) if feedback == "sample" else None)
    return nll(jordan_outputs(model, x, None, lambda t, o, y_t: feed(o)), y)


SCHEDULES = ("linear", "exponential", "inverse_sigmoid")


def sampling_probability(
    schedule: str, step: int, k: float | None = None, c: float = 1e-3, eps_min: float = 0.0
) -> float:
    """epsilon_i, the probability of feeding the truth at training step i (Bengio et al. 2015).

    linear: max(eps_min, k - c i), k = 1;  exponential: k^i, k = 0.999;
    inverse_sigmoid: k / (k + exp(i / k)), k = 100.
    """
    check_int("step", step, 0)
    if schedule == "linear":
        return max(float(eps_min), min(1.0, (1.0 if k is None else k) - c * step))
    if schedule == "exponential":
        k = 0.999 if k is None else k
        if not 0 < k < 1:
            raise UsageError(f"k: the exponential schedule needs 0 < k < 1, got {k}")
        return k**step
    if schedule == "inverse_sigmoid":
        k = 100.0 if k is None else k
        if k < 1:
            raise UsageError(f"k: the inverse_sigmoid schedule needs k >= 1, got {k}")
        return k / (k + math.exp(min(step / k, 700.0)))
    raise UsageError(f"schedule: unknown schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}")


def scheduled_sampling(
    model,
    x,
    y,
    schedule: str = "inverse_sigmoid",
    step: int = 0,
    k: float | None = None,
    c: float = 1e-3,
    eps_min: float = 0.0,
    feedback: str = "sample",
    seed: int = 0,
):
    """Per token, feed the truth with probability epsilon_i, else the model's own output."""
    eps = sampling_probability(schedule, step, k=k, c=c, eps_min=eps_min)
    gen = generator(model, seed)
    feed = feedback_fn(feedback, gen)
    batch = x.shape[1]

    def mixed(t, o, y_t):
        truth = torch.rand(batch, 1, generator=gen, device=o.device, dtype=o.dtype) < eps
        return torch.where(truth, one_hot(y_t, o.shape[-1], o), feed(o))

    return nll(jordan_outputs(model, x, y, mixed), y)
