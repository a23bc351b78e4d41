"""Adaptive precision: more replicates where the interval is still too wide.

A cell that asks for a ``precision`` (a relative 95% half-width, e.g. 0.05) is measured
``replicates`` times, each a fresh process; when they are all in, the interval over
them of its figure — the paired speedup, else the step time — is computed
(:func:`rnnbench.stats.ratio_ci`, the geometric mean's t-interval).  Wider than asked, one
more replicate is run, until the target or ``max_replicates`` is reached.

Cells that differ only in τ form a law (three or more τ): there the question is the
verdict of T = a + b·τ + c·τ² (:func:`rnnbench.stats.law_verdict`), and a replicate is
added where the fit is least certain — at the τ whose mean log time has the largest
standard error (fewest replicates first) — until the law is decided or every τ has
``max_replicates``.

Either way the decision is written into the group's rows: ``replicates_precision`` (the
half-width reached, or the τ² share's half-width for a law) and ``replicates_stop``
("target", "decided", "replicate cap").
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from rnnbench.facts import LINEAR_BAND, OK
from rnnbench.job.cell import Cell
from rnnbench.results.rows import Row, contended
from rnnbench.stats import UNDECIDED, law_verdict, overhead_fit, ratio_ci

MIN_TAUS = 3  # a law needs three distinct τ


def _key(cell: Cell, *without: str) -> str:
    """A cell's group: its configuration without the replicate (and ``without``)."""
    config = cell.config()
    for name in ("replicate", "replicates", *without):
        config.pop(name)
    return json.dumps(config, sort_keys=True, default=str)


def figure(row: Row) -> float:
    """The figure whose interval a cell's precision is about: its paired speedup, else
    its step time (NaN for a row that is not ok)."""
    if row.get("status") != OK or contended(row) or (row.get("neighbours") or 0) > 0:
        return math.nan
    value = row.get("speedup_median") if row.get("baseline") else row.get("step_ms_median")
    return float(value) if isinstance(value, (int, float)) else math.nan


def relative_half_width(values: Iterable[float]) -> float:
    """(high − low) / 2 / estimate of the values' :func:`ratio_ci`; inf under two."""
    ci = ratio_ci(values)
    return math.inf if ci is None else (ci.high - ci.low) / 2 / ci.estimate


@dataclass
class Group:
    """The replicates of one cell (or, for a law, of every τ of one setting)."""

    cells: dict[str, Cell] = field(default_factory=dict)  # cell_id -> cell, every submitted
    rows: dict[str, Row] = field(default_factory=dict)  # cell_id -> its row, once in
    law: bool = False
    stop: str | None = None

    def waiting(self) -> bool:
        return any(c not in self.rows for c in self.cells)


class Planner:
    """Which replicates to add, as rows come in (:meth:`after`)."""

    def __init__(self, cells: Iterable[Cell], stored: Iterable[Row] = ()):
        self.groups: dict[str, Group] = {}
        adaptive = [c for c in cells if c.precision is not None]
        taus: dict[str, set[int]] = {}
        for c in adaptive:
            taus.setdefault(_key(c, "tau"), set()).add(c.tau)
        for c in adaptive:
            law = len(taus[_key(c, "tau")]) >= MIN_TAUS
            group = self.groups.setdefault(_key(c, "tau") if law else _key(c), Group(law=law))
            group.cells[c.cell_id] = c
        self.group_of = {cid: k for k, g in self.groups.items() for cid in g.cells}
        for row in stored:
            self._note(row)

    def _note(self, row: Row) -> Group | None:
        key = self.group_of.get(str(row.get("cell_id")))
        if key is None:
            return None
        group = self.groups[key]
        group.rows[str(row["cell_id"])] = row
        return group

    def after(self, row: Row) -> tuple[list[Cell], list[Row]]:
        """A row came in: (cells to run next, rows to write again with the decision)."""
        group = self._note(row)
        if group is None or group.waiting() or group.stop is not None:
            return [], []
        cell = self._law_next(group) if group.law else self._cell_next(group)
        if cell is None:
            return [], list(group.rows.values())
        group.cells[cell.cell_id] = cell
        self.group_of[cell.cell_id] = self.group_of[str(row["cell_id"])]
        return [cell], []

    def _cell_next(self, group: Group) -> Cell | None:
        values = [figure(r) for r in group.rows.values()]
        reached = relative_half_width(values)
        first = next(iter(group.cells.values()))
        n = len(group.cells)
        if reached <= float(first.precision or 0):
            self._decide(group, reached, "target")
            return None
        if n >= first.max_replicates:
            self._decide(group, reached, "replicate cap")
            return None
        return dataclasses.replace(first, replicate=n, replicates=n + 1)

    def _law_next(self, group: Group) -> Cell | None:
        by_tau: dict[int, list[float]] = {}
        for cid, c in group.cells.items():
            by_tau.setdefault(c.tau, []).append(figure(group.rows[cid]))
        points = [(t, v) for t, vs in by_tau.items() for v in vs if v > 0]
        fit = overhead_fit([t for t, _ in points], [v for _, v in points])
        reached = math.inf if fit is None else (fit.quad_high - fit.quad_low) / 2
        if fit is not None and law_verdict(fit, LINEAR_BAND) != UNDECIDED:
            self._decide(group, reached, "decided")
            return None
        counts = {t: sum(1 for c in group.cells.values() if c.tau == t) for t in by_tau}
        cap = next(iter(group.cells.values())).max_replicates
        open_taus = [t for t in by_tau if counts[t] < cap]
        if not open_taus:
            self._decide(group, reached, "replicate cap")
            return None
        tau = max(open_taus, key=lambda t: (_standard_error(by_tau[t]), -counts[t], t))
        template = next(c for c in group.cells.values() if c.tau == tau)
        n = counts[tau]
        return dataclasses.replace(template, replicate=n, replicates=n + 1)

    def _decide(self, group: Group, reached: float, why: str) -> None:
        group.stop = why
        for row in group.rows.values():
            row.update(replicates_precision=reached, replicates_stop=why)


def _standard_error(values: list[float]) -> float:
    """The standard error of the mean log of ``values``; inf with fewer than two (a τ
    with one replicate is the least certain)."""
    logs = [math.log(v) for v in values if v > 0]
    if len(logs) < 2:
        return math.inf
    mean = sum(logs) / len(logs)
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / (len(logs) - 1))
    return sd / math.sqrt(len(logs))
