"""What every strategy shares: input checks, the summed NLL, zero states, one-hot
feedback, seeded generators, a loss summed segment by segment (its gradient taken as
each segment is done) and the one splitter of a range."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from rnnbench.core.models import Recurrent
from rnnbench.errors import UsageError

# --------------------------------------------------------------------------- checks


def check_inputs(model: Recurrent, x: torch.Tensor, y: torch.Tensor) -> None:
    """Raise a UsageError naming ``x`` or ``y`` when they do not fit ``model``."""
    dtype = model.U.dtype
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise UsageError(f"x: expected a floating-point tensor, got {_describe(x)}")
    if x.dtype != dtype:
        raise UsageError(f"x: dtype {x.dtype} does not match the model's {dtype}")
    if x.dim() != 3 or x.shape[2] != model.n_in:
        raise UsageError(f"x: expected shape (tau, batch, n_in={model.n_in}), got {tuple(x.shape)}")
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


def nll(o: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """sum over every token of -log softmax(o)[y]."""
    return F.cross_entropy(o.reshape(-1, o.shape[-1]), y.reshape(-1), reduction="sum")


def zeros(model: Recurrent, batch: int, width: int) -> torch.Tensor:
    return torch.zeros(batch, width, dtype=model.U.dtype, device=model.U.device)


def one_hot(index: torch.Tensor, n: int, like: torch.Tensor) -> torch.Tensor:
    return F.one_hot(index, n).to(like.dtype)


def generator(model: Recurrent, seed: int) -> torch.Generator:
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


def eager_sum(model: Recurrent, segments: Callable[[], Iterator[torch.Tensor]]) -> torch.Tensor:
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
