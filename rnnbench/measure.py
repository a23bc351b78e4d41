"""Run one benchmark cell and return its row: time, memory, work, depth, loss, provenance.

Each measure has its own pass, so none disturbs another:

1. memory  - bytes saved for backward (:func:`rnnbench.memory.saved_bytes`),
             the profiler's allocation peak over one forward + backward, and
             the process's peak RSS over one training step (:mod:`rnnbench.procstat`);
2. work    - FLOPs of forward + backward (``torch.utils.flop_counter``);
3. time    - blocks of runs timed as ``torch.utils.benchmark`` times them:
             forward, backward and the whole training step (forward, loss,
             backward, Adam), exactly ``repeats`` samples each after warm-up;
             median, IQR and the raw samples; with a ``baseline`` the step's
             blocks alternate with the baseline's (:mod:`rnnbench.paired`),
             and the minor page faults per timed step are counted;
4. loss    - ``train_steps`` of Adam on fresh batches from the same model
             init, then per-token NLL (nats) and accuracy on a held-out batch,
             teacher-forced and free-running, also by position (exposure bias).

A failure is data: an exception, a non-finite loss, out-of-memory or the
time-out gives a row with ``status`` failed | oom | timeout and the error text.
"""

from __future__ import annotations

import json
import math
import time
import timeit
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils import benchmark
from torch.utils.flop_counter import FlopCounterMode

from . import memory, models, paired, procstat, strategies
from .cell import BEST_BPTT, ROW_KEYS, Cell
from .provenance import provenance

NAN = float("nan")
EVAL_BATCH = 16  # held-out sequences for the loss/accuracy figures (at least the cell's batch)
EVAL_SEED = 1_000_003  # offset that keeps evaluation batches apart from training batches
HORIZON_BUCKETS = 16  # positions are averaged into this many buckets for the exposure-bias curve
CURVE_POINTS = 50  # at most this many points of the training curve are kept
WARMUP = 2
BEST_ROUNDS = 3  # blocks per candidate when best_bptt picks the fastest BPTT


class CellTimeout(Exception):
    """The cell ran past its time budget."""


class NonFiniteLoss(Exception):
    """The loss became NaN or infinite."""


# --------------------------------------------------------------------------- rows


def base_row(cell: Cell) -> dict:
    """A row for ``cell`` with configuration and provenance filled, every measure empty."""
    task = cell.make_task()
    row = dict.fromkeys(ROW_KEYS, None)
    cfg = cell.config()
    row.update({k: v for k, v in cfg.items() if k in row})
    row.update(
        cell_id=cell.cell_id,
        strategy_options=json.dumps(cfg["strategy_options"], sort_keys=True),
        task_options=json.dumps({k: v for k, v in cfg["task_options"].items()}, sort_keys=True),
        threads=cell.n_threads,
        baseline=json.dumps(cfg["baseline"], sort_keys=True) if cell.baseline else None,
        speedup_samples=[],
        n_in=task.n_in,
        n_out=task.n_out,
        n_params=_n_params(cell.hidden, task.n_in, task.n_out, cell.model),
        status="ok",
        error=None,
        step_ms_samples=[],
        train_curve=[],
        horizon_t=[],
        horizon_loss_tf=[],
        horizon_loss_free=[],
        split=None if cell.grouped else "none",
        workers_active=1 if cell.workers == 1 else None,
        neighbours=0,
        attempt=1,
        depth=strategies.get(cell.strategy).depth(cell.tau, **dict(cell.strategy_options)),
        **provenance(cell.device),
    )
    for key in ("step_ms_median", "step_ms_iqr", "fwd_ms_median", "bwd_ms_median",
                "saved_bytes", "saved_bytes_expected", "peak_bytes", "flops", "loss_tf",
                "loss_free", "acc_tf", "acc_free", "comm_ms_median", "wall_s",
                "baseline_step_ms_median", "baseline_step_ms_iqr", "speedup_median", "speedup_q1",
                "speedup_q3", "minor_faults_per_step", "baseline_minor_faults_per_step",
                "peak_rss_bytes"):
        row[key] = NAN
    return row


