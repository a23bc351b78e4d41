"""Training strategies: how the loss L and its gradient are computed.

One public entry point, :func:`loss`, returns the book's total loss

    L = sum_t L^(t) = - sum_t sum_batch log p_model(y^(t) | x^(1..t))

as a scalar tensor whose ``.backward()`` leaves the gradient of the chosen
strategy in the model's parameters.  :data:`STRATEGIES` holds one
:class:`Strategy` record per strategy with every fact a runner needs about it
(docs/design.md, "Where each rule lives").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from rnnbench.core import compiled
from rnnbench.pit import newton
from rnnbench.errors import UsageError, check_int
from rnnbench.core.models import Elman, Jordan, SingleOutput, model_name

# --------------------------------------------------------------------------- checks


def check_inputs(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """Raise a UsageError naming ``x`` or ``y`` when they do not fit ``model``."""
    dtype = model.U.dtype
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise UsageError(f"x: expected a floating-point tensor, got {_describe(x)}")
    if x.dtype != dtype:
        raise UsageError(f"x: dtype {x.dtype} does not match the model's {dtype}")
    if x.dim() != 3 or x.shape[2] != model.n_in:
        raise UsageError(
            f"x: expected shape (tau, batch, n_in={model.n_in}), got {tuple(x.shape)}"
        )
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise UsageError(f"x: tau and batch must be >= 1, got shape {tuple(x.shape)}")
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64:
        raise UsageError(f"y: expected an int64 tensor of class indices, got {_describe(y)}")
    want = (x.shape[1],) if model.single_output else tuple(x.shape[:2])
    if tuple(y.shape) != want:
        names = "(batch,)" if model.single_output else "(tau, batch)"
        raise UsageError(f"y: expected shape {names} = {want}, got {tuple(y.shape)}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= model.n_out):
        raise UsageError(
            f"y: class indices must lie in [0, n_out={model.n_out}), "
            f"got values in [{int(y.min())}, {int(y.max())}]"
        )


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__


# --------------------------------------------------------------------------- shared pieces


def _nll(o: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """sum over every token of -log softmax(o)[y]."""
    return F.cross_entropy(o.reshape(-1, o.shape[-1]), y.reshape(-1), reduction="sum")


def _zeros(model: nn.Module, batch: int, width: int) -> torch.Tensor:
    return torch.zeros(batch, width, dtype=model.U.dtype, device=model.U.device)


def _elman_states(model: Elman, x: torch.Tensor, h: torch.Tensor) -> tuple[list, torch.Tensor]:
    """Run h^(t) = tanh(b + W h^(t-1) + U x^(t)) over x; return every h and the last."""
    hs = []
    w_t = model.W.t()  # once, not per step
    for ux_t in model.input_term(x).unbind(0):  # unbind, never x[t]: O(tau) backward
        h = model.step(ux_t, h, w_t)
        hs.append(h)
    return hs, h


def _elman_loss(model: Elman, x, y, h) -> tuple[torch.Tensor, torch.Tensor]:
    hs, h = _elman_states(model, x, h)
    if model.single_output:
        return _nll(model.output(h), y), h
    return _nll(model.output(torch.stack(hs)), y), h


def _one_hot(index: torch.Tensor, n: int, like: torch.Tensor) -> torch.Tensor:
    return F.one_hot(index, n).to(like.dtype)


def _jordan_outputs(model: Jordan, x, y, feed: Callable) -> torch.Tensor:
    """Step-by-step Jordan network; ``feed(t, o_t, y_t)`` gives f^(t) for step t+1."""
    f = _zeros(model, x.shape[1], model.n_out)
    outs = []
    w_t = model.W.t()  # once, not per step
    ys = y.unbind(0) if y is not None else [None] * x.shape[0]
    for t, (ux_t, y_t) in enumerate(zip(model.input_term(x).unbind(0), ys)):
        o = model.output(model.step(ux_t, f, w_t))
        outs.append(o)
        f = feed(t, o, y_t)
    return torch.stack(outs)


def _feedback(kind: str, generator: torch.Generator | None) -> Callable:
    """f^(t) from the model's own o^(t): softmax (differentiable), argmax or a sample."""
    if kind == "softmax":
        return lambda o: torch.softmax(o, dim=-1)
    if kind == "argmax":
        return lambda o: _one_hot(o.detach().argmax(-1), o.shape[-1], o)
    if kind == "sample":
        def sample(o):
            p = torch.softmax(o.detach(), dim=-1)
            idx = torch.multinomial(p, 1, generator=generator).squeeze(-1)
            return _one_hot(idx, o.shape[-1], o)
        return sample
    raise UsageError(f"feedback: unknown feedback {kind!r}; allowed: softmax, argmax, sample")


