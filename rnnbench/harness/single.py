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
             and a sequential BPTT's chain alone with its control
             (:mod:`rnnbench.harness.chain`);
4. loss    - ``train_steps`` of Adam on fresh batches from the same model
             init, then per-token NLL (nats) and accuracy on a held-out batch,
             teacher-forced and free-running, also by position (exposure bias).

Seeds, training and evaluation follow :mod:`rnnbench.harness.training`.  A failure is
data: an exception, a non-finite loss, out-of-memory or the time-out gives a
row whose status :func:`rnnbench.results.rows.status_of` decides.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import timeit
from collections.abc import Callable

import torch
from torch.utils import benchmark
from torch.utils.flop_counter import FlopCounterMode

from rnnbench.core import strategies
from rnnbench.facts import BEST_CHOICES, NEWTON_SOLVERS, TIME_SPLIT_SOLVERS, clip_error
from rnnbench.harness import chain, gemm, memory, paired, procstat, sides, training
from rnnbench.harness.row import base_row
from rnnbench.harness.sides import Side, block_size
from rnnbench.harness.training import NAN, WARMUP
from rnnbench.job.cell import Cell
from rnnbench.pit import diagnostics, lyapunov
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
    row.update(dynamics(cell, model, x))
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
    if cell.law_taus:
        row.update(time_law(cell, deadline))
    else:
        row.update(time_step(cell, training_step(cell, model, unchecked), deadline))
    row.update(time_chain(cell, deadline))

    # 4. loss
    row.update(_train_and_evaluate(cell, deadline))


def dynamics(cell: Cell, model, x: torch.Tensor) -> dict:
    """For an Elman cell solved by a scan, or given a spectral radius: the largest Lyapunov
    exponent along its trajectory on the cell's batch (:mod:`rnnbench.pit.lyapunov`), and a
    Newton solver's iteration cap (``max_iter``, at most tau)."""
    if cell.model not in ("elman", "single_output") or (
        cell.strategy not in TIME_SPLIT_SOLVERS and cell.rho is None
    ):
        return {}
    out: dict[str, object] = {
        "lyapunov": lyapunov.largest_exponent(model.input_term(x).detach(), model.W)
    }
    if cell.strategy in NEWTON_SOLVERS:
        cap = dict(cell.strategy_options).get("max_iter") or cell.tau
        out["iter_cap"] = min(int(cap), cell.tau)
    return out


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


def time_step(
    cell: Cell, step: Callable[[], None], deadline: float, clock: Callable[[], float] | None = None
) -> dict:
    """The training step's row fields: ``repeats`` blocks of ``step`` -- with a
    baseline, ``repeats`` pairs of blocks taking turns with the baseline's
    (:func:`rnnbench.harness.sides.pair`; with ``precision``, more pairs until the pair
    ratios are that precise) -- the minor page faults per timed step and the CPU share
    each side got.  A baseline that fails (to build or while timed) leaves its error in
    ``baseline_error``, and the cell's own step is timed alone."""
    clock = clock or training.clock(cell.device)

    def check(what: str) -> None:
        _check_time(deadline, what)

    a = Side(step, cell.n_threads)
    a.warm(clock)
    check("warm-up (step)")
    out: dict[str, object] = {}
    b: Side | None = None
    if cell.baseline:
        try:
            b, out = baseline_side(cell, clock, check)
        except CellTimeout:
            raise
        except Exception as exc:
            out["baseline_error"] = clip_error(f"{type(exc).__name__}: {exc}")
    if b is not None:
        try:
            result, stop = sides.pair(a, b, cell.repeats, clock, check, cell.precision)
            out.update(
                training.time_fields(training.measurement(result.a, cell, "step")),
                **paired.row_fields(result),
                minor_faults_per_step=a.faults_per_step,
                baseline_minor_faults_per_step=b.faults_per_step,
                cpu_share=a.cpu_share,
                baseline_cpu_share=b.cpu_share,
                wait_share=a.wait_share,
                baseline_wait_share=b.wait_share,
                precision_reached=stop.reached,
                stop_reason=stop.reason,
            )
            return _no_apart(out)
        except CellTimeout:
            raise
        except Exception as exc:
            out["baseline_error"] = clip_error(f"{type(exc).__name__}: {exc}")
            a.forget()
    samples = sides.alone(a, cell.repeats, clock, check)
    out.update(
        training.time_fields(training.measurement(samples, cell, "step")),
        minor_faults_per_step=a.faults_per_step,
        cpu_share=a.cpu_share,
        wait_share=a.wait_share,
    )
    return _no_apart(out)


