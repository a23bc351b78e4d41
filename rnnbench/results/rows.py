"""The row: its keys and their types, its statuses, how an exception becomes one
(docs/design.md).  Imports neither torch nor Ray, so reading results stays light.
A row file written before a key existed still loads: the key reads as null."""

from __future__ import annotations

import math
import sys
from typing import Any

from rnnbench.facts import (
    CPU_SHARE_MIN,
    CRASHED,
    FAILED,
    OK,
    OOM,
    TIMEOUT,
    WAIT_SHARE_MAX,
    clip_error,
)

__all__ = ["CRASHED", "FAILED", "OK", "OOM", "TIMEOUT"]  # the statuses, from rnnbench.facts

# Every row key with its type, in column order: the schema of ``results.parquet``
# (rnnbench.results.store), so every run's file has the same column types, an all-null column
# too.  "float": a number that is NaN (null in a row file) when not measured; "json": a
# JSON object as text (the options); "timestamp": UTC (ISO 8601 text in a row file);
# "list[...]": a Parquet list column.
# A row as code holds it: column name -> value (a row file is its JSON).
Row = dict[str, Any]

SCHEMA: dict[str, str] = {
    # identity and configuration
    **dict.fromkeys(("cell_id", "model", "strategy"), "str"),
    "strategy_options": "json",
    "task": "str",
    "task_options": "json",
    **dict.fromkeys(
        ("tau", "batch", "hidden", "n_in", "n_out", "n_params", "seed", "threads"), "int"
    ),
    "device": "str",
    "workers": "int",
    "harness": "str",
    "dtype": "str",
    "train_steps": "int",
    "lr": "float",
    "repeats": "int",
    "rho": "float",
    # a law cell's τ values, timed in its one process taking turns (tau is the largest)
    "law_taus": "list[int]",
    # how the cell was measured: replicate i of replicates (each a fresh process), run
    # alone on its node, the relative half-width aimed at and the replicates allowed
    "replicate": "int",
    "replicates": "int",
    "exclusive": "bool",
    "precision": "float",
    "max_replicates": "int",
    # the task's chance accuracy (guessing its most frequent class; NaN where not defined)
    "chance_acc": "float",
    # outcome
    "status": "str",
    "error": "str",
    # time (ms): full training step, and forward / backward apart
    "step_ms_median": "float",
    "step_ms_iqr": "float",
    "step_ms_samples": "list[float]",
    "fwd_ms_median": "float",
    "bwd_ms_median": "float",
    # a law cell: the training step (ms) at each of law_taus, in this one process, the tau
    # values taking turns block by block: each tau's time over the largest tau's in the
    # same round, the median over rounds, times the largest tau's median (so the speed of
    # the process and of each round's CPU cancels); and every block (ms), per tau
    "law_step_ms": "list[float]",
    "law_step_samples": "list[list[float]]",
    # the sequential chain alone (exact sequential BPTT): the recurrence h = tanh(a + W h)
    # and its backward delta-recurrence, one step after another, without the time-batched
    # products around them (ms per forward + backward of the chain); the control: the same
    # step's operations (one step's forward and backward) timed on their own, times tau
    "chain_ms_median": "float",
    "chain_ms_iqr": "float",
    "chain_op_ms_median": "float",
    # paired on threads: per block pair, baseline / this cell of the chain and of the control
    "chain_speedup_samples": "list[float]",
    "op_speedup_samples": "list[float]",
    # memory (bytes), work and depth; the node's GEMM rate (GFLOP/s, the cell's dtype
    # and threads), so flops / gemm_gflops is the step's compute-bound time
    "saved_bytes": "float",
    "saved_bytes_expected": "float",
    "peak_bytes": "float",
    "peak_method": "str",
    "flops": "float",
    "depth": "int",
    "gemm_gflops": "float",
    # parallel-in-time strategies (deer, quasi_deer; null for the others): Newton
    # iterations done, whether every residual met the tolerance, the largest residual
    "iterations": "int",
    "converged": "bool",
    "residual": "float",
    # the iteration cap the run had (max_iter, at most tau): a run stopped there without
    # converging is censored (k > cap); the largest Lyapunov exponent of the dynamics
    # along the solved trajectory (mean log growth per step; < 0: contracting)
    "iter_cap": "int",
    "lyapunov": "float",
    # loss (nats per token) and accuracy after train_steps of Adam
    **dict.fromkeys(("loss_tf", "loss_free", "acc_tf", "acc_free"), "float"),
    # what a Jordan network fed back when free-running in the evaluation: the feedback it
    # was trained with (softmax, argmax for teacher forcing's one-hot truth, or sample)
    "eval_feedback": "str",
    # the curve's points are (step, wall seconds, loss)
    "train_curve": "list[list[float]]",
    "horizon_t": "list[int]",
    **dict.fromkeys(("horizon_loss_tf", "horizon_loss_free"), "list[float]"),
    # paired baseline: the same cell with some fields changed, timed in alternating
    # blocks beside it (rnnbench.harness.paired); speedup = baseline / this cell, per block pair
    **dict.fromkeys(
        ("baseline", "baseline_config", "baseline_candidates_ms", "baseline_error"), "str"
    ),
    **dict.fromkeys(
        (
            "baseline_step_ms_median",
            "baseline_step_ms_iqr",
            "speedup_median",
            "speedup_q1",
            "speedup_q3",
        ),
        "float",
    ),
    "speedup_samples": "list[float]",
    # adaptive precision: the relative 95% half-width the pairs reached, and why adding
    # pairs stopped ("target", "time cap", "pair cap"; none without a precision)
    "precision_reached": "float",
    "stop_reason": "str",
    # ... and of the cell's replicates (rnnbench.sweep.adaptive): the relative half-width
    # reached over them (for a law in tau: the tau-squared share's), and why they stopped
    "replicates_precision": "float",
    "replicates_stop": "str",
    # what the OS saw (rnnbench.harness.procstat): minor page faults per timed step, peak RSS
    "minor_faults_per_step": "float",
    "baseline_minor_faults_per_step": "float",
    "peak_rss_bytes": "float",
    "peak_rss_method": "str",
    "allocator": "str",  # the C allocator's conditions (rnnbench.harness.allocator)
    # how much of the machine the cell got while timed: process CPU time over wall time x
    # threads, and the threads' runqueue wait over wait + on-CPU time (each side of a
    # pair), the 1-minute load average before and after the cell, the share of CPU time
    # the hypervisor stole while it ran (/proc/stat), the node's CPUs
    "cpu_share": "float",
    "baseline_cpu_share": "float",
    "wait_share": "float",
    "baseline_wait_share": "float",
    "load_before": "float",
    "load_after": "float",
    "steal_share": "float",
    "node_cpus": "int",
    # worker-group harness: how the work was split, how many workers had any
    "split": "str",
    "workers_active": "int",
    "comm_ms_median": "float",
    # worker-group collectives (more than one worker), timed when the group starts
    # (rnnbench.harness.group.collectives): the bytes one rank contributes, the slowest
    # rank's median seconds of all-reduce and all-gather at each, and each collective's
    # least-squares fit t = latency + bytes / bandwidth (s, bytes/s) over this group's ranks
    "coll_bytes": "list[float]",
    "allreduce_s": "list[float]",
    "allgather_s": "list[float]",
    "allreduce_latency_s": "float",
    "allreduce_bandwidth_Bps": "float",
    "allgather_latency_s": "float",
    "allgather_bandwidth_Bps": "float",
    # sweep context: the job's name; how many other cells shared the node while this one ran
    "job": "str",
    "neighbours": "int",
    "attempt": "int",
    # provenance
    **dict.fromkeys(
        (
            "python",
            "torch",
            "ray",
            "rnnbench",
            "git_commit",
            "host",
            "cpu_model",
            "gpu_name",
            "blas",
        ),
        "str",
    ),
    "timestamp": "timestamp",
    "wall_s": "float",
    # where the cell ran (cluster): the Ray node's id and IP address of the process that
    # measured it; for a worker-group cell, each rank's, in rank order
    "node_id": "str",
    "node_ip": "str",
    "rank_node_ids": "list[str]",
    "rank_node_ips": "list[str]",
}
ROW_KEYS = tuple(SCHEMA)
FLOAT_KEYS = tuple(k for k, t in SCHEMA.items() if t == "float")
LIST_KEYS = tuple(k for k, t in SCHEMA.items() if t.startswith("list"))
NUMERIC_KEYS = tuple(k for k, t in SCHEMA.items() if t in ("int", "float"))


