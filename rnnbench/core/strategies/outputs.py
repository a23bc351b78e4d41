"""A model's outputs o for evaluation, each model fed as asked (never a loss)."""

from __future__ import annotations

import torch

from rnnbench.core.models import Elman, Jordan, Recurrent, SingleOutput
from rnnbench.core.strategies.common import generator, zeros
from rnnbench.core.strategies.elman import elman_loop
from rnnbench.core.strategies.jordan import feedback_fn, jordan_outputs, teacher_forced
from rnnbench.errors import UsageError


def logits(
    model: Recurrent,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    feedback: str = "teacher",
    seed: int = 0,
) -> torch.Tensor:
    """Outputs o (tau, B, n_out) — (B, n_out) for SingleOutput — for evaluation.

    For Jordan, ``feedback`` picks what is fed back: ``teacher`` (the true
    y^(t-1)), or the model's own ``argmax`` / ``sample`` / ``softmax``.  Elman
    and SingleOutput ignore it: they never consume their outputs.
    """
    if isinstance(model, Jordan):
        if feedback == "teacher":
            if y is None:
                raise UsageError("y: teacher-forced outputs need the targets")
            return teacher_forced(model, x, y)
        feed = feedback_fn(feedback, generator(model, seed) if feedback == "sample" else None)
        return jordan_outputs(model, x, None, lambda t, o, y_t: feed(o))
    assert isinstance(model, Elman)
    hs, h = elman_loop(model, x, zeros(model, x.shape[1], model.n_hidden))
    return model.output(h if isinstance(model, SingleOutput) else torch.stack(hs))