def time_law(cell: Cell, deadline: float, clock: Callable[[], float] | None = None) -> dict:
    """A law cell's row fields: the training step at every τ of ``law_taus``, built in
    this process and timed in ``repeats`` rounds of one block each
    (:func:`rnnbench.harness.sides.rounds`: a round's blocks on the same CPUs, close in
    time), so whatever speed this process and its CPU of the round ran at is common to
    every τ of the round.  ``law_step_ms`` of each τ is its time relative to the largest
    τ's in the same round, the median over rounds, times the largest τ's median
    (:func:`rnnbench.harness.sides.in_rounds`: rounds on a faster and a slower vCPU leave
    the ratios alone, where the medians of mixed rounds land anywhere between the two
    speeds); ``law_step_samples`` keeps every block (ms).  The step's own fields are those
    of the cell's τ (the largest); the CPU and wait shares are those of every block."""
    clock = clock or training.clock(cell.device)

    def check(what: str) -> None:
        _check_time(deadline, f"{what} (law)")

    laws = [_build_side(dataclasses.replace(cell, tau=t, law_taus=())) for t in cell.law_taus]
    for side in laws:
        side.warm(clock)
        check("warm-up")
    samples = sides.rounds(laws, cell.repeats, clock, check)
    top = samples[-1]
    mine = laws[-1]  # the cell's own τ: the largest
    cpu_s, wall_s = sum(s.cpu_s for s in laws), sum(s.wall_s for s in laws)
    on_ns, wait_ns = sum(s.on_ns for s in laws), sum(s.wait_ns for s in laws)
    return _no_apart(
        {
            **training.time_fields(training.measurement(top, cell, "step")),
            "law_step_ms": [t * 1e3 for t in sides.in_rounds(samples)],
            "law_step_samples": [[t * 1e3 for t in times] for times in samples],
            "minor_faults_per_step": mine.faults_per_step,
            "cpu_share": procstat.cpu_share(cpu_s, wall_s, cell.n_threads),
            "wait_share": procstat.wait_share(on_ns, wait_ns),
        }
    )


def time_chain(cell: Cell, deadline: float, clock: Callable[[], float] | None = None) -> dict:
    """The sequential chain's row fields (:mod:`rnnbench.harness.chain`): the chain's time
    and its control's (one step's operations over the τ steps); against a baseline that
    changes only the threads, the four - chain and control on the cell's threads and on
    the baseline's - take turns in rounds (:func:`rnnbench.harness.sides.rounds`), and
    the k-th speedup (baseline / cell) of the chain and of the control come from the same
    round, so the chain's gain over its control's can be read round by round.  Nothing
    for a strategy whose chain cannot be timed apart."""
    if not chain.has_chain(cell):
        return {}
    clock = clock or training.clock(cell.device)

    def check(what: str) -> None:
        _check_time(deadline, f"{what} (chain)")

    mine = chain.sides(cell, cell.n_threads)
    for side in mine:
        side.warm(clock)
    base = cell.paired_cell() if cell.baseline_config().keys() == {"threads"} else None
    if base is None:
        times = [sides.alone(side, cell.repeats, clock, check) for side in mine]
        out: dict[str, object] = {"chain_speedup_samples": [], "op_speedup_samples": []}
    else:
        theirs = chain.sides(base, base.n_threads)
        for side in theirs:
            side.warm(clock)
        r = sides.rounds([mine[0], theirs[0], mine[1], theirs[1]], cell.repeats, clock, check)
        times = [r[0], r[2]]
        out = {
            "chain_speedup_samples": [t / m for m, t in zip(r[0], r[1])],
            "op_speedup_samples": [t / m for m, t in zip(r[2], r[3])],
        }
    chain_q1, chain_med, chain_q3 = paired.quartiles([1e3 * t for t in times[0]])
    return {
        **out,
        "chain_ms_median": chain_med,
        "chain_ms_iqr": chain_q3 - chain_q1,
        "chain_op_ms_median": paired.quartiles(times[1])[1] * 1e3 * chain.control_runs(cell),
    }


