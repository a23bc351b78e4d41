"""A log-depth associative scan for the linear recurrence h_t = A_t h_{t-1} + b_t.

Elements are pairs (A_t, b_t); composing two of them, the later on the left,

    (A_2, b_2) o (A_1, b_1) = (A_2 A_1, A_2 b_1 + b_2),

is associative, so every prefix (hence every h_t, with h_0 = 0) comes out of
a parallel scan in O(log tau) depth.  The scan here is the work-efficient
odd-even reduction (Blelloch's up-sweep and down-sweep, written recursively
over tensors): neighbours are composed in pairs, the half-length sequence is
scanned, and the states in between are filled in with one more step.  It
does about tau compositions (not Hillis-Steele's tau log tau) in
:func:`rnnbench.facts.scan_depth` rounds of batched tensor ops (2 ceil(log2 tau) - 1),
for any tau >= 1.

Time is dimension 0.  ``A`` is dense, (tau, *batch, H, H), or diagonal,
(tau, *batch, H) (then A_t b is an elementwise product); ``b`` is
(tau, *batch, H).  Plain device-agnostic torch: CPU and CUDA, any float dtype.
"""

from __future__ import annotations

import torch


def _dense(A: torch.Tensor, b: torch.Tensor) -> bool:
    if A.shape == b.shape:
        return False
    if A.dim() == b.dim() + 1 and A.shape[:-1] == b.shape and A.shape[-1] == b.shape[-1]:
        return True
    raise ValueError(
        f"A: expected shape {tuple(b.shape)} (diagonal) or {tuple(b.shape) + (b.shape[-1],)} "
        f"(dense) for b of shape {tuple(b.shape)}, got {tuple(A.shape)}"
    )


def _apply(A: torch.Tensor, b: torch.Tensor, dense: bool) -> torch.Tensor:
    """A b: a batched matrix-vector product, or elementwise for a diagonal A."""
    return torch.matmul(A, b.unsqueeze(-1)).squeeze(-1) if dense else A * b


def _compose(A2: torch.Tensor, A1: torch.Tensor, dense: bool) -> torch.Tensor:
    return torch.matmul(A2, A1) if dense else A2 * A1


def _states(A: torch.Tensor, b: torch.Tensor, dense: bool) -> torch.Tensor:
    """Every h_t of h_t = A_t h_{t-1} + b_t, h_0 = 0 (A_1 is never used)."""
    n = b.shape[0]
    if n == 1:
        return b
    m = n // 2
    # Up-sweep: compose the pairs (2i, 2i+1); the pair's state is the state at 2i+1.
    A_odd = A[1 : 2 * m : 2]
    b_pair = _apply(A_odd, b[0 : 2 * m : 2], dense) + b[1 : 2 * m : 2]
    # A half-length sequence of one element needs no matrix (its A is never used).
    A_pair = _compose(A_odd, A[0 : 2 * m : 2], dense) if m > 1 else A_odd
    h_odd = _states(A_pair, b_pair, dense)
    # Down-sweep: h at 2i (i >= 1) is one step from h at 2i-1.
    h = torch.empty_like(b)
    h[1 : 2 * m : 2] = h_odd
    h[0] = b[0]
    if n > 2:
        h[2::2] = _apply(A[2::2], h_odd[: (n - 1) // 2], dense) + b[2::2]
    return h


def linear_scan(
    A: torch.Tensor, b: torch.Tensor, *, reverse: bool = False, h0: torch.Tensor | None = None
) -> torch.Tensor:
    """Solve h_t = A_t h_{t-1} + b_t for t = 1..tau at once (h_0 = ``h0`` or 0).

    ``reverse``: the recurrence runs backwards in time, h_t = A_t h_{t+1} + b_t
    with h_{tau+1} = ``h0`` or 0 (the adjoint of a forward recurrence).
    Returns h, shaped like b.
    """
    if b.dim() < 2 or b.shape[0] < 1:
        raise ValueError(f"b: expected shape (tau >= 1, ..., H), got {tuple(b.shape)}")
    dense = _dense(A, b)
    if reverse:
        A, b = A.flip(0), b.flip(0)
    if h0 is not None:
        b = b.clone()
        b[0] += _apply(A[0], h0.expand_as(b[0]), dense)
    h = _states(A, b, dense)
    return h.flip(0) if reverse else h


def summary(A: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The composition (A_tau ... A_1, h_tau) of all tau elements: the map h_0 -> h_tau.

    The up-sweep alone (neighbours composed in pairs, ceil(log2 tau) rounds): what a
    shard of a time-split scan hands to the shards after it.
    """
    dense = _dense(A, b)
    while b.shape[0] > 1:
        m = b.shape[0] // 2
        A_odd = A[1 : 2 * m : 2]
        pair_A = _compose(A_odd, A[0 : 2 * m : 2], dense)
        pair_b = _apply(A_odd, b[0 : 2 * m : 2], dense) + b[1 : 2 * m : 2]
        if b.shape[0] % 2:
            pair_A, pair_b = torch.cat([pair_A, A[-1:]]), torch.cat([pair_b, b[-1:]])
        A, b = pair_A, pair_b
    return A[0], b[0]


def fold(summaries: list[tuple[torch.Tensor, torch.Tensor]], h0: torch.Tensor) -> torch.Tensor:
    """Apply the summaries (P, q) in order to h0: h <- P h + q (dense or diagonal P)."""
    for P, q in summaries:
        h0 = _apply(P, h0, _dense(P, q)) + q
    return h0