def failure_row(cell: Cell, status: str, error: str) -> dict:
    """A row that records a failed cell: status crashed | timeout | failed | oom, the error."""
    row = base_row(cell)
    row.update(status=status, error=str(error)[:2000])
    return row


def _n_params(hidden: int, n_in: int, n_out: int, model: str) -> int:
    n_rec = n_out if model == "jordan" else hidden
    return hidden * n_in + hidden * n_rec + n_out * hidden + hidden + n_out


# --------------------------------------------------------------------------- the cell


def run_cell(cell: Cell, timeout_s: float | None = None) -> dict:
    """Measure one cell; never raises for a failure of the cell itself."""
    if cell.grouped:
        from . import timeparallel

        return timeparallel.run_cell(cell, timeout_s=timeout_s)
    row = base_row(cell)
    start = time.perf_counter()
    deadline = start + timeout_s if timeout_s else math.inf
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(cell.n_threads)  # Ray reuses worker processes: set it every time
        _measure(cell, row, deadline)
    except CellTimeout as exc:
        row.update(status="timeout", error=str(exc))
    except torch.OutOfMemoryError as exc:
        row.update(status="oom", error=f"OutOfMemoryError: {exc}"[:2000])
    except Exception as exc:  # noqa: BLE001 - a failed configuration is a row, not a crash
        text = f"{type(exc).__name__}: {exc}"
        oom = "out of memory" in text.lower() or "can't allocate memory" in text.lower()
        row.update(status="oom" if oom else "failed", error=text[:2000])
    finally:
        torch.set_num_threads(threads)
        if cell.device == "cuda" and torch.cuda.is_available():
            torch.cuda.empty_cache()
    row["wall_s"] = time.perf_counter() - start
    return row


def _check_time(deadline: float, what: str) -> None:
    if time.perf_counter() > deadline:
        raise CellTimeout(f"time-out during {what}")


