"""The single-process harness: one cell's row, measured in this process
(docs/design.md, "Harnesses"): time, memory, work, depth, loss, provenance.

Each measure has its own pass, so none disturbs another:

1. memory  - bytes saved for backward (:func:`rnnbench.harness.memory.saved_bytes`),
             the profiler's tensor-allocation peak over one forward +
             backward, and the process's peak RSS over one training step
             (:mod:`rnnbench.harness.procstat`);
2. work    - FLOPs of forward + backward (``torch.utils.flop_counter``), and the
             node's GEMM rate (:mod:`rnnbench.harness.gemm`): the compute-bound time;
3. time    - blocks of runs timed as ``torch.utils.benchmark`` times them:
             forward, backward and the whole training step (forward, loss,
             backward, Adam), exactly ``repeats`` samples each after warm-up;
             median, IQR (``benchmark.Measurement``) and the raw samples; the
             minor page faults per timed step; with a ``baseline`` the step's
             blocks take turns with the baseline's (:mod:`rnnbench.harness.paired`);
4. loss    - ``train_steps`` of Adam on fresh batches from the same model
             init, then per-token NLL (nats) and accuracy on a held-out batch,
             teacher-forced and free-running, also by position (exposure bias).

Seeds, training and evaluation follow :mod:`rnnbench.harness.training`.  A failure is
data: an exception, a non-finite loss, out-of-memory or the time-out gives a
row whose status :func:`rnnbench.results.rows.status_of` decides.
"""

from __future__ import annotations

import json
import math
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils import benchmark
from torch.utils.flop_counter import FlopCounterMode

from rnnbench.core import strategies
from rnnbench.facts import BEST_BPTT, clip_error
from rnnbench.harness import gemm, memory, paired, procstat, training
from rnnbench.harness.row import base_row
from rnnbench.harness.training import NAN, WARMUP
from rnnbench.job.cell import Cell
from rnnbench.pit import diagnostics
from rnnbench.results.rows import CellTimeout, NonFiniteLoss, fail

BEST_ROUNDS = 3  # blocks per candidate when best_bptt picks the fastest BPTT


def run_cell(cell: Cell, timeout_s: float | None = None) -> dict:
    """Measure one cell in this process; never raises for a failure of the cell itself."""
    row = base_row(cell)
    start = time.perf_counter()
    deadline = start + timeout_s if timeout_s else math.inf
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(cell.n_threads)  # Ray reuses worker processes: set it every time
        with diagnostics.recording():  # the row reports convergence (see _measure), no warnings
            _measure(cell, row, deadline)
    except Exception as exc:
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
            cell.tau, iterations=rec.iterations, **dict(cell.strategy_options)
        )
    row["saved_bytes_expected"] = int(
        strategies.get(cell.strategy).saved_bytes(
            cell.model,
            dict(cell.strategy_options),
            cell.tau,
            cell.batch,
            cell.hidden,
            task.n_out,
            row["n_params"],
            itemsize,
        )
    )
    model.zero_grad(set_to_none=True)
    row["peak_bytes"], row["peak_method"] = memory.peak_bytes(
        lambda: forward().backward(), cell.device
    )
    model.zero_grad(set_to_none=True)
    row["peak_rss_method"] = procstat.reset_peak_rss()
    training_step(cell, model, forward)()  # with Adam's state: the process's real peak
    row["peak_rss_bytes"] = procstat.peak_rss(row["peak_rss_method"])
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
    unchecked = _loss_fn(cell, model, x, y, checked=False)
    row.update(_time(cell, model, unchecked, deadline))
    model.zero_grad(set_to_none=True)
    row.update(time_step(cell, training_step(cell, model, unchecked), deadline))

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


