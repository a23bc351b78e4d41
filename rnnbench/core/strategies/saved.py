"""What each strategy keeps for backward, in bytes (tests compare it with
:func:`rnnbench.harness.memory.saved_bytes`), given the model, options o, tau T, batch B,
hidden H, outputs O, parameters P and the item size i.  Cross-entropy also keeps its total
weight: one element (+ i)."""

from __future__ import annotations

from rnnbench.core.strategies.elman import segment_count


def saved_elman(model, o, T, B, H, O, P, i) -> int:
    """Every h^(t) (tanh output, also W's matmul input) plus h^(0), the stacked copy
    the output layer reads and the log-softmax output; one output for single_output."""
    if model == "single_output":
        return ((T + 1) * B * H + B * O) * i + i
    if model == "elman":
        return ((2 * T + 1) * B * H + T * B * O) * i + i
    return saved_jordan(model, o, T, B, H, O, P, i)


def saved_jordan(model, o, T, B, H, O, P, i, fed: int = 2) -> int:
    """A Jordan loop: h^(t), the fed-back f^(0) .. f^(tau-1), the log-softmax output
    (scheduled sampling with softmax feedback: each softmax output too)."""
    return T * B * (H + fed * O) * i + i


def saved_scheduled(model, o, T, B, H, O, P, i) -> int:
    return saved_jordan(model, o, T, B, H, O, P, i, 3 if o.get("feedback") == "softmax" else 2)


def saved_eager(model, o, T, B, H, O, P, i) -> int:
    """Each segment's gradient taken during the forward: one gradient-sized buffer."""
    return P * i + i


def saved_checkpointed(model, o, T, B, H, O, P, i) -> int:
    """Each segment's entry state (single_output: plus the last state and its output)."""
    seg = min(segment_count(o.get("segments"), T), T)
    if model == "single_output":
        return (seg * B * H + B * H + B * O) * i + i
    return seg * B * H * i


def saved_teacher(model, o, T, B, H, O, P, i) -> int:
    """tanh and log-softmax outputs, T B (H + O); chunked: one gradient buffer."""
    if o.get("chunk"):
        return saved_eager(model, o, T, B, H, O, P, i)
    return T * B * (H + O) * i + i


def saved_states(model, o, T, B, H, O, P, i) -> int:
    """The compiled loop and the adjoint-scan strategies keep every h^(t) once and the
    log-softmax output; the scans' tau B H^2 Jacobians live only inside the forward or
    the backward."""
    return (T * B * H + (B * O if model == "single_output" else T * B * O)) * i + i