def _generator(model: nn.Module, seed: int) -> torch.Generator:
    g = torch.Generator(device=model.U.device)
    g.manual_seed(int(seed))
    return g


class _EagerSum(torch.autograd.Function):
    """A sum of segment losses whose gradient is computed segment by segment.

    Forward runs each segment's forward *and* backward at once (so only one
    segment's activations are alive at a time) and keeps the summed gradient;
    backward hands it out.  Memory held for backward is one gradient-sized
    buffer, whatever tau is.
    """

    @staticmethod
    def forward(ctx, segments: Callable[[], Iterator[torch.Tensor]], *params):
        grads = [torch.zeros_like(p) for p in params]
        total = torch.zeros((), dtype=params[0].dtype, device=params[0].device)
        with torch.enable_grad():
            for seg in segments():
                parts = torch.autograd.grad(seg, params, allow_unused=True)
                for acc, g in zip(grads, parts):
                    if g is not None:
                        acc.add_(g)
                total += seg.detach()
        ctx.save_for_backward(*grads)
        return total

    @staticmethod
    def backward(ctx, grad_total):
        return (None, *(grad_total * g for g in ctx.saved_tensors))


def _eager_sum(model: nn.Module, segments: Callable[[], Iterator[torch.Tensor]]) -> torch.Tensor:
    params = [p for p in model.parameters() if p.requires_grad]
    if not torch.is_grad_enabled() or not params:
        with torch.no_grad():
            return sum(segments(), torch.zeros((), dtype=model.U.dtype, device=model.U.device))
    return _EagerSum.apply(segments, *params)