def contended(row: Row) -> bool:
    """Whether a row was timed without the machine it asked for
    (:data:`rnnbench.facts.WAIT_SHARE_MAX`, :data:`rnnbench.facts.CPU_SHARE_MIN`): its
    threads (or its baseline's) waited for a CPU.  Where the kernel kept no wait
    statistics, the proxies decide: a 1-thread cell got less than a CPU, or the node's
    load average was beyond its CPUs when the cell began.  Where it kept them, the wait
    decides alone: the 1-minute load average lags, and counts the sweep's own cells of
    the last minute (an exclusive cell that never waited read as contended after its
    neighbours' minute).  A row from before these were recorded is not."""

    def num(name: str) -> float:
        value = row.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        return math.nan

    waits = [w for w in (num("wait_share"), num("baseline_wait_share")) if not math.isnan(w)]
    if waits:
        return max(waits) > WAIT_SHARE_MAX
    if num("threads") == 1 and num("cpu_share") < CPU_SHARE_MIN:
        return True
    return num("load_before") > num("node_cpus")


class CellTimeout(Exception):
    """The cell ran past its time budget."""


class NonFiniteLoss(FloatingPointError):
    """The loss became NaN or infinite."""


class WorkerDied(RuntimeError):
    """A worker process died (killed, crashed, out of memory) while the group ran."""


