"""The rules every cell follows, whichever harness times it (docs/design.md): seeds,
strategy options per step, tokens, the training loop and its curve, the held-out
evaluation, the clock, warm-up and timing statistics (``benchmark.Measurement``)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils import benchmark

from rnnbench.core import models, strategies
from rnnbench.facts import TEACHER_FORCING
from rnnbench.results.rows import NonFiniteLoss

NAN = float("nan")
EVAL_BATCH = 16  # held-out sequences for the loss/accuracy figures (at least the cell's batch)
EVAL_SEED = 1_000_003  # offset that keeps evaluation batches apart from training batches
HORIZON_BUCKETS = 16  # positions are averaged into this many buckets for the exposure-bias curve
CURVE_POINTS = 50  # at most this many points of the training curve are kept
WARMUP = 3  # untimed runs of a timed statement (a step) before its samples


# --------------------------------------------------------------------------- seeds and data


def train_seed(cell, step: int) -> int:
    """The seed of training step ``step``'s batch (the timed batch uses the cell's seed)."""
    return cell.seed * 7919 + step + 1


def tokens(cell) -> int:
    """Targets per sequence batch: what the loss is divided by to give nats per token."""
    return cell.batch if cell.model == "single_output" else cell.tau * cell.batch


def strategy_options(cell, step: int | None = None, rank: int = 0) -> dict:
    """The strategy's options at training step ``step`` (None: the timed step).

    Scheduled sampling learns the step (its schedule moves); strategies that
    draw random numbers (scheduled sampling's coins, sampled feedback) get a
    fresh seed per step and rank, derived from the cell's.
    """
    options = dict(cell.strategy_options)
    if step is None:
        return options
    if cell.strategy == "scheduled_sampling":
        options["step"] = step
    if cell.strategy in ("scheduled_sampling", "free_running"):
        base = options.get("seed", cell.seed)
        options["seed"] = int(np.random.SeedSequence([base, step, rank]).generate_state(1)[0])
    return options


def initial_model(cell, n_in: int, n_out: int, device: str | torch.device = "cpu"):
    """The cell's model, seeded with the cell's seed, in the cell's dtype."""
    torch.manual_seed(cell.seed)
    return models.build(cell.model, n_in, cell.hidden, n_out, cell.rho).to(
        device, getattr(torch, cell.dtype)
    )


def cell_batch(cell, seed: int | None = None, device: str | torch.device = "cpu"):
    """The cell's task and a batch (x, y) of it: the timed one (the cell's seed)
    unless ``seed`` (training step i: :func:`train_seed`)."""
    task = cell.make_task()
    x, y = task.batch(
        cell.tau,
        cell.batch,
        cell.seed if seed is None else seed,
        dtype=getattr(torch, cell.dtype),
        device=device,
    )
    return task, x, y


# --------------------------------------------------------------------------- training


def train(
    cell, step: Callable[[int], float], after: Callable[[int], None] = lambda i: None
) -> list[list]:
    """``cell.train_steps`` calls of ``step(i)`` (one Adam step on the batch of
    :func:`train_seed`, returning the batch's summed loss); the curve
    [step, wall seconds, loss per token] at most :data:`CURVE_POINTS` points and
    the last.  A non-finite loss raises :class:`NonFiniteLoss`; ``after(i)``
    runs after each step (the time-out check)."""
    curve = []
    every = max(1, cell.train_steps // CURVE_POINTS)
    start = time.perf_counter()
    for i in range(cell.train_steps):
        loss = step(i)
        if not math.isfinite(loss):
            raise NonFiniteLoss(
                f"non-finite loss {loss} at training step {i + 1} ({cell.strategy})"
            )
        if i % every == 0 or i == cell.train_steps - 1:
            curve.append([i + 1, time.perf_counter() - start, loss / tokens(cell)])
        after(i)
    return curve


@torch.no_grad()
def eval_feedback(cell) -> str | None:
    """What a Jordan network feeds back when it runs free in the evaluation: the feedback
    it was trained with — its own output as it was fed in training (``feedback`` of
    free running and scheduled sampling; softmax for ``bptt``, which is free running), and
    for teacher forcing, trained on the one-hot truth, the one-hot of its own guess
    (argmax).  None for Elman networks: they never consume their outputs."""
    if cell.model != "jordan":
        return None
    options = dict(cell.strategy_options)
    if cell.strategy == TEACHER_FORCING:
        return "argmax"
    if cell.strategy == "scheduled_sampling":
        return str(options.get("feedback", "sample"))
    return str(options.get("feedback", "softmax"))


@torch.no_grad()
def evaluate(cell, model, task) -> dict:
    """Per-token NLL (nats) and accuracy on a held-out batch, teacher-forced and free-running
    (fed back as trained: :func:`eval_feedback`), and the loss by position in
    :data:`HORIZON_BUCKETS` buckets (exposure bias)."""
    batch = max(cell.batch, EVAL_BATCH)
    x, y = task.batch(
        cell.tau, batch, seed=cell.seed + EVAL_SEED, dtype=model.U.dtype, device=model.U.device
    )
    tf = strategies.logits(model, x, y, feedback="teacher")
    feedback = eval_feedback(cell)
    free = (
        strategies.logits(model, x, y, feedback=feedback, seed=cell.seed + EVAL_SEED)
        if feedback is not None
        else tf
    )
    out: dict[str, object] = {"eval_feedback": feedback}
    for name, o in (("tf", tf), ("free", free)):
        nll = F.cross_entropy(o.reshape(-1, o.shape[-1]), y.reshape(-1), reduction="none")
        out[f"loss_{name}"] = float(nll.mean())
        out[f"acc_{name}"] = float((o.argmax(-1) == y).double().mean())
        if not model.single_output:
            per_t = nll.view(y.shape).mean(1)  # (tau,)
            buckets = [(s, e) for s, e in strategies.partition(cell.tau, HORIZON_BUCKETS) if e > s]
            out["horizon_t"] = [e for _, e in buckets]
            out[f"horizon_loss_{name}"] = [float(per_t[s:e].mean()) for s, e in buckets]
    for key in ("loss_tf", "loss_free"):
        value = out[key]
        if not (isinstance(value, float) and math.isfinite(value)):
            raise NonFiniteLoss(f"non-finite evaluation loss {out[key]}")
    return out


# --------------------------------------------------------------------------- timing


def clock(device: str):
    """The timing clock: ``perf_counter``, after a CUDA synchronise on a GPU."""
    if device != "cuda":
        return time.perf_counter

    def synced() -> float:
        torch.cuda.synchronize()
        return time.perf_counter()

    return synced


def measurement(
    raw_times: Iterable[float],
    cell,
    description: str,
    number: int = 1,
    stmt: str | None = None,
    setup: str = "pass",
) -> benchmark.Measurement:
    """Samples (seconds per block of ``number`` runs) as the one ``benchmark.Measurement``."""
    return benchmark.Measurement(
        number_per_run=number,
        raw_times=list(raw_times),
        task_spec=benchmark.TaskSpec(
            stmt or description,
            setup,
            label=cell.cell_id,
            description=description,
            num_threads=cell.n_threads,
        ),
    )


def time_fields(
    step: benchmark.Measurement,
    fwd: benchmark.Measurement | None = None,
    bwd: benchmark.Measurement | None = None,
) -> dict:
    """The row's timing fields in ms (forward and backward: NaN when not timed apart)."""
    return {
        "step_ms_median": step.median * 1e3,
        "step_ms_iqr": step.iqr * 1e3,
        "step_ms_samples": [t * 1e3 for t in step.times],
        "fwd_ms_median": fwd.median * 1e3 if fwd is not None else NAN,
        "bwd_ms_median": bwd.median * 1e3 if bwd is not None else NAN,
    }