def sample(
    stmt: str,
    setup: str,
    globals: dict,
    cell: Cell,
    description: str | None = None,
    after=lambda what: None,
    number: int | None = None,
) -> benchmark.Measurement:
    """Exactly ``cell.repeats`` timing samples of ``stmt``, on the cell's device.

    The statement first runs ``WARMUP`` times untimed; the last of those runs
    sizes its blocks (:func:`block_size`).  A sample is one block, timed by
    ``timeit.Timer`` - what ``torch.utils.benchmark.Timer`` wraps, with the
    garbage collector off - on the device's clock (:func:`rnnbench.harness.training.clock`), as the
    per-run mean of the block; ``setup`` runs untimed before each block.  The
    result is a ``torch.utils.benchmark.Measurement`` (median, IQR, raw times).
    (``Timer.blocked_autorange`` gave 2 samples where 10 were asked: its blocks
    are sized for clock overhead under 1e-4 of a block.)  ``after(what)`` is called
    after the warm-up and after every sample (the cell's time-out check).
    ``number``: runs per block, fixed (a statement whose ``setup`` must come
    before every run, such as a backward on a fresh graph, takes 1).
    """
    timer = timeit.Timer(stmt, setup=setup, timer=training.clock(cell.device), globals=globals)
    for _ in range(WARMUP):
        one = timer.timeit(1)
    after(f"warm-up ({description or stmt})")
    number = number or block_size(one)
    raw = []
    for _ in range(cell.repeats):
        raw.append(timer.timeit(number))
        after(f"timing ({description or stmt})")
    return training.measurement(raw, cell, description or stmt, number, stmt, setup)


def _time(cell: Cell, model, forward, deadline: float) -> dict:
    """:func:`sample` of the forward and the backward, ``repeats`` samples each.

    The backward is timed as training runs it: one ``L.backward()`` (no
    ``retain_graph``) on a graph that the block's untimed ``setup`` builds
    afresh, gradients set to None first, so every block holds one run.  A
    strategy that takes its gradient in the forward has no separate figures.
    """
    if strategies.get(cell.strategy).grad_in_forward(dict(cell.strategy_options)):
        return {"fwd_ms_median": NAN, "bwd_ms_median": NAN}
    g = {"forward": forward, "model": model}
    fresh = "model.zero_grad(set_to_none=True); L = forward()"
    out = {
        name: sample(
            stmt,
            setup,
            g,
            cell,
            name,
            number=number,
            after=lambda what: _check_time(deadline, what),
        )
        for name, (stmt, setup, number) in {
            "fwd": ("forward()", "pass", None),
            "bwd": ("L.backward()", fresh, 1),
        }.items()
    }
    return {"fwd_ms_median": out["fwd"].median * 1e3, "bwd_ms_median": out["bwd"].median * 1e3}


def training_step(cell: Cell, model, forward) -> Callable[[], None]:
    """One training step as the cell trains: zero the gradients, forward, backward, Adam."""
    optimizer = torch.optim.Adam(model.parameters(), lr=cell.lr)

    def step():
        optimizer.zero_grad(set_to_none=True)
        forward().backward()
        optimizer.step()

    return step


@dataclass
class Side:
    """One side of a timed comparison: its training step, block size, and the minor
    page faults counted over its timed runs."""

    cell: Cell
    step: Callable[[], None]
    number: int = 1
    faults: int = 0
    runs: int = 0
    threads: int = 0  # the cell's thread count, resolved once (see __post_init__)

    def __post_init__(self):
        # ``threads: all`` counts the CPUs this thread may run on: resolved here, before
        # the paired harness pins any side to fewer, or a 1-thread baseline's window
        # would shrink "all" to 1 for every later block of the other side
        self.threads = self.cell.n_threads

    def warm(self, clock) -> None:
        """``WARMUP`` untimed steps (the first also makes Adam's state); the last sizes
        the blocks (:func:`block_size`)."""
        torch.set_num_threads(self.threads)
        timer = timeit.Timer(self.step, timer=clock)
        for _ in range(WARMUP):
            one = timer.timeit(1)
        self.number = block_size(one)

    def block(self, clock) -> float:
        """One timed block of ``number`` steps (``timeit``, the collector off): seconds per run."""
        torch.set_num_threads(self.threads)
        f0 = procstat.minor_faults()
        seconds = timeit.Timer(self.step, timer=clock).timeit(self.number) / self.number
        self.faults += procstat.minor_faults() - f0
        self.runs += self.number
        return seconds

    @property
    def faults_per_step(self) -> float:
        return self.faults / self.runs if self.runs else NAN


