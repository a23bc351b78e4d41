"""Training strategies: how the loss L and its gradient are computed.

One public entry point, :func:`loss`, returns the book's total loss

    L = sum_t L^(t) = - sum_t sum_batch log p_model(y^(t) | x^(1..t))

as a scalar tensor whose ``.backward()`` leaves the gradient of the chosen strategy in
the model's parameters.  :data:`STRATEGIES` (:mod:`.registry`) holds one
:class:`Strategy` record per strategy with every fact a runner needs about it.  The
strategies themselves: :mod:`.elman` (hidden-to-hidden), :mod:`.jordan`
(output-to-hidden); their options' checks :mod:`.options`, their bytes kept for
backward :mod:`.saved`, shared pieces :mod:`.common`, evaluation outputs :mod:`.outputs`.
"""

from rnnbench.core.strategies.common import check_inputs, partition
from rnnbench.core.strategies.elman import CHECKPOINT_IMPLS, elman_time_shard
from rnnbench.core.strategies.jordan import (
    SCHEDULES,
    TF_IMPLS,
    hold_w_zero,
    sampling_probability,
    teacher_forcing_slice,
)
from rnnbench.core.strategies.outputs import logits
from rnnbench.core.strategies.registry import (
    STRATEGIES,
    Strategy,
    best_candidates,
    bptt_candidates,
    check,
    get,
    loss,
)

__all__ = [
    "TF_IMPLS",
    "CHECKPOINT_IMPLS",
    "SCHEDULES",
    "STRATEGIES",
    "Strategy",
    "best_candidates",
    "bptt_candidates",
    "check",
    "check_inputs",
    "elman_time_shard",
    "get",
    "hold_w_zero",
    "logits",
    "loss",
    "partition",
    "sampling_probability",
    "teacher_forcing_slice",
]
