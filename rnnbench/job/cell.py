"""One benchmark cell: a frozen configuration, its stable id, and the row it gives.

Data flows one way: job -> cells -> rows -> report.  A :class:`Cell` is pure
configuration; :func:`rnnbench.harness.runner.run_cell` turns it into one tidy row
(a dict whose keys are :data:`rnnbench.results.rows.ROW_KEYS`); docs/design.md.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from rnnbench.core import strategies, tasks
from rnnbench.core.models import MODELS, check_rho
from rnnbench.errors import UsageError, check_int, short
from rnnbench.facts import ALL, BEST_CHOICES, DEVICES, DTYPES, node_cpus

# auto: one worker is timed in this process, several by the worker-group harness
# (rnnbench.harness.group); group: the worker-group harness even for one worker, so a
# 1-worker baseline is timed exactly like the N-worker cells it is compared with.
HARNESSES = ("auto", "group")
# How a cell is run, not what it computes: never part of its id.
NOT_IN_ID = ("replicates", "exclusive", "precision", "max_replicates")
# Fields a baseline may change (the rest - repeats, train_steps, lr - describe how
# the pair is measured, not what is compared).
BASELINE_FIELDS = tuple(
    "model strategy strategy_options task task_options tau batch hidden seed threads device "
    "workers dtype harness rho".split()
)


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


def _overrides(value: Any) -> tuple:
    """A baseline's field overrides, frozen: sorted (field, value) pairs, option
    mappings frozen in turn."""
    if value is None:
        return ()
    if isinstance(value, tuple):
        value = dict(value)
    if not isinstance(value, dict):
        raise UsageError(
            f"baseline: must be a mapping of cell fields to values, e.g. "
            f"{{workers: 1}}, got {value!r}"
        )
    out = []
    for key, v in value.items():
        if key not in BASELINE_FIELDS:
            raise UsageError(
                f"baseline.{key}: not a field a baseline may change; allowed: "
                f"{', '.join(BASELINE_FIELDS)}"
            )
        if key.endswith("_options"):
            v = _frozen(v, f"baseline.{key}")
        elif not isinstance(v, (str, int, float, bool)):
            raise UsageError(f"baseline.{key}: must be a number or a string, got {v!r}")
        out.append((key, v))
    return tuple(sorted(out))


@dataclass(frozen=True)
class Cell:
    """model, strategy (+ options), task (+ options), tau, batch, hidden, seed,
    threads (a count or ``"all"``), baseline (the same cell with some fields
    changed, timed beside it: :mod:`rnnbench.harness.paired`), device, workers,
    train_steps, lr, repeats, dtype, harness, rho
    (spectral radius W is rescaled to at init; None: the default init), law_taus (the
    τ values whose training steps this one process times taking turns, for the O(τ)
    law: :func:`rnnbench.harness.single.time_law`; ``tau`` is the largest).

    How a cell is measured, beside what it computes: ``replicate`` (this cell is
    replicate i of ``replicates``, each measured in a fresh process: the repetition an
    interval is taken over), ``exclusive`` (runs alone on its node), ``precision`` (a
    relative 95% half-width to reach by adding pairs and replicates, up to
    ``max_replicates``).  Only ``replicate`` enters the cell id (when it is not 0)."""

    model: str
    strategy: str
    tau: int
    batch: int = 1
    hidden: int = 128
    task: str = "text"
    # mappings of option names to values, frozen to sorted (key, value) pairs
    strategy_options: tuple | dict = ()
    task_options: tuple | dict = ()
    seed: int = 0
    threads: int | str = 1
    device: str = "cpu"
    workers: int = 1
    train_steps: int = 0
    lr: float = 1e-2
    repeats: int = 20
    dtype: str = "float32"
    harness: str = "auto"
    rho: float | None = None
    baseline: tuple | dict = ()  # field overrides, frozen like the options
    law_taus: tuple | list = ()  # sorted distinct τ, the cell's tau the largest
    replicate: int = 0
    replicates: int = 1
    exclusive: bool = False
    precision: float | None = None
    max_replicates: int = 10

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
        frozen = check(_overrides, self.baseline)
        object.__setattr__(self, "baseline", () if frozen is None else frozen)
        taus = check(self._law, self.law_taus)
        object.__setattr__(self, "law_taus", () if taus is None else taus)
        check(self._check_model_strategy)
        check(self._check_task)
        check(check_rho, self.model, self.rho)
        for name, low in (
            ("tau", 1),
            ("batch", 1),
            ("hidden", 1),
            ("seed", 0),
            ("workers", 1),
            ("train_steps", 0),
            ("repeats", 1),
            ("replicate", 0),
            ("replicates", 1),
            ("max_replicates", 1),
        ):
            check(check_int, name, getattr(self, name), low, INT64_MAX)
        if self.threads != ALL and check(check_int, "threads", self.threads, 1, INT64_MAX) is None:
            problems[-1] = (
                f"threads: must be a positive integer or 'all', got {short(self.threads)}"
            )
        for name, allowed in (("device", DEVICES), ("harness", HARNESSES), ("dtype", DTYPES)):
            if getattr(self, name) not in allowed:
                problems.append(
                    f"{name}: must be one of {', '.join(allowed)}, got {short(getattr(self, name))}"
                )
        if (
            isinstance(self.lr, bool)
            or not isinstance(self.lr, (int, float))
            or not 0 < self.lr < math.inf
        ):
            problems.append(f"lr: must be a finite positive number, got {short(self.lr)}")
        if not isinstance(self.exclusive, bool):
            problems.append(f"exclusive: must be true or false, got {short(self.exclusive)}")
        if self.precision is not None and (
            isinstance(self.precision, bool)
            or not isinstance(self.precision, (int, float))
            or not 0 < self.precision < 1
        ):
            problems.append(
                f"precision: must be a number between 0 and 1 (a relative half-width, e.g. "
                f"0.05), got {short(self.precision)}"
            )
        if not problems and self.replicate >= self.replicates:
            problems.append(
                f"replicate: must be below replicates ({self.replicates}), got {self.replicate}"
            )
        if problems:
            raise UsageError("\n".join(problems))
        if self.baseline:
            self.baseline_cell()  # validates the overrides

    def _check_model_strategy(self) -> None:
        if self.model not in MODELS:
            strategies.get(self.strategy)  # an unknown strategy is a problem of its own
            raise UsageError(
                f"model: unknown model {short(self.model)}; allowed: {', '.join(MODELS)}"
            )
        tau_ok = isinstance(self.tau, int) and not isinstance(self.tau, bool) and self.tau >= 1
        strategies.check(
            self.model, self.strategy, dict(self.strategy_options), self.tau if tau_ok else None
        )

    def _law(self, taus: Any) -> tuple[int, ...]:
        """``law_taus`` as a sorted tuple: at least 3 distinct positive τ, the cell's
        ``tau`` the largest, one process (no workers) and no baseline."""
        if taus is None or (isinstance(taus, (list, tuple)) and not taus):
            return ()
        if not isinstance(taus, (list, tuple)):
            raise UsageError(f"law_taus: must be a list of tau values, got {short(taus)}")
        for t in taus:
            check_int("law_taus", t, 1, INT64_MAX)
        out = tuple(sorted(set(taus)))
        if len(out) < 3:
            raise UsageError(f"law_taus: a law needs 3 distinct tau at least, got {short(taus)}")
        if out[-1] != self.tau:
            raise UsageError(
                f"law_taus: the largest must be the cell's tau ({self.tau}), got {out[-1]}"
            )
        if self.baseline or self.grouped:
            raise UsageError("law_taus: a law cell is one process with no baseline")
        return out

    def _check_task(self) -> None:
        task = tasks.make(self.task, **dict(self.task_options))
        longest = task.longest() if isinstance(self.tau, int) else None
        if longest is not None and self.tau > longest:
            raise UsageError(
                f"tau: {self.tau} is longer than the text corpus allows (at most {longest} steps)"
            )
        if self.model in MODELS and task.single_output != (self.model == "single_output"):
            raise UsageError(
                f"task: {self.task} does not fit model {self.model}; "
                + (
                    "single_output needs sequence_parity"
                    if self.model == "single_output"
                    else "sequence_parity needs model single_output"
                )
            )

    # ------------------------------------------------------------------ baseline
    def baseline_cell(self, best: tuple[str, dict] | None = None) -> Cell | None:
        """The baseline as a cell of its own, or None without one.

        Changing ``strategy`` (``task``) resets the options unless the baseline
        gives them too.  Beside a worker-group cell the baseline runs in the
        group harness too; beside a one-process cell it must be one process.
        ``best``: the (strategy, options) that stands for ``best_bptt`` / ``best_tf``
        (:func:`rnnbench.core.strategies.best_candidates`; validation takes the first
        candidate, the cell's task the timed winner).  A bad override raises a
        UsageError naming ``baseline.<field>``.
        """
        if not self.baseline:
            return None
        changes = dict(self.baseline)
        choice = changes.get("strategy")
        if choice in BEST_CHOICES:
            model = changes.get("model", self.model)
            candidates = strategies.best_candidates(choice, model)
            if not candidates:
                raise UsageError(f"baseline.strategy: {choice} has no candidate for model {model}")
            changes["strategy"], options = best or candidates[0]
            changes["strategy_options"] = {**dict(changes.get("strategy_options", ())), **options}
        if "strategy" in changes and "strategy_options" not in changes:
            changes["strategy_options"] = ()
        if "task" in changes and "task_options" not in changes:
            changes["task_options"] = ()
        if self.grouped:
            changes.setdefault("harness", "group")
        try:
            other = dataclasses.replace(self, baseline=(), **changes)
        except UsageError as exc:
            raise UsageError(f"baseline.{exc}") from None
        if other.grouped and not self.grouped:
            raise UsageError(
                "baseline.workers: a one-process cell's baseline is one process "
                "too; give the cell the workers and the baseline {workers: 1}"
            )
        if choice not in BEST_CHOICES and other == dataclasses.replace(self, baseline=()):
            raise UsageError("baseline: identical to the cell; change at least one field")
        return other

    def paired_cell(self, best: tuple[str, dict] | None = None) -> Cell:
        """:meth:`baseline_cell` of a cell that has a baseline (ValueError otherwise)."""
        base = self.baseline_cell(best)
        if base is None:
            raise ValueError(f"cell {self.cell_id}: no baseline")
        return base

    def changed(self, other: Cell) -> dict:
        """The fields in which ``other`` differs from this cell (a baseline as run)."""
        a, b = self.config(), other.config()
        return {k: b[k] for k in b if k != "baseline" and a[k] != b[k]}

    @property
    def n_threads(self) -> int:
        """``threads`` as a number: ``all`` is every CPU this process may run on."""
        return node_cpus() if self.threads == ALL else int(self.threads)

    # ------------------------------------------------------------------ helpers
    def config(self) -> dict:
        """The configuration as plain JSON-able data (options as dicts)."""
        d = dataclasses.asdict(self)
        d["strategy_options"] = dict(self.strategy_options)
        d["task_options"] = dict(self.task_options)
        d["baseline"] = self.baseline_config()
        d["law_taus"] = list(self.law_taus)
        return d

    def baseline_config(self) -> dict:
        """The baseline's overrides as plain data (option mappings as dicts)."""
        return {k: dict(v) if k.endswith("_options") else v for k, v in self.baseline}

    @functools.cached_property
    def cell_id(self) -> str:
        """Stable id: the first 16 hex digits of SHA-256 over the sorted config.

        ``harness``, ``rho``, ``baseline``, ``law_taus`` and ``replicate`` enter the hash only when
        they are not the default, so ids of cells stored before the fields existed do not
        change; how a cell is run (:data:`NOT_IN_ID`) never enters it, so asking for more
        replicates or another precision keeps the stored rows.  Computed once per cell
        (the driver asks for it many times).
        """
        config = self.config()
        for key in NOT_IN_ID:
            del config[key]
        if config["replicate"] == 0:
            del config["replicate"]
        if not config["baseline"]:
            del config["baseline"]
        if config["harness"] == "auto":
            del config["harness"]
        if config["rho"] is None:
            del config["rho"]
        if not config["law_taus"]:
            del config["law_taus"]
        blob = json.dumps(config, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def grouped(self) -> bool:
        """Timed by the worker-group harness (rnnbench.harness.group), not in-process."""
        return self.workers > 1 or self.harness == "group"

    @property
    def depth(self) -> int | None:
        """The strategy's sequential depth at this tau and these options (None: known
        only once the iterative strategies have run, see rnnbench.pit.diagnostics)."""
        return strategies.get(self.strategy).depth(self.tau, **dict(self.strategy_options))

    def make_task(self) -> tasks.Task:
        return tasks.make(self.task, **dict(self.task_options))

    @classmethod
    def from_row(cls, row: dict) -> Cell:
        """The cell a stored row measured (its configuration fields; options and the
        baseline parsed from their JSON text; ``threads`` as the number the row ran on)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        config = {}
        for key, value in row.items():
            if key not in fields or value is None:
                continue
            if isinstance(value, float) and math.isnan(value):
                continue
            if key in ("strategy_options", "task_options", "baseline") and isinstance(value, str):
                value = json.loads(value) if value.strip() else {}
            config[key] = value
        return cls(**config)

    @classmethod
    def from_config(cls, config: dict) -> Cell:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise UsageError(
                f"{unknown[0]}: unknown cell field; allowed: {', '.join(sorted(known))}"
            )
        return cls(**config)