def partition(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous near-equal ranges covering range(n) (floor edges); some
    are empty when n < parts.  The one splitter of a sequence or a batch."""
    edges = [(i * n) // parts for i in range(parts + 1)]
    return list(zip(edges, edges[1:]))


# --------------------------------------------------------------------------- strategies


def bptt(model, x, y):
    """Explicit loop over t, autograd backward: depth tau, O(tau) memory, exact."""
    if isinstance(model, Jordan):
        return free_running(model, x, y, feedback="softmax")
    return _elman_loss(model, x, y, _zeros(model, x.shape[1], model.n_hidden))[0]


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
        return _nll(model.output(h_last[0]), y)
    return _nll(model.output(hs), y)


def bptt_compiled(model, x, y):
    """Exact BPTT with the recurrence and its backward as compiled loops (C++, BLAS).

    h^(t) = tanh(b + W h^(t-1) + U x^(t)) step by step in compiled code; b + U x
    and o = c + V h are batched products.  On CUDA this is cuDNN's fused kernel
    (:func:`bptt_fused`): there it already is the compiled baseline.
    """
    if x.device.type == "cuda":
        return bptt_fused(model, x, y)
    h = compiled.recurrence(model.input_term(x), model.W)
    return _nll(model.output(h[-1] if model.single_output else h), y)


def _prepare_compiled(device: str) -> None:
    """Build (once per machine) and load the kernel before anything is timed."""
    if device == "cpu":
        compiled.load()


def truncated_bptt(model, x, y, k: int = 32):
    """Back-propagate at most k steps: h is detached every k steps (biased gradient).

    Each k-step segment's gradient is computed as soon as its forward is done,
    so activation memory is O(k), not O(tau).
    """
    def segments():
        h = _zeros(model, x.shape[1], model.n_hidden)
        for s in range(0, x.shape[0], k):
            seg, h = _elman_loss(model, x[s : s + k], y[s : s + k], h.detach())
            yield seg

    return _eager_sum(model, segments)


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


def _segments(segments: int | None, tau: int) -> int:
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
    segments = _segments(segments, tau)
    params = tuple(p for p in model.parameters())
    h = _zeros(model, x.shape[1], model.n_hidden)
    total = None
    for s, e in partition(tau, segments):
        xs, ys = x[s:e], y[s:e]
        if model.single_output:
            def run(h0, xs=xs):
                return (_elman_states(model, xs, h0)[1],)
        else:
            def run(h0, xs=xs, ys=ys):
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
    return _nll(model.output(h), y) if model.single_output else total


def _teacher_forced(model: Jordan, x, y) -> torch.Tensor:
    """All steps at once: a = b + U x^(t) + W one_hot(y^(t-1)), f^(0) = 0."""
    a = model.input_term(x)
    if x.shape[0] > 1:
        # W one_hot(y) is column y of W: an embedding lookup, no one-hot tensor.
        a[1:] += F.embedding(y[:-1], model.W.t())
    return model.output(torch.tanh(a))


def hold_w_zero(model: Jordan) -> None:
    """W = 0, frozen (no gradient): a = b + U x^(t), the fed-back f^(t-1) reaches nothing."""
    with torch.no_grad():
        model.W.zero_()
    model.W.requires_grad_(False)


def teacher_forcing(model, x, y, chunk: int | None = None, w_zero: bool = False):
    """The true y^(t-1) is fed back, so all tau steps run as one batched computation.

    Depth 1.  With ``chunk`` the steps are processed ``chunk`` at a time, each
    chunk's gradient computed at once, so activation memory is O(chunk).
    ``w_zero``: the no-feedback control — the model's W is held at 0 (:func:`hold_w_zero`),
    so its teacher-forced and free-running losses are equal by construction and the
    teacher-forced loss shows what the input alone is worth.
    """
    if w_zero:
        hold_w_zero(model)
    if chunk is None:
        return _nll(_teacher_forced(model, x, y), y)

    def segments():
        for s in range(0, x.shape[0], chunk):
            yield teacher_forcing_slice(model, x, y, s, s + chunk)

    return _eager_sum(model, segments)


def teacher_forcing_slice(model, x, y, start: int, end: int) -> torch.Tensor:
    """Teacher-forced loss of the steps [start, end) of the sequence (x, y).

    The slice's first step needs y^(start-1) from the data, so it is prepended;
    f^(0) = 0 only when start is 0.  Summing the slices of a partition of
    range(tau) gives :func:`teacher_forcing`'s loss (the time-parallel split).
    """
    lo = max(start - 1, 0)
    o = _teacher_forced(model, x[lo:end], y[lo:end])
    return _nll(o[start - lo :], y[start:end])


def free_running(model, x, y, feedback: str = "softmax", seed: int = 0):
    """The model consumes its own outputs: f^(t) = softmax(o^(t)) | one_hot(argmax) | sample.

    BPTT through the whole chain: depth tau, O(tau) memory.  Gradients flow
    through the feedback only for ``softmax``.
    """
    feed = _feedback(feedback, _generator(model, seed) if feedback == "sample" else None)
    return _nll(_jordan_outputs(model, x, None, lambda t, o, y_t: feed(o)), y)


def _states_loss(model: Elman, hs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L from every h^(t): o^(t) = c + V h^(t) (only o = c + V h^(tau) for SingleOutput)."""
    return _nll(model.output(hs[-1] if model.single_output else hs), y)


def scan_bptt(model, x, y):
    """Sequential forward; exact backward by one reverse associative scan of the
    adjoint lambda_t = g_t + J_{t+1}^T lambda_{t+1}: depth tau + ceil(log2 tau)."""
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


# The adjoint-scan strategies and their solver (newton.METHODS): the ones
# whose Elman sequence the worker-group harness splits along time.
TIME_SPLIT_METHODS = {"scan_bptt": "sequential", "deer": "newton", "quasi_deer": "quasi"}


def elman_time_shard(model, x, y, strategy: str, comm, **options):
    """This rank's share of L when the sequence is split along time over ``comm``'s
    ranks: x holds the rank's steps; y its targets (SingleOutput: the batch's, and
    only the last rank has a loss -- the others return 0 * sum(h) so that backward
    reaches the adjoint's exchange on every rank)."""
    hs = newton.elman_states(model.input_term(x), model.W,
                                    TIME_SPLIT_METHODS[strategy], comm=comm, **options)
    if not model.single_output:
        return _nll(model.output(hs), y)
    if comm.rank == comm.world - 1:
        return _nll(model.output(hs[-1]), y)
    return (hs * 0).sum()


SCHEDULES = ("linear", "exponential", "inverse_sigmoid")


def sampling_probability(schedule: str, step: int, k: float | None = None,
                         c: float = 1e-3, eps_min: float = 0.0) -> float:
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


def scheduled_sampling(model, x, y, schedule: str = "inverse_sigmoid", step: int = 0,
                       k: float | None = None, c: float = 1e-3, eps_min: float = 0.0,
                       feedback: str = "sample", seed: int = 0):
    """Per token, feed the truth with probability epsilon_i, else the model's own output."""
    eps = sampling_probability(schedule, step, k=k, c=c, eps_min=eps_min)
    gen = _generator(model, seed)
    feed = _feedback(feedback, gen)
    batch = x.shape[1]

    def mixed(t, o, y_t):
        truth = torch.rand(batch, 1, generator=gen, device=o.device, dtype=o.dtype) < eps
        return torch.where(truth, _one_hot(y_t, o.shape[-1], o), feed(o))

    return _nll(_jordan_outputs(model, x, y, mixed), y)


# --------------------------------------------------------------------------- option checks
# Each strategy's option values, checked once before anything runs: a bad value
# in a job file or on the command line is an error naming the option (exit 2),
# not a failed row after Ray has started.


def _positive(key: str, none_ok: bool):
    """The check of an option that is a positive integer (or None, when ``none_ok``)."""
    return lambda options, tau: None if key not in options or (
        none_ok and options[key] is None) else check_int(key, options[key])


def _check_teacher(options: dict, tau: int | None) -> None:
    _positive("chunk", True)(options, tau)
    if "w_zero" in options and not isinstance(options["w_zero"], bool):
        raise UsageError(f"w_zero: must be true or false, got {options['w_zero']!r}")


def _check_checkpointed(options: dict, tau: int | None) -> None:
    if options.get("segments") is not None:
        check_int("segments", options["segments"], upper=tau)
    if options.get("impl", "segment") not in CHECKPOINT_IMPLS:
        raise UsageError(f"impl: unknown checkpoint implementation {options['impl']!r}; "
                         f"allowed: {', '.join(CHECKPOINT_IMPLS)}")


def _check_feedback(options: dict, tau: int | None) -> None:
    if "feedback" in options:
        _feedback(options["feedback"], None)
    if "seed" in options:
        check_int("seed", options["seed"], 0)


def _check_newton(options: dict, tau: int | None) -> None:
    if options.get("max_iter") is not None:
        check_int("max_iter", options["max_iter"])
    tol = options.get("tol")
    if tol is not None and (isinstance(tol, bool) or not isinstance(tol, (int, float))
                            or not 0 < tol < math.inf):
        raise UsageError(f"tol: must be a positive number, got {tol!r}")


def _check_scheduled(options: dict, tau: int | None) -> None:
    _check_feedback(options, tau)
    for key in ("k", "c", "eps_min"):
        value = options.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise UsageError(f"{key}: must be a number, got {value!r}")
    sampling_probability(options.get("schedule", "inverse_sigmoid"), options.get("step", 0),
                         k=options.get("k"), c=options.get("c", 1e-3),
                         eps_min=options.get("eps_min", 0.0))


# --------------------------------------------------------------------------- saved bytes
# What each strategy must keep for backward, in bytes (tests compare it with
# memory.saved_bytes), given the model, options o, tau T, batch B, hidden H,
# outputs O, parameters P and the item size i.  Cross-entropy also keeps its
# total weight: one element (+ i).


def _saved_elman(model, o, T, B, H, O, P, i) -> int:
    """Every h^(t) (tanh output, also W's matmul input) plus h^(0), the stacked copy
    the output layer reads and the log-softmax output; one output for single_output."""
    if model == "single_output":
        return ((T + 1) * B * H + B * O) * i + i
    if model == "elman":
        return ((2 * T + 1) * B * H + T * B * O) * i + i
    return _saved_jordan(model, o, T, B, H, O, P, i)


def _saved_jordan(model, o, T, B, H, O, P, i, fed: int = 2) -> int:
    """A Jordan loop: h^(t), the fed-back f^(0) .. f^(tau-1), the log-softmax output
    (scheduled sampling with softmax feedback: each softmax output too)."""
    return T * B * (H + fed * O) * i + i


def _saved_scheduled(model, o, T, B, H, O, P, i) -> int:
    return _saved_jordan(model, o, T, B, H, O, P, i, 3 if o.get("feedback") == "softmax" else 2)


def _saved_eager(model, o, T, B, H, O, P, i) -> int:
    """Each segment's gradient taken during the forward: one gradient-sized buffer."""
    return P * i + i


def _saved_checkpointed(model, o, T, B, H, O, P, i) -> int:
    """Each segment's entry state (single_output: plus the last state and its output)."""
    seg = min(_segments(o.get("segments"), T), T)
    if model == "single_output":
        return (seg * B * H + B * H + B * O) * i + i
    return seg * B * H * i


def _saved_teacher(model, o, T, B, H, O, P, i) -> int:
    """tanh and log-softmax outputs, T B (H + O); chunked: one gradient buffer."""
    if o.get("chunk"):
        return _saved_eager(model, o, T, B, H, O, P, i)
    return T * B * (H + O) * i + i


def _saved_states(model, o, T, B, H, O, P, i) -> int:
    """The compiled loop and the adjoint-scan strategies keep every h^(t) once and the
    log-softmax output; the scans' tau B H^2 Jacobians live only inside the forward or
    the backward."""
    return (T * B * H + (B * O if model == "single_output" else T * B * O)) * i + i


# --------------------------------------------------------------------------- registry


def _tau(tau, **_):
    return tau


def _newton_depth(tau, iterations=None, **_):
    """iterations x ceil(log2 tau): known only once a call has reported its iterations."""
    return None if iterations is None else iterations * newton.scan_depth(tau)


@dataclass(frozen=True)
class Strategy:
    """One way to compute L and its gradient, with every fact a runner needs about it."""

    name: str
    fn: Callable
    models: tuple[str, ...]
    depth: Callable[..., int | None]  # sequential depth given tau, options (and iterations)
    memory: str  # activation-memory class
    exact: bool  # exact gradient of the loss it reports
    options: tuple[str, ...] = field(default_factory=tuple)  # option names
    check: Callable[[dict, int | None], None] = lambda options, tau: None  # option values
    split: str = "batch"  # how the worker-group harness shares it out: "time" | "batch"
    # its gradient is taken during the forward: forward and backward cannot be timed apart
    grad_in_forward: Callable[[dict], bool] = lambda options: False
    saved_bytes: Callable[..., int] = _saved_elman  # bytes kept for backward (above)
    # called with the device before the first call (building compiled code, say)
    prepare: Callable[[str], None] | None = None


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("bptt", bptt, ("elman", "single_output", "jordan"), _tau, "O(tau)", True),
        Strategy("bptt_fused", bptt_fused, ("elman", "single_output"), _tau, "O(tau)", True),
        Strategy("bptt_compiled", bptt_compiled, ("elman", "single_output"), _tau, "O(tau)",
                 True, saved_bytes=_saved_states, prepare=_prepare_compiled),
        Strategy("truncated_bptt", truncated_bptt, ("elman",), _tau, "O(k)", False, ("k",),
                 check=_positive("k", False), grad_in_forward=lambda o: True,
                 saved_bytes=_saved_eager),
        Strategy("checkpointed_bptt", checkpointed_bptt, ("elman", "single_output"),
                 lambda tau, **_: 2 * tau, "O(sqrt(tau))", True, ("segments", "impl"),
                 check=_check_checkpointed, saved_bytes=_saved_checkpointed),
        Strategy("teacher_forcing", teacher_forcing, ("jordan",), lambda tau, **_: 1,
                 "O(tau)", True, ("chunk", "w_zero"), check=_check_teacher, split="time",
                 grad_in_forward=lambda o: o.get("chunk") is not None,
                 saved_bytes=_saved_teacher),
        Strategy("free_running", free_running, ("jordan",), _tau, "O(tau)", True,
                 ("feedback", "seed"), check=_check_feedback, saved_bytes=_saved_jordan),
        Strategy("scheduled_sampling", scheduled_sampling, ("jordan",), _tau, "O(tau)", True,
                 ("schedule", "step", "k", "c", "eps_min", "feedback", "seed"),
                 check=_check_scheduled, saved_bytes=_saved_scheduled),
        Strategy("scan_bptt", scan_bptt, ("elman", "single_output"),
                 lambda tau, **_: tau + newton.scan_depth(tau), "O(tau H^2)", True,
                 split="time", saved_bytes=_saved_states),
        Strategy("deer", deer, ("elman", "single_output"), _newton_depth, "O(tau H^2)", True,
                 ("tol", "max_iter"), check=_check_newton, split="time",
                 saved_bytes=_saved_states),
        Strategy("quasi_deer", quasi_deer, ("elman", "single_output"), _newton_depth,
                 "O(tau H^2)", True, ("tol", "max_iter"), check=_check_newton, split="time",
                 saved_bytes=_saved_states),
    )
}