def _no_apart(out: dict) -> dict:
    """The step's fields only (forward and backward come from :func:`_time`)."""
    for key in ("fwd_ms_median", "bwd_ms_median"):
        out.pop(key, None)
    return out


def _build_side(cell: Cell) -> Side:
    """A :class:`Side` for ``cell``'s training step: its model and batch, the first loss
    checked once."""
    _, model, x, y = _setup(cell)
    _loss_fn(cell, model, x, y)().backward()  # a non-finite loss fails here, once
    model.zero_grad(set_to_none=True)
    return Side(
        training_step(cell, model, _loss_fn(cell, model, x, y, checked=False)), cell.n_threads
    )


def best_side(cell: Cell, clock, check: Callable[[str], None]) -> tuple[Side, Cell, dict]:
    """The fastest candidate for the baseline's ``best_bptt`` / ``best_tf``
    (:func:`rnnbench.core.strategies.best_candidates`): every candidate is built, warmed
    and timed for ``BEST_ROUNDS`` settled blocks, the candidates taking turns; the lowest median
    wins.  Returns the winner's side and cell, and {candidate: median ms} of every
    candidate (the error text for a candidate that could not run)."""
    choice = dict(cell.baseline)["strategy"]
    model = dict(cell.baseline).get("model", cell.model)
    built: dict[str, tuple[Side, Cell]] = {}
    times: dict[str, float | str] = {}
    for strategy, options in strategies.best_candidates(choice, model):
        name = strategy + "".join(f" {k}={v}" for k, v in options.items())
        try:
            base = cell.paired_cell((strategy, options))
            built[name] = (_build_side(base), base)
            built[name][0].warm(clock)
        except CellTimeout:
            raise
        except Exception as exc:
            times[name] = f"{type(exc).__name__}: {exc}"[:200]
        check(f"{choice} warm-up")
    if not built:
        raise RuntimeError(f"{choice}: no candidate ran ({times})")
    samples: dict[str, list[float]] = {name: [] for name in built}
    for _ in range(BEST_ROUNDS):
        for name, (side, _) in built.items():
            samples[name].append(side.block(clock, settle=True))
        check(f"{choice} timing")
    for name in samples:
        times[name] = paired.quartiles(samples[name])[1] * 1e3
    side, base = built[min(samples, key=lambda n: float(times[n]))]
    side.forget()
    return side, base, times


def baseline_side(cell: Cell, clock, check: Callable[[str], None]) -> tuple[Side, dict]:
    """The cell's baseline, built and warmed, and the row fields that say what it is."""
    out: dict[str, object] = {}
    if dict(cell.baseline).get("strategy") in BEST_CHOICES:
        side, base, times = best_side(cell, clock, check)
        out["baseline_candidates_ms"] = json.dumps(times, sort_keys=True)
    else:
        base = cell.paired_cell()
        side = _build_side(base)
        side.warm(clock)
    out["baseline_config"] = json.dumps(cell.changed(base), sort_keys=True)
    check("warm-up (baseline)")
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
