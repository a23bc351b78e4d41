"""One benchmark cell: a frozen configuration, its stable id, and the row it gives.

Data flows one way: job -> cells -> rows -> report.  A :class:`Cell` is pure
configuration; :func:`rnnbench.runner.run_cell` turns it into one tidy row
(a dict whose keys are :data:`rnnbench.rows.ROW_KEYS`); docs/design.md.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from . import strategies, tasks
from .errors import UsageError, check_int, short
from .models import MODELS, check_rho

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


INT64_MAX = 2**63 - 1  # integers are stored as int64 (Parquet, pandas)


@dataclass(frozen=True)
class Cell:
    """model, strategy (+ options), task (+ options), tau, batch, hidden, seed,
    threads, device, workers, train_steps, lr, repeats, dtype, harness, rho
    (spectral radius W is rescaled to at init; None: the default init)."""

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
    rho: float | None = None

    def __post_init__(self):
        """Check every field; one UsageError listing every problem, one line each."""
        problems: list[str] = []

        def check(fn, *args):
            try:
                return fn(*args)
            except UsageError as exc:
                problems.append(str(exc))
                return None

        for name in ("strategy_options", "task_options"):
            frozen = check(_frozen, getattr(self, name), name)
            object.__setattr__(self, name, () if frozen is None else frozen)
        check(self._check_model_strategy)
        check(self._check_task)
        check(check_rho, self.model, self.rho)
        for name, low in (("tau", 1), ("batch", 1), ("hidden", 1), ("seed", 0),
                          ("threads", 1), ("workers", 1), ("train_steps", 0), ("repeats", 1)):
            check(check_int, name, getattr(self, name), low, INT64_MAX)
        for name, allowed in (("device", DEVICES), ("harness", HARNESSES), ("dtype", DTYPES)):
            if getattr(self, name) not in allowed:
                problems.append(f"{name}: must be one of {', '.join(allowed)}, "
                                f"got {short(getattr(self, name))}")
        if (isinstance(self.lr, bool) or not isinstance(self.lr, (int, float))
                or not 0 < self.lr < math.inf):
            problems.append(f"lr: must be a finite positive number, got {short(self.lr)}")
        if problems:
            raise UsageError("\n".join(problems))

    def _check_model_strategy(self) -> None:
        if self.model not in MODELS:
            strategies.get(self.strategy)  # an unknown strategy is a problem of its own
            raise UsageError(f"model: unknown model {short(self.model)}; "
                             f"allowed: {', '.join(MODELS)}")
        tau_ok = isinstance(self.tau, int) and not isinstance(self.tau, bool) and self.tau >= 1
        strategies.check(self.model, self.strategy, dict(self.strategy_options),
                         self.tau if tau_ok else None)

    def _check_task(self) -> None:
        task = tasks.make(self.task, **dict(self.task_options))
        if self.model in MODELS and task.single_output != (self.model == "single_output"):
            raise UsageError(
                f"task: {self.task} does not fit model {self.model}; "
                + ("single_output needs sequence_parity" if self.model == "single_output"
                   else "sequence_parity needs model single_output")
            )

    # ------------------------------------------------------------------ helpers
    def config(self) -> dict:
        """The configuration as plain JSON-able data (options as dicts)."""
        d = dataclasses.asdict(self)
        d["strategy_options"] = dict(self.strategy_options)
        d["task_options"] = dict(self.task_options)
        return d

    @functools.cached_property
    def cell_id(self) -> str:
        """Stable id: the first 16 hex digits of SHA-256 over the sorted config.

        ``harness`` and ``rho`` enter the hash only when they are not the
        default, so ids of cells stored before the fields existed do not change.
        Computed once per cell (the driver asks for it many times).
        """
        config = self.config()
        if config["harness"] == "auto":
            del config["harness"]
        if config["rho"] is None:
            del config["rho"]
        blob = json.dumps(config, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def grouped(self) -> bool:
        """Timed by the worker-group harness (rnnbench.timeparallel), not in-process."""
        return self.workers > 1 or self.harness == "group"

    @property
    def depth(self) -> int | None:
        """The strategy's sequential depth at this tau and these options (None: known
        only once the iterative strategies have run, see rnnbench.diagnostics)."""
        return strategies.get(self.strategy).depth(self.tau, **dict(self.strategy_options))

    def make_task(self) -> tasks.Task:
        return tasks.make(self.task, **dict(self.task_options))

    @classmethod
    def from_config(cls, config: dict) -> "Cell":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise UsageError(f"{unknown[0]}: unknown cell field; allowed: {', '.join(sorted(known))}")
        return cls(**config)
