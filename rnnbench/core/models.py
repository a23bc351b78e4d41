"""The chapter's three recurrent patterns (Deep Learning, section 10.2).

Every model holds only its parameters, named as in the book, and exposes the
per-step update; *how* the loss and gradient are computed over a sequence is
the job of :mod:`rnnbench.core.strategies`.  Tensors are time-major:
``x`` is (tau, B, n_in), hidden states are (B, H), outputs (B, n_out).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rnnbench.errors import UsageError, check_int


class Recurrent(nn.Module):
    """Parameters U (H, n_in), W (H, n_rec), V (n_out, H), b (H,), c (n_out,)."""

    kind = ""  # "hidden" (h feeds h) or "output" (the output feeds h)
    single_output = False

    def __init__(self, n_in: int, n_hidden: int, n_out: int):
        super().__init__()
        for name, value in (("n_in", n_in), ("n_hidden", n_hidden), ("n_out", n_out)):
            check_int(name, value)
        self.n_in, self.n_hidden, self.n_out = n_in, n_hidden, n_out
        n_rec = n_hidden if self.kind == "hidden" else n_out
        self.U = nn.Parameter(torch.empty(n_hidden, n_in))
        self.W = nn.Parameter(torch.empty(n_hidden, n_rec))
        self.V = nn.Parameter(torch.empty(n_out, n_hidden))
        self.b = nn.Parameter(torch.empty(n_hidden))
        self.c = nn.Parameter(torch.empty(n_out))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform(-1/sqrt(H), 1/sqrt(H)), as torch.nn.RNN initialises."""
        bound = 1.0 / math.sqrt(self.n_hidden)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def input_term(self, x: torch.Tensor) -> torch.Tensor:
        """b + U x^(t) for every t at once: one matmul, (tau, B, H)."""
        return torch.addmm(self.b, x.reshape(-1, self.n_in), self.U.t()).view(
            x.shape[0], x.shape[1], self.n_hidden
        )

    def output(self, h: torch.Tensor) -> torch.Tensor:
        """o = c + V h (any leading shape)."""
        return torch.nn.functional.linear(h, self.V, self.c)

    def extra_repr(self) -> str:
        return f"n_in={self.n_in}, n_hidden={self.n_hidden}, n_out={self.n_out}"


class Elman(Recurrent):
    """Hidden-to-hidden recurrence, an output at every step.

    a^(t) = b + W h^(t-1) + U x^(t);  h^(t) = tanh(a^(t));  o^(t) = c + V h^(t);
    y_hat^(t) = softmax(o^(t));  h^(0) = 0.
    """

    kind = "hidden"

    def step(
        self, ux_t: torch.Tensor, h_prev: torch.Tensor, w_t: torch.Tensor | None = None
    ) -> torch.Tensor:
        """h^(t) = tanh(b + U x^(t) + W h^(t-1)), given ux_t = b + U x^(t).

        ``w_t``: ``W.t()`` taken once before a loop over t (one autograd node
        instead of one per step: ~15% faster loop at batch 1).
        """
        return torch.tanh(torch.addmm(ux_t, h_prev, self.W.t() if w_t is None else w_t))


class SingleOutput(Elman):
    """Hidden-to-hidden recurrence read once, after the whole sequence.

    As Elman, but the only output is o = c + V h^(tau).
    """

    single_output = True


class Jordan(Recurrent):
    """Output-to-hidden recurrence: only the fed-back output carries the past.

    a^(t) = b + W f^(t-1) + U x^(t);  h^(t) = tanh(a^(t));  o^(t) = c + V h^(t);
    f^(t-1) = one_hot(y^(t-1)) under teacher forcing, softmax(o^(t-1)) (or a
    sample / argmax) when free-running;  f^(0) = 0.
    """

    kind = "output"

    def step(
        self, ux_t: torch.Tensor, f_prev: torch.Tensor, w_t: torch.Tensor | None = None
    ) -> torch.Tensor:
        """h^(t) = tanh(b + U x^(t) + W f^(t-1)), given ux_t = b + U x^(t) (w_t as Elman)."""
        return torch.tanh(torch.addmm(ux_t, f_prev, self.W.t() if w_t is None else w_t))


MODELS: dict[str, type[Recurrent]] = {
    "elman": Elman,
    "jordan": Jordan,
    "single_output": SingleOutput,
}


def model_name(model: nn.Module) -> str:
    for name, cls in MODELS.items():
        if type(model) is cls:
            return name
    raise UsageError(f"model: expected one of {sorted(MODELS)}, got {type(model).__name__}")


def check_rho(model: str, rho) -> None:
    """``rho``: None, or a finite number > 0 for a model with a square W (not jordan)."""
    if rho is None:
        return
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not 0 < rho < math.inf:
        raise UsageError(f"rho: must be a positive number (spectral radius of W), got {rho!r}")
    if MODELS.get(model, Elman).kind != "hidden":
        raise UsageError(
            f"rho: sets the spectral radius of the hidden-to-hidden W; "
            f"model {model} has none (allowed: elman, single_output)"
        )


@torch.no_grad()
def set_spectral_radius(model: Recurrent, rho: float) -> None:
    """Rescale W so that its spectral radius max |eig(W)| is ``rho``.

    rho < 1 with the default init gives contracting dynamics (Newton converges
    in few iterations); rho > 1 pushes towards saturation or chaos.
    """
    radius = float(torch.linalg.eigvals(model.W.double()).abs().max())
    if not radius > 0:
        raise UsageError("rho: W has spectral radius 0 and cannot be rescaled")
    model.W.mul_(rho / radius)


def build(name: str, n_in: int, n_hidden: int, n_out: int, rho: float | None = None) -> Recurrent:
    """Build a model by its registry name (``elman``, ``jordan``, ``single_output``);
    ``rho``: rescale W to that spectral radius (None: the default init)."""
    key = str(name).lower()
    if key not in MODELS:
        raise UsageError(f"model: unknown model {name!r}; allowed: {', '.join(sorted(MODELS))}")
    check_rho(key, rho)
    model = MODELS[key](n_in, n_hidden, n_out)
    if rho is not None:
        set_spectral_radius(model, rho)
    return model
