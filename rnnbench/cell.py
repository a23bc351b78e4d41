"""One benchmark cell: a frozen configuration, its stable id, and the row it gives.

Data flows one way: job -> cells -> rows -> report.  A :class:`Cell` is pure
configuration; :func:`rnnbench.measure.run_cell` turns it into one tidy row
(a dict whose keys are :data:`ROW_KEYS`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from . import strategies, tasks
from .errors import UsageError
from .models import MODELS

DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "float64")
# auto: one worker is timed in this process, several by the worker-group harness
# (rnnbench.timeparallel); group: the worker-group harness even for one worker, so a
# 1-worker baseline is timed exactly like the N-worker cells it is compared with.
HARNESSES = ("auto", "group")


def _frozen(options: Any, field: str) -> tuple:
    """A mapping as a sorted tuple of (key, value) pairs, so the cell stays hashable."""
    if options is None:
        return ()
    if isinstance(options, tuple):
        options = dict(options)
    if not isinstance(options, dict):
        raise UsageError(f"{field}: must be a mapping of option names to values, got {options!r}")
    for key, value in options.items():
        if not isinstance(key, str):
            raise UsageError(f"{field}: option names must be strings, got {key!r}")
        if not isinstance(value, (str, int, float, bool, type(None))):
            raise UsageError(f"{field}.{key}: must be a number, string or boolean, got {value!r}")
    return tuple(sorted(options.items()))


def _int(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UsageError(f"{name}: must be an integer >= {low}, got {value!r}")


@dataclass(frozen=True)
class Cell:
    """model, strategy (+ options), task (+ options), tau, batch, hidden, seed,
    threads, device, workers, train_steps, lr, repeats, dtype, harness."""

    model: str
    strategy: str
    tau: int
    batch: int = 1
    hidden: int = 128
    task: str = "text"
    strategy_options: tuple = ()
    task_options: tuple = ()
    seed: int = 0
    threads: int = 1
    device: str = "cpu"
    workers: int = 1
    train_steps: int = 0
    lr: float = 1e-2
    repeats: int = 20
    dtype: str = "float32"
    harness: str = "auto"

    def __post_init__(self):
        object.__setattr__(self, "strategy_options",
                           _frozen(self.strategy_options, "strategy_options"))
        object.__setattr__(self, "task_options", _frozen(self.task_options, "task_options"))
        if self.model not in MODELS:
            raise UsageError(f"model: unknown model {self.model!r}; allowed: {', '.join(MODELS)}")
        strategies.check(self.model, self.strategy, dict(self.strategy_options))
        if isinstance(self.tau, int) and not isinstance(self.tau, bool) and self.tau >= 1:
            strategies.check_option_values(self.strategy, dict(self.strategy_options), self.tau)
        task = tasks.make(self.task, **dict(self.task_options))
        if task.single_output != (self.model == "single_output"):
            raise UsageError(
                f"task: {self.task} does not fit model {self.model}; "
                + ("single_output needs sequence_parity" if self.model == "single_output"
                   else "sequence_parity needs model single_output")
            )
        for name, low in (("tau", 1), ("batch", 1), ("hidden", 1), ("seed", 0),
                          ("threads", 1), ("workers", 1), ("train_steps", 0), ("repeats", 1)):
            _int(name, getattr(self, name), low)
        if self.device not in DEVICES:
            raise UsageError(f"device: must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.harness not in HARNESSES:
            raise UsageError(f"harness: must be one of {', '.join(HARNESSES)}, got {self.harness!r}")
        if self.dtype not in DTYPES:
            raise UsageError(f"dtype: must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise UsageError(f"lr: must be a positive number, got {self.lr!r}")

    # ------------------------------------------------------------------ helpers
    def config(self) -> dict:
        """The configuration as plain JSON-able data (options as dicts)."""
        d = dataclasses.asdict(self)
        d["strategy_options"] = dict(self.strategy_options)
        d["task_options"] = dict(self.task_options)
        return d

    @property
    def cell_id(self) -> str:
        """Stable id: the first 16 hex digits of SHA-256 over the sorted config.

        ``harness`` enters the hash only when it is not the default, so ids of
        cells stored before the field existed do not change.
        """
        config = self.config()
        if config["harness"] == "auto":
            del config["harness"]
        blob = json.dumps(config, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def grouped(self) -> bool:
        """Timed by the worker-group harness (rnnbench.timeparallel), not in-process."""
        return self.workers > 1 or self.harness == "group"

    def make_task(self) -> tasks.Task:
        return tasks.make(self.task, **dict(self.task_options))

    @classmethod
    def from_config(cls, config: dict) -> "Cell":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise UsageError(f"{unknown[0]}: unknown cell field; allowed: {', '.join(sorted(known))}")
        return cls(**config)


# The keys of every row, in order, each with its type: the schema of ``results.parquet``
# (rnnbench.store), so every run's file has the same column types, an all-null column too.
# str, int, float (null when missing), json (a JSON object as text: the options),
# timestamp (UTC; ISO 8601 text in a row file), list[...] (a Parquet list column).
ROW_TYPES = {
    # identity and configuration
    "cell_id": "str", "model": "str", "strategy": "str", "strategy_options": "json",
    "task": "str", "task_options": "json", "tau": "int", "batch": "int", "hidden": "int",
    "n_in": "int", "n_out": "int", "n_params": "int", "seed": "int", "threads": "int",
    "device": "str", "workers": "int", "harness": "str", "dtype": "str", "train_steps": "int",
    "lr": "float", "repeats": "int",
    # outcome
    "status": "str", "error": "str",
    # time (ms): full training step, and forward / backward apart
    "step_ms_median": "float", "step_ms_iqr": "float", "step_ms_samples": "list[float]",
    "fwd_ms_median": "float", "bwd_ms_median": "float",
    # memory (bytes)
    "saved_bytes": "float", "saved_bytes_expected": "float", "peak_bytes": "float",
    "peak_method": "str",
    # work and depth
    "flops": "float", "depth": "int",
    # loss (nats per token) and accuracy after train_steps of Adam; the curve's points
    # are (step, wall seconds, loss)
    "loss_tf": "float", "loss_free": "float", "acc_tf": "float", "acc_free": "float",
    "train_curve": "list[list[float]]", "horizon_t": "list[int]",
    "horizon_loss_tf": "list[float]", "horizon_loss_free": "list[float]",
    # time-parallel (workers > 1): how the work was split, how many workers had any
    "split": "str", "workers_active": "int", "comm_ms_median": "float",
    # sweep context: how many other cells shared the node while this one ran
    "neighbours": "int", "attempt": "int",
    # provenance
    "python": "str", "torch": "str", "ray": "str", "rnnbench": "str", "git_commit": "str",
    "host": "str", "cpu_model": "str", "gpu_name": "str", "timestamp": "timestamp",
    "wall_s": "float",
}
ROW_KEYS = tuple(ROW_TYPES)

# Columns that are numbers and may be missing (NaN in a frame, null in a row file).
FLOAT_KEYS = tuple(k for k, kind in ROW_TYPES.items() if kind == "float")