def _is(exc: BaseException, module: str, name: str) -> bool:
    """isinstance(exc, module.name), without importing ``module`` (torch, Ray)."""
    mod = sys.modules.get(module)
    cls = getattr(mod, name, None) if mod is not None else None
    return cls is not None and isinstance(exc, cls)


def _memory_words(text: str) -> bool:
    text = text.lower()
    return (
        any(w in text for w in ("out of memory", "can't allocate memory", "memory pressure"))
        or "oom" in text.split()
    )


def status_of(exc: BaseException) -> str:
    """The status of a cell that raised ``exc``: timeout | oom | crashed | failed.

    The one rule for both harnesses and the sweep: running past the time
    budget is ``timeout``; running out of memory (torch's or Ray's error, or
    the words in the message) ``oom``; a dead process (a worker of the group,
    or the Ray task's own: Ray's system errors) ``crashed``; an exception
    raised by the cell's own code, or passed on by Ray from a task or actor
    method (``RayTaskError``, whatever its cause), ``failed``.
    """
    if _is(exc, "ray.exceptions", "RayTaskError"):
        return FAILED
    if (
        isinstance(exc, CellTimeout)
        or _is(exc, "ray.exceptions", "GetTimeoutError")
        or _is(exc, "ray.exceptions", "TaskCancelledError")
    ):
        return TIMEOUT
    if _is(exc, "torch", "OutOfMemoryError") or _is(exc, "ray.exceptions", "OutOfMemoryError"):
        return OOM
    if isinstance(exc, WorkerDied):
        return OOM if _memory_words(str(exc)) else CRASHED
    if _is(exc, "ray.exceptions", "RayError"):
        return CRASHED  # WorkerCrashedError, NodeDiedError, ObjectLostError, ...
    return OOM if _memory_words(f"{exc}") else FAILED


def fail(row: Row, exc: BaseException) -> Row:
    """``row`` with the status of ``exc`` and its error text: the message itself for a
    time-out or a dead worker (they say what happened), else ``Type: message``."""
    status = status_of(exc)
    own = status == TIMEOUT or isinstance(exc, WorkerDied)
    row.update(status=status, error=clip_error(str(exc) if own else f"{type(exc).__name__}: {exc}"))
    return row
