"""The single-process harness: one cell's row, measured in this process
(docs/design.md, "Harnesses"): time, memory, work, depth, loss, provenance.

Each measure has its own pass, so none disturbs another:

1. memory  - bytes saved for backward (:func:`rnnbench.memory.saved_bytes`) and
             the allocator's peak over one training step;
2. work    - FLOPs of forward + backward (``torch.utils.flop_counter``), and the
             node's GEMM rate (:mod:`rnnbench.gemm`): the compute-bound time;
3. time    - blocks of runs timed as ``torch.utils.benchmark`` times them:
             forward, backward and the whole training step (forward, loss,
             backward, Adam), exactly ``repeats`` samples each after warm-up;
             median, IQR (``benchmark.Measurement``) and the raw samples;
4. loss    - ``train_steps`` of Adam on fresh batches from the same model
             init, then per-token NLL (nats) and accuracy on a held-out batch,
             teacher-forced and free-running, also by position (exposure bias).

Seeds, training and evaluation follow :mod:`rnnbench.training`.  A failure is
data: an exception, a non-finite loss, out-of-memory or the time-out gives a
row whose status :func:`rnnbench.rows.status_of` decides.
"""

from __future__ import annotations

import math
import time
import timeit

import torch
from torch.utils import benchmark
from torch.utils.flop_counter import FlopCounterMode

from . import diagnostics, gemm, memory, strategies, training
from .cell import Cell
from .rows import CellTimeout, NonFiniteLoss, base_row, fail
from .training import NAN, WARMUP


def run_cell(cell: Cell, timeout_s: float | None = None) -> dict:
    """Measure one cell in this process; never raises for a failure of the cell itself."""
    row = base_row(cell)
    start = time.perf_counter()
    deadline = start + timeout_s if timeout_s else math.inf
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(cell.threads)  # Ray reuses worker processes: set it every time
        with diagnostics.recording():  # the row reports convergence (see _measure), no warnings
            _measure(cell, row, deadline)
    except Exception as exc:  # noqa: BLE001 - a failed configuration is a row, not a crash
        fail(row, exc)
    finally:
        torch.set_num_threads(threads)
        if cell.device == "cuda" and torch.cuda.is_available():
            torch.cuda.empty_cache()
    row["wall_s"] = time.perf_counter() - start
    return row


def _check_time(deadline: float, what: str) -> None:
    if time.perf_counter() > deadline:
        raise CellTimeout(f"time-out during {what}")


def _setup(cell: Cell):
    if cell.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device cuda: no CUDA device is available")
    prepare = strategies.get(cell.strategy).prepare
    if prepare is not None:  # e.g. build compiled code: never inside a timed step
        prepare(cell.device)
    device = torch.device(cell.device)
    task, x, y = training.cell_batch(cell, device=device)
    return task, training.initial_model(cell, task.n_in, task.n_out, device), x, y


def _loss_fn(cell: Cell, model, x, y, step: int | None = None, checked: bool = True):
    """The loss of (x, y) under the cell's strategy, checked here once, not in the call.
    ``checked``: the call raises NonFiniteLoss on a non-finite loss (not in timed calls:
    reading the value back is a synchronise inside the step on a GPU)."""
    options = training.strategy_options(cell, step)
    strategies.check_inputs(model, x, y)
    strategy = strategies.check(cell.model, cell.strategy, options, cell.tau)

    def loss():
        return strategy.fn(model, x, y, **options)

    def forward():
        value = loss()
        if not torch.isfinite(value.detach()):
            raise NonFiniteLoss(f"non-finite loss {value.item()} ({cell.strategy})")
        return value

    return forward if checked else loss


def _measure(cell: Cell, row: dict, deadline: float) -> None:
    task, model, x, y = _setup(cell)
    row["gemm_gflops"] = gemm.gflops(cell.dtype, cell.device)
    forward = _loss_fn(cell, model, x, y)
    params = list(model.parameters())
    itemsize = x.element_size()

    # 1. memory; the first call on the cell's batch also gives the iterative
    # strategies' report (iterations, converged, residual) and so their depth
    with diagnostics.recording() as rec:
        row["saved_bytes"] = memory.saved_bytes(forward, keep=[*params, x, y])
    row.update(rec.fields())
    if rec.iterations is not None:
        row["depth"] = strategies.get(cell.strategy).depth(
            cell.tau, iterations=rec.iterations, **dict(cell.strategy_options))
    row["saved_bytes_expected"] = int(strategies.get(cell.strategy).saved_bytes(
        cell.model, dict(cell.strategy_options), cell.tau, cell.batch, cell.hidden,
        task.n_out, row["n_params"], itemsize))
    model.zero_grad(set_to_none=True)
    row["peak_bytes"], row["peak_method"] = memory.peak_bytes(
        lambda: forward().backward(), cell.device)
    model.zero_grad(set_to_none=True)
    _check_time(deadline, "memory")

    # 2. work
    with FlopCounterMode(display=False) as counter:
        forward().backward()
    # cuDNN's fused RNN kernel has no FLOP formula in torch.utils.flop_counter: it would
    # count 0 for the recurrence, so the figure is left out rather than undercounted.
    # (bptt_compiled is that kernel on CUDA)
    cudnn = cell.device == "cuda" and cell.strategy in ("bptt_fused", "bptt_compiled")
    row["flops"] = NAN if cudnn else int(counter.get_total_flops())
    model.zero_grad(set_to_none=True)
    _check_time(deadline, "flop count")

    # 3. time
    row.update(_time(cell, model, _loss_fn(cell, model, x, y, checked=False), deadline))

    # 4. loss
    row.update(_train_and_evaluate(cell, deadline))