def time_step(
    cell: Cell, step: Callable[[], None], deadline: float, clock: Callable[[], float] | None = None
) -> dict:
    """The training step's row fields: ``repeats`` blocks of ``step`` -- with a
    baseline, ``repeats`` pairs of blocks taking turns with the baseline's
    (:func:`rnnbench.harness.paired.alternate`, the CPU affinity moved between pairs)
    -- and the minor page faults per timed step.  A baseline that fails (to
    build or while timed) leaves its error in ``baseline_error``, and the
    cell's own step is timed alone."""
    clock = clock or training.clock(cell.device)
    a = Side(cell, step)
    a.warm(clock)
    _check_time(deadline, "warm-up (step)")
    out: dict[str, object] = {}
    b: Side | None = None
    if cell.baseline:
        try:
            b, out = baseline_side(cell, clock, deadline)
        except CellTimeout:
            raise
        except Exception as exc:
            out["baseline_error"] = clip_error(f"{type(exc).__name__}: {exc}")
    if b is not None:
        try:
            with paired.Affinity() as affinity:

                def pin(k: int, side: str) -> None:
                    if affinity.allowed:
                        affinity.pin(
                            paired.cpu_window(
                                affinity.allowed, (a if side == "a" else b).threads, k
                            )
                        )

                result = paired.alternate(
                    lambda k: a.block(clock),
                    lambda k: b.block(clock),
                    cell.repeats,
                    before=pin,
                    after=lambda k, side: _check_time(deadline, "timing (pairs)"),
                )
            out.update(
                training.time_fields(training.measurement(result.a, cell, "step")),
                **paired.row_fields(result),
                minor_faults_per_step=a.faults_per_step,
                baseline_minor_faults_per_step=b.faults_per_step,
            )
            return _no_apart(out)
        except CellTimeout:
            raise
        except Exception as exc:
            out["baseline_error"] = clip_error(f"{type(exc).__name__}: {exc}")
            a.faults = a.runs = 0
    samples = []
    for _ in range(cell.repeats):
        samples.append(a.block(clock))
        _check_time(deadline, "timing (step)")
    out.update(
        training.time_fields(training.measurement(samples, cell, "step")),
        minor_faults_per_step=a.faults_per_step,
    )
    return _no_apart(out)


def _no_apart(out: dict) -> dict:
    """The step's fields only (forward and backward come from :func:`_time`)."""
    for key in ("fwd_ms_median", "bwd_ms_median"):
        out.pop(key, None)
    return out


def _build_side(cell: Cell) -> Side:
    """A :class:`Side` for ``cell``: its model and batch, the first loss checked once."""
    _, model, x, y = _setup(cell)
    _loss_fn(cell, model, x, y)().backward()  # a non-finite loss fails here, once
    model.zero_grad(set_to_none=True)
    return Side(cell, training_step(cell, model, _loss_fn(cell, model, x, y, checked=False)))


def best_bptt(cell: Cell, clock, deadline: float) -> tuple[Side, dict]:
    """The fastest exact sequential BPTT for the baseline's model: every candidate
    (:func:`rnnbench.core.strategies.bptt_candidates`) is built, warmed and timed for
    ``BEST_ROUNDS`` blocks, the candidates taking turns; the lowest median wins.
    Returns the winner's side and {strategy: median ms} of every candidate (the
    error text for a candidate that could not run)."""
    model = dict(cell.baseline).get("model", cell.model)
    sides: dict[str, Side] = {}
    times: dict[str, float | str] = {}
    for name in strategies.bptt_candidates(model):
        try:
            sides[name] = _build_side(cell.paired_cell(name))
            sides[name].warm(clock)
        except CellTimeout:
            raise
        except Exception as exc:
            times[name] = f"{type(exc).__name__}: {exc}"[:200]
        _check_time(deadline, "best_bptt warm-up")
    if not sides:
        raise RuntimeError(f"best_bptt: no candidate ran ({times})")
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(BEST_ROUNDS):
        for name, side in sides.items():
            samples[name].append(side.block(clock))
        _check_time(deadline, "best_bptt timing")
    for name in samples:
        times[name] = paired.quartiles(samples[name])[1] * 1e3
    winner = min(samples, key=lambda n: float(times[n]))
    side = sides[winner]
    side.faults = side.runs = 0
    return side, times


def baseline_side(cell: Cell, clock, deadline: float) -> tuple[Side, dict]:
    """The cell's baseline, built and warmed, and the row fields that say what it is."""
    out = {}
    if dict(cell.baseline).get("strategy") == BEST_BPTT:
        side, times = best_bptt(cell, clock, deadline)
        out["baseline_candidates_ms"] = json.dumps(times, sort_keys=True)
    else:
        side = _build_side(cell.paired_cell())
        side.warm(clock)
    out["baseline_config"] = json.dumps(cell.changed(side.cell), sort_keys=True)
    _check_time(deadline, "warm-up (baseline)")
    return side, out


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

    curve = training.train(
        cell,
        step,
        lambda i: _check_time(deadline, f"training (step {i + 1} of {cell.train_steps})"),
    )
    return {"train_curve": curve, **training.evaluate(cell, model, task)}
