"""The facts both sides share: what measures and what reads results import alike.

Torch-free and Ray-free, and it imports nothing of rnnbench: statuses, the strategy
families, verdict names, thresholds, the error-text limit, the scan depth and what
``threads: all`` becomes.  A fact lives here once; the strategy registry
(:mod:`rnnbench.core.strategies`) is checked against it by the tests.
"""

from __future__ import annotations

import functools
import math
import os

# --------------------------------------------------------------------------- row statuses

OK, FAILED, CRASHED, TIMEOUT, OOM = "ok", "failed", "crashed", "timeout", "oom"
STATUSES = (OK, FAILED, CRASHED, TIMEOUT, OOM)

# What a row file must hold to count as a stored row.
REQUIRED_ROW_KEYS = ("cell_id", "model", "strategy", "tau", "status")

# An error text kept in a row is cut to this many characters.
ERROR_TEXT_LIMIT = 2000


def clip_error(text: object) -> str:
    """``text`` as a string of at most :data:`ERROR_TEXT_LIMIT` characters."""
    return str(text)[:ERROR_TEXT_LIMIT]


# --------------------------------------------------------------------------- strategies

TEACHER_FORCING = "teacher_forcing"
# Exact gradient, stepping through time one step after another (depth tau): the
# candidates of a fair "best BPTT" baseline, and the BPTT the chapter's claims are about.
# What a timed computation is, in the tidy rows' columns: rows agreeing on these time the
# same thing on the same hardware (seeds, replicates and runs are its repetitions).
COMPUTATION = tuple(
    "model strategy_label task_label tau batch hidden device threads workers split dtype".split()
)
SEQUENTIAL_BPTT = ("bptt", "bptt_fused", "bptt_compiled")
# The compiled loop: the sequential algorithm without a framework's per-step overhead.
COMPILED_BPTT = "bptt_compiled"
# The framework loop's operations without an autograd graph (a control, not a candidate
# of the best BPTT: it exists to show where the framework loop's time goes).
NO_GRAPH_BPTT = "bptt_no_graph"
# A baseline strategy: the fastest exact sequential BPTT, chosen by timing in the cell.
BEST_BPTT = "best_bptt"
# ... and the fastest exact form of teacher forcing (among its implementations).
BEST_TF = "best_tf"
BEST_CHOICES = (BEST_BPTT, BEST_TF)
# Parallel-in-time Newton solvers of Elman's recurrence.
NEWTON_SOLVERS = ("deer", "quasi_deer")
# Elman strategies the worker-group harness splits along time, with their solver.
TIME_SPLIT_SOLVERS = {"scan_bptt": "sequential", "deer": "newton", "quasi_deer": "quasi"}
# Jordan strategies fed their own outputs while training.
SELF_FEEDING = ("free_running", "scheduled_sampling")

# --------------------------------------------------------------------------- verdicts

HOLDS, FAILS, NOT_MEASURED, BY_CONSTRUCTION = (
    "holds",
    "does not hold",
    "not measured",
    "by construction",
)
VERDICTS = (HOLDS, FAILS, NOT_MEASURED, BY_CONSTRUCTION)

# --------------------------------------------------------------------------- thresholds

# rnnbench compare: a NEW/BASE ratio beyond this counts as a change (asv's factor).
COMPARE_THRESHOLD = 1.10
# A timing whose IQR exceeds this fraction of its median is noisy
# (torch.utils.benchmark's Measurement warning threshold).
NOISY_IQR = 0.1
# O(τ): T = a + b·τ + c·τ² is linear when the τ² term's share of T(τ_max) lies within
# ±LINEAR_BAND (95% interval) and the fixed cost a is not below 0.
LINEAR_BAND = 0.2
# A row is contended (kept out of every time verdict) when, while it was timed, its
# threads (or its baseline's) waited on a runqueue for more than WAIT_SHARE_MAX of their
# time; where the kernel keeps no wait statistics, when a 1-thread cell got less than
# CPU_SHARE_MIN of a CPU or the node's 1-minute load average exceeded its CPUs before the
# cell began (results.rows.contended).
WAIT_SHARE_MAX = 0.1
CPU_SHARE_MIN = 0.8

# --------------------------------------------------------------------------- the scan


def scan_depth(tau: int) -> int:
    """Rounds of one associative scan over ``tau`` elements as rnnbench runs it
    (:mod:`rnnbench.pit.scan`, Blelloch's up-sweep and down-sweep): 2⌈log₂τ⌉ − 1, and 1
    for τ = 1."""
    return max(1, 2 * math.ceil(math.log2(max(tau, 1))) - 1)


# --------------------------------------------------------------------------- the machine

DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "float64")
ALL = "all"  # threads: every CPU of the node the cell runs on


@functools.cache
def node_cpus() -> int:
    """The CPUs this process may run on, read once per process: what ``threads: all``
    becomes.  (Read again later, it would see a harness's own CPU pinning.)"""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