def block_size(run_s: float, floor_s: float = 0.01) -> int:
    """Runs per timing sample for a ``run_s``-second statement: the smallest power
    of ten that lasts at least ``floor_s``, or one run.  The clock's own cost -
    well under a microsecond on the CPU, a synchronise of a few on CUDA - then
    stays below 1e-3 of a sample."""
    run_s = max(run_s, 1e-9)
    number = 1
    while number * run_s < floor_s:
        number *= 10
    return number


def sample(stmt: str, setup: str, globals: dict, cell: Cell, description: str | None = None,
           after=lambda what: None) -> benchmark.Measurement:
    """Exactly ``cell.repeats`` timing samples of ``stmt``, on the cell's device.

    The statement first runs ``WARMUP`` times untimed; the last of those runs
    sizes its blocks (:func:`block_size`).  A sample is one block, timed by
    ``timeit.Timer`` - what ``torch.utils.benchmark.Timer`` wraps, with the
    garbage collector off - on the device's clock (:func:`rnnbench.training.clock`), as the
    per-run mean of the block; ``setup`` runs untimed before each block.  The
    result is a ``torch.utils.benchmark.Measurement`` (median, IQR, raw times).
    (``Timer.blocked_autorange`` gave 2 samples where 10 were asked: its blocks
    are sized for clock overhead under 1e-4 of a block.)  ``after(what)`` is called
    after the warm-up and after every sample (the cell's time-out check).
    """
    timer = timeit.Timer(stmt, setup=setup, timer=training.clock(cell.device), globals=globals)
    for _ in range(WARMUP):
        one = timer.timeit(1)
    after(f"warm-up ({description or stmt})")
    number = block_size(one)
    raw = []
    for _ in range(cell.repeats):
        raw.append(timer.timeit(number))
        after(f"timing ({description or stmt})")
    return training.measurement(raw, cell, description or stmt, number, stmt, setup)


def _time(cell: Cell, model, forward, deadline: float) -> dict:
    """:func:`sample` of the training step (the first warm-up step also makes
    Adam's state), the forward and the backward, ``repeats`` samples each.  The
    backward is timed on a graph built in the block's ``setup`` and kept
    (``retain_graph=True``), so repeated backward passes do the same work
    without a forward in the sample.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=cell.lr)

    def step():
        optimizer.zero_grad(set_to_none=True)
        forward().backward()
        optimizer.step()

    g = {"step": step, "forward": forward}
    stmts = {"step": ("step()", "pass")}
    # a strategy that takes its gradient in the forward cannot be timed apart
    if not strategies.get(cell.strategy).grad_in_forward(dict(cell.strategy_options)):
        stmts.update(fwd=("forward()", "pass"),
                     bwd=("L.backward(retain_graph=True)", "L = forward()"))
    out = {name: sample(stmt, setup, g, cell, name, after=lambda what: _check_time(deadline, what))
           for name, (stmt, setup) in stmts.items()}
    optimizer.zero_grad(set_to_none=True)
    return training.time_fields(out["step"], out.get("fwd"), out.get("bwd"))


def _train_and_evaluate(cell: Cell, deadline: float) -> dict:
    """Train ``train_steps`` steps of Adam, then evaluate; an untrained cell has no loss figures."""
    if cell.train_steps == 0:
        return {}
    task, model, x, y = _setup(cell)
    optimizer = torch.optim.Adam(model.parameters(), lr=cell.lr)

    def step(i: int) -> float:
        _, xs, ys = training.cell_batch(cell, training.train_seed(cell, i), x.device)
        optimizer.zero_grad(set_to_none=True)
        value = _loss_fn(cell, model, xs, ys, step=i, checked=False)()
        value.backward()
        optimizer.step()
        return value.item()

    curve = training.train(cell, step, lambda i: _check_time(
        deadline, f"training (step {i + 1} of {cell.train_steps})"))
    return {"train_curve": curve, **training.evaluate(cell, model, task)}