def _setup(cell: Cell, seed_offset: int = 0):
    dtype = getattr(torch, cell.dtype)
    device = torch.device(cell.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device cuda: no CUDA device is available")
    task = cell.make_task()
    torch.manual_seed(cell.seed)
    model = models.build(cell.model, task.n_in, cell.hidden, task.n_out).to(device, dtype)
    x, y = task.batch(cell.tau, cell.batch, seed=cell.seed + seed_offset, dtype=dtype,
                      device=device)
    return task, model, x, y


def train_seed(cell: Cell, step: int) -> int:
    """The seed of training step ``step``'s batch (the timed batch uses the cell's seed)."""
    return cell.seed * 7919 + step + 1


def tokens(cell: Cell) -> int:
    """Targets per sequence batch: what the loss is divided by to give nats per token."""
    return cell.batch if cell.model == "single_output" else cell.tau * cell.batch


def strategy_options(cell: Cell, step: int | None = None, rank: int = 0) -> dict:
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


def _loss_fn(cell: Cell, model, x, y, step: int | None = None, checked: bool = True):
    """The loss of (x, y) under the cell's strategy; strategy and inputs are checked
    once here, not in the call.  ``checked``: the call raises NonFiniteLoss on a
    NaN or infinite loss (the timed calls go without: the test reads the value
    back, which on a GPU is a synchronise inside the step)."""
    options = strategy_options(cell, step)
    strategy = strategies.check(cell.model, cell.strategy, options)
    strategies.check_inputs(model, x, y)

    def loss():
        return strategy.fn(model, x, y, **options)

    def forward():
        value = loss()
        if not torch.isfinite(value.detach()):
            raise NonFiniteLoss(f"non-finite loss {value.item()} ({cell.strategy})")
        return value

    return forward if checked else loss


def grad_in_forward(cell: Cell) -> bool:
    """Strategies that take each segment's gradient during the forward pass: their
    backward only hands it out, so forward and backward times mean nothing apart."""
    options = dict(cell.strategy_options)
    return cell.strategy == "truncated_bptt" or (
        cell.strategy == "teacher_forcing" and options.get("chunk") is not None)


def _measure(cell: Cell, row: dict, deadline: float) -> None:
    task, model, x, y = _setup(cell)
    forward = _loss_fn(cell, model, x, y)
    params = list(model.parameters())
    itemsize = x.element_size()

    # 1. memory
    row["saved_bytes"] = memory.saved_bytes(forward, keep=[*params, x, y])
    row["saved_bytes_expected"] = int(memory.expected_saved_bytes(
        cell.model, cell.strategy, dict(cell.strategy_options), cell.tau, cell.batch,
        cell.hidden, task.n_out, row["n_params"], itemsize))
    model.zero_grad(set_to_none=True)
    row["peak_bytes"], row["peak_method"] = memory.peak_bytes(
        lambda: forward().backward(), cell.device)
    model.zero_grad(set_to_none=True)
    row["peak_rss_method"] = procstat.reset_peak_rss()
    step = training_step(cell, model, forward)
    step()
    row["peak_rss_bytes"] = procstat.peak_rss(row["peak_rss_method"])
    del step
    model.zero_grad(set_to_none=True)
    _check_time(deadline, "memory")

    # 2. work
    with FlopCounterMode(display=False) as counter:
        forward().backward()
    # cuDNN's fused RNN kernel has no FLOP formula in torch.utils.flop_counter: it would
    # count 0 for the recurrence, so the figure is left out rather than undercounted.
    cudnn = cell.device == "cuda" and cell.strategy == "bptt_fused"
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


def _clock(device: str):
    """The sample clock: ``perf_counter``, after a CUDA synchronise on a GPU."""
    if device != "cuda":
        return time.perf_counter

    def clock() -> float:
        torch.cuda.synchronize()
        return time.perf_counter()

    return clock


def sample(stmt: str, setup: str, globals: dict, *, repeats: int, device: str = "cpu",
           threads: int = 1, label: str | None = None, description: str | None = None,
           after=lambda what: None, number: int | None = None) -> benchmark.Measurement:
    """Exactly ``repeats`` timing samples of ``stmt``.

    The statement first runs ``WARMUP`` times untimed; the last of those runs
    sizes its blocks (:func:`block_size`).  A sample is one block, timed by
    ``timeit.Timer`` - what ``torch.utils.benchmark.Timer`` wraps, with the
    garbage collector off - on the device's clock (:func:`_clock`), as the
    per-run mean of the block; ``setup`` runs untimed before each block.  The
    result is a ``torch.utils.benchmark.Measurement`` (median, IQR, raw times).
    (``Timer.blocked_autorange`` sizes its blocks by its own rule - clock
    overhead under 1e-4 of a block - which put 10 runs in each block of a 14 ms
    step and gave 2 samples where 10 were asked.)  ``after(what)`` is called
    after the warm-up and after every sample (the cell's time-out check).
    ``number``: runs per block, fixed (a statement whose ``setup`` must run
    before every run, such as a backward on a fresh graph, takes 1).
    """
    timer = timeit.Timer(stmt, setup=setup, timer=_clock(device), globals=globals)
    for _ in range(WARMUP):
        one = timer.timeit(1)
    after(f"warm-up ({description or stmt})")
    number = number or block_size(one)
    raw = []
    for _ in range(repeats):
        raw.append(timer.timeit(number))
        after(f"timing ({description or stmt})")
    return benchmark.Measurement(
        number_per_run=number, raw_times=raw,
        task_spec=benchmark.TaskSpec(stmt, setup, label=label, description=description,
                                     num_threads=threads))


def _time(cell: Cell, model, forward, deadline: float) -> dict:
    """:func:`sample` of the forward and the backward, ``repeats`` samples each.

    The backward is timed as training runs it: one ``L.backward()`` (no
    ``retain_graph``) on a graph the block's untimed ``setup`` builds afresh,
    so every block holds one run.  Strategies that take their gradient inside
    the forward (:func:`grad_in_forward`) have no separate figures.
    """
    if grad_in_forward(cell):
        return {"fwd_ms_median": NAN, "bwd_ms_median": NAN}
    g = {"forward": forward, "model": model}
    fresh = "model.zero_grad(set_to_none=True); L = forward()"
    out = {}
    for name, (stmt, setup, number) in {"fwd": ("forward()", "pass", None),
                                        "bwd": ("L.backward()", fresh, 1)}.items():
        out[name] = sample(stmt, setup, g, repeats=cell.repeats, device=cell.device,
                           threads=cell.n_threads, label=cell.cell_id, description=name,
                           after=lambda what: _check_time(deadline, what), number=number)
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
    """One side of a timed comparison: its training step, threads, block size and
    the minor page faults counted over its timed runs."""

    cell: Cell
    step: Callable[[], None]
    number: int = 1
    faults: int = 0
    runs: int = 0

    def warm(self, clock) -> None:
        """``WARMUP`` untimed steps (the first also makes Adam's state); the last sizes
        the blocks (:func:`block_size`)."""
        torch.set_num_threads(self.cell.n_threads)
        timer = timeit.Timer(self.step, timer=clock)
        for _ in range(WARMUP):
            one = timer.timeit(1)
        self.number = block_size(one)

    def block(self, clock) -> float:
        """One timed block: seconds per run."""
        torch.set_num_threads(self.cell.n_threads)
        f0 = procstat.minor_faults()
        seconds = timeit.Timer(self.step, timer=clock).timeit(self.number) / self.number
        self.faults += procstat.minor_faults() - f0
        self.runs += self.number
        return seconds

    @property
    def faults_per_step(self) -> float:
        return self.faults / self.runs if self.runs else NAN


def _ms(samples: list[float]) -> dict:
    q1, med, q3 = paired.quartiles([1e3 * s for s in samples])
    return {"step_ms_median": med, "step_ms_iqr": q3 - q1,
            "step_ms_samples": [1e3 * s for s in samples]}  # per-run ms, one per block


def time_step(cell: Cell, step: Callable[[], None], deadline: float,
              clock: Callable[[], float] | None = None) -> dict:
    """The training step's row fields: ``repeats`` blocks of ``step`` -- with a
    baseline, ``repeats`` pairs of blocks taking turns with the baseline's
    (:func:`paired.alternate`, CPU affinity rotated between pairs) -- and the
    minor page faults per timed step.  A baseline that fails (to build or
    while timed) leaves its error in ``baseline_error``; the cell's own figures
    are then timed alone."""
    clock = clock or _clock(cell.device)
    a = Side(cell, step)
    a.warm(clock)
    _check_time(deadline, "warm-up (step)")
    out, b = {}, None
    if cell.baseline:
        try:
            b, out = baseline_side(cell, clock, deadline)
        except CellTimeout:
            raise
        except Exception as exc:  # noqa: BLE001 - the baseline's failure is data
            out["baseline_error"] = f"{type(exc).__name__}: {exc}"[:2000]
    if b is not None:
        try:
            with paired.Affinity() as affinity:
                def pin(k, side):
                    if affinity.allowed:
                        affinity.pin(paired.cpu_window(
                            affinity.allowed, (a if side == "a" else b).cell.n_threads, k))

                result = paired.alternate(
                    lambda k: a.block(clock), lambda k: b.block(clock), cell.repeats,
                    before=pin, after=lambda k, side: _check_time(deadline, "timing (pairs)"))
            out.update(_ms(result.a), **paired.row_fields(result),
                       minor_faults_per_step=a.faults_per_step,
                       baseline_minor_faults_per_step=b.faults_per_step)
            return out
        except CellTimeout:
            raise
        except Exception as exc:  # noqa: BLE001
            out = {"baseline_error": f"{type(exc).__name__}: {exc}"[:2000],
                   "baseline_config": out.get("baseline_config")}
            a.faults = a.runs = 0
    samples = []
    for _ in range(cell.repeats):
        samples.append(a.block(clock))
        _check_time(deadline, "timing (step)")
    out.update(_ms(samples), minor_faults_per_step=a.faults_per_step)
    return out


def _build_side(cell: Cell) -> Side:
    """A warmed-up-ready :class:`Side` for ``cell``: model, batch, checked first loss."""
    _, model, x, y = _setup(cell)
    _loss_fn(cell, model, x, y)().backward()  # a non-finite loss fails here, once
    model.zero_grad(set_to_none=True)
    return Side(cell, training_step(cell, model, _loss_fn(cell, model, x, y, checked=False)))


def changed(cell: Cell, other: Cell) -> dict:
    """The fields in which ``other`` differs from ``cell`` (the baseline as run)."""
    a, b = cell.config(), other.config()
    return {k: b[k] for k in b if k != "baseline" and a[k] != b[k]}


def best_bptt(cell: Cell, clock, deadline: float) -> tuple[Side, dict]:
    """The fastest exact sequential BPTT for the baseline's model: every candidate
    (:func:`strategies.bptt_candidates`) is built, warmed and timed for
    ``BEST_ROUNDS`` blocks, the candidates taking turns; the lowest median wins.
    Returns the winner's side and {strategy: median ms} of every candidate
    (a candidate that fails gets its error instead)."""
    model = dict(cell.baseline).get("model", cell.model)
    sides, times = {}, {}
    for name in strategies.bptt_candidates(model):
        try:
            sides[name] = _build_side(cell.baseline_cell(name))
            sides[name].warm(clock)
        except CellTimeout:
            raise
        except Exception as exc:  # noqa: BLE001 - a candidate that cannot run is not the best
            times[name] = f"{type(exc).__name__}: {exc}"[:200]
        _check_time(deadline, "best_bptt warm-up")
    if not sides:
        raise RuntimeError(f"best_bptt: no candidate ran ({times})")
    samples = {name: [] for name in sides}
    for _ in range(BEST_ROUNDS):
        for name, side in sides.items():
            samples[name].append(side.block(clock))
        _check_time(deadline, "best_bptt timing")
    for name in samples:
        times[name] = paired.quartiles(samples[name])[1] * 1e3
    winner = min(samples, key=lambda n: times[n])
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
        side = _build_side(cell.baseline_cell())
        side.warm(clock)
    out["baseline_config"] = json.dumps(changed(cell, side.cell), sort_keys=True)
    _check_time(deadline, "warm-up (baseline)")
    return side, out


# --------------------------------------------------------------------------- loss


def _train_and_evaluate(cell: Cell, deadline: float) -> dict:
    """Train ``train_steps`` steps of Adam, then evaluate; an untrained cell has no loss figures."""
    if cell.train_steps == 0:
        return {}
    task, model, x, y = _setup(cell)
    optimizer = torch.optim.Adam(model.parameters(), lr=cell.lr)
    curve = []
    every = max(1, cell.train_steps // CURVE_POINTS)
    start = time.perf_counter()
    for i in range(cell.train_steps):
        xs, ys = task.batch(cell.tau, cell.batch, seed=train_seed(cell, i), dtype=x.dtype,
                            device=x.device)
        optimizer.zero_grad(set_to_none=True)
        value = _loss_fn(cell, model, xs, ys, step=i)()
        value.backward()
        optimizer.step()
        if i % every == 0 or i == cell.train_steps - 1:
            curve.append([i + 1, time.perf_counter() - start, value.item() / tokens(cell)])
        _check_time(deadline, f"training (step {i + 1} of {cell.train_steps})")
    return {"train_curve": curve, **evaluate(cell, model, task)}


@torch.no_grad()
def evaluate(cell: Cell, model, task) -> dict:
    """Per-token NLL (nats) and accuracy on a held-out batch, teacher-forced and free-running."""
    batch = max(cell.batch, EVAL_BATCH)
    x, y = task.batch(cell.tau, batch, seed=cell.seed + EVAL_SEED, dtype=model.U.dtype,
                      device=model.U.device)
    tf = strategies.logits(model, x, y, feedback="teacher")
    free = strategies.logits(model, x, y, feedback="argmax") if isinstance(model, models.Jordan) else tf
    out = {}
    for name, o in (("tf", tf), ("free", free)):
        nll = F.cross_entropy(o.reshape(-1, o.shape[-1]), y.reshape(-1), reduction="none")
        out[f"loss_{name}"] = float(nll.mean())
        out[f"acc_{name}"] = float((o.argmax(-1) == y).double().mean())
        if not model.single_output:
            per_t = nll.view(y.shape).mean(1)  # (tau,)
            edges = sorted({round(i * cell.tau / HORIZON_BUCKETS) for i in range(HORIZON_BUCKETS + 1)})
            out["horizon_t"] = edges[1:]
            out[f"horizon_loss_{name}"] = [float(per_t[s:e].mean()) for s, e in zip(edges, edges[1:])]
    for key in ("loss_tf", "loss_free"):
        if not math.isfinite(out[key]):
            raise NonFiniteLoss(f"non-finite evaluation loss {out[key]}")
    return out
