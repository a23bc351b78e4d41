"""The largest Lyapunov exponent of Elman's dynamics along a trajectory.

Newton's method over the whole sequence (DEER) converges fast when the dynamics contract
and slowly, if at all, when they are chaotic: what predicts its cost is the largest
Lyapunov exponent of the recurrence along the trajectory (Gonzalez et al. 2025,
"Predictability enables parallelization"), not the spectral radius of W alone.  With
J_t = diag(1 − h_t²) W, the exponent is the mean log growth per step of a vector carried
by the Jacobians (a power iteration, renormalised every step):

    v_t = J_t v_{t−1} / |J_t v_{t−1}|,   λ = (1/τ) Σ_t log |J_t v_{t−1}|

λ < 0: perturbations die out (contracting); λ > 0: they grow (chaotic).
"""

from __future__ import annotations

import torch


@torch.no_grad()
def largest_exponent(ux: torch.Tensor, W: torch.Tensor, seed: int = 0) -> float:
    """λ of h_t = tanh(ux_t + W h_{t−1}), h_0 = 0, over (τ, B, H) inputs ``ux``: the
    trajectory is run step by step, one carried vector per sequence, the exponent averaged
    over the batch."""
    gen = torch.Generator().manual_seed(seed)
    batch, hidden = ux.shape[1], ux.shape[2]
    v = torch.randn(batch, hidden, generator=gen, dtype=torch.float64)
    v = v / v.norm(dim=1, keepdim=True)
    W64, h = W.detach().double(), torch.zeros(batch, hidden, dtype=torch.float64)
    total = torch.zeros(batch, dtype=torch.float64)
    for t in range(ux.shape[0]):
        h = torch.tanh(ux[t].double() + h @ W64.t())
        v = (1 - h * h) * (v @ W64.t())  # J_t v = diag(1 - h_t^2) W v
        norm = v.norm(dim=1).clamp_min(1e-300)
        total += norm.log()
        v = v / norm.unsqueeze(1)
    return float((total / ux.shape[0]).mean())