def get(strategy: str) -> Strategy:
    if strategy not in STRATEGIES:
        raise UsageError(
            f"strategy: unknown strategy {strategy!r}; allowed: {', '.join(STRATEGIES)}"
        )
    return STRATEGIES[strategy]


def check(model: str, strategy: str, options: dict | None = None,
          tau: int | None = None) -> Strategy:
    """Validate a model/strategy pair, the strategy's option names and values."""
    s = get(strategy)
    if model not in s.models:
        raise UsageError(
            f"strategy: {strategy} does not fit model {model!r}; it accepts: {', '.join(s.models)}"
        )
    for key in options or {}:
        if key not in s.options:
            allowed = ", ".join(s.options) or "none"
            raise UsageError(f"{strategy}.{key}: unknown option; allowed: {allowed}")
    s.check(options or {}, tau)
    return s


def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, strategy: str = "bptt",
         **options) -> torch.Tensor:
    """The total loss L (nats, summed over time and batch) under ``strategy``."""
    name = model_name(model)
    check_inputs(model, x, y)
    s = check(name, strategy, options, tau=x.shape[0])
    return s.fn(model, x, y, **options)


def logits(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None,
           feedback: str = "teacher", seed: int = 0) -> torch.Tensor:
    """Outputs o (tau, B, n_out) — (B, n_out) for SingleOutput — for evaluation.

    For Jordan, ``feedback`` picks what is fed back: ``teacher`` (the true
    y^(t-1)), or the model's own ``argmax`` / ``sample`` / ``softmax``.  Elman
    and SingleOutput ignore it: they never consume their outputs.
    """
    if isinstance(model, Jordan):
        if feedback == "teacher":
            if y is None:
                raise UsageError("y: teacher-forced outputs need the targets")
            return _teacher_forced(model, x, y)
        feed = _feedback(feedback, _generator(model, seed) if feedback == "sample" else None)
        return _jordan_outputs(model, x, None, lambda t, o, y_t: feed(o))
    hs, h = _elman_states(model, x, _zeros(model, x.shape[1], model.n_hidden))
    return model.output(h if isinstance(model, SingleOutput) else torch.stack(hs))


# Strategies that compute the exact gradient by stepping through time one step
# after another (depth tau): the candidates for a fair "best BPTT" baseline.
SEQUENTIAL_BPTT = ("bptt", "bptt_fused", "bptt_compiled")


def bptt_candidates(model: str) -> list[str]:
    """The registered exact sequential BPTT strategies for ``model``."""
    return [name for name in SEQUENTIAL_BPTT
            if name in STRATEGIES and model in STRATEGIES[name].models]
