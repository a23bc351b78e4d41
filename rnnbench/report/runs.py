"""Several runs side by side: each results folder keeps a label, and rows are matched
across runs by their configuration.

A *configuration* is what a cell computes: the cell fields (model, strategy and its
options, task and its options, τ, batch, hidden, workers, dtype, train_steps, lr,
harness, ...) without the seed (seeds are pooled) and without the fields that describe
the machine (:data:`MACHINE`: ``device``, ``threads``) — but a machine field stays in the
configuration when some run holds several values of it (a run that sweeps threads
compares 1 thread with 1 thread). Provenance (host, CPU, GPU, torch, ray, rnnbench,
commit) is never part of it: it heads each run as its environment.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rnnbench.errors import UsageError
from rnnbench.report import env as env_mod
from rnnbench.report import tidy
from rnnbench.report.tables import CONFIG

RUN = "run"
SOURCE = "source"  # a side of a comparison: the run (folder) a row came from
# Cell fields that describe the machine a run was measured on, not the computation.
MACHINE = ("device", "threads")
# Cell fields the report's tables do not group by, and later schema additions (read
# only when the rows have them).
EXTRA = ("harness", "lr", "baseline", "rho")


def label_runs(sources, labels=None) -> list[tuple[str, object]]:
    """(label, source) per run: ``labels`` in order (distinct), else each folder's name
    — or, where two folders share a name (a/results, b/results), the path as given, and
    a number after a path given twice."""
    sources = list(sources)
    if labels:
        if len(labels) != len(sources):
            raise UsageError(
                f"--label: {len(labels)} label(s) for {len(sources)} results "
                "folder(s); give one per folder, in the same order"
            )
        names = [str(x) for x in labels]
        seen = [n for i, n in enumerate(names) if n in names[:i]]
        if seen:
            raise UsageError(
                f"--label: two runs are both labelled {seen[0]!r}; give distinct labels"
            )
        return list(zip(names, sources))
    given = [
        str(s) if not isinstance(s, pd.DataFrame) else f"run{i + 1}" for i, s in enumerate(sources)
    ]
    names = [Path(g).resolve().name or g for g in given]
    names = [g if names.count(n) > 1 else n for n, g in zip(names, given)]
    return [
        (n if names[:i].count(n) == 0 else f"{n} #{names[:i].count(n) + 1}", s)
        for i, (n, s) in enumerate(zip(names, sources))
    ]


def load_runs(sources, labels=None) -> pd.DataFrame:
    """The tidy rows of every run, one frame, with a ``run`` column (ordered as given)."""
    pairs = label_runs(sources, labels)
    frames = []
    for name, source in pairs:
        rows = tidy.load(source)
        rows.insert(0, RUN, name)
        frames.append(rows)
    out = pd.concat(frames, ignore_index=True)
    out[RUN] = pd.Categorical(out[RUN], categories=[n for n, _ in pairs], ordered=True)
    return out


def load_sides(base, new, labels=None) -> pd.DataFrame:
    """Two sides of a comparison, each a results folder (or DataFrame) or a list of them
    whose rows are pooled as one side's repetitions; labelled like :func:`load_runs`
    (a side of several folders: their labels joined by '+'), BASE first."""
    sides = [list(s) if isinstance(s, (list, tuple)) else [s] for s in (base, new)]
    if labels:
        if len(labels) != 2:
            raise UsageError(f"--label: {len(labels)} label(s) for 2 sides; give BASE and NEW")
        names = [str(x) for x in labels]
    else:
        each = [n for n, _ in label_runs([src for side in sides for src in side])]
        names = ["+".join(each[: len(sides[0])]), "+".join(each[len(sides[0]) :])]
    if names[0] == names[1]:
        names = [f"{names[0]} (base)", f"{names[1]} (new)"]
    frames = []
    for name, side in zip(names, sides):
        for i, source in enumerate(side):
            rows = tidy.load(source, "compare")
            rows.insert(0, RUN, name)
            rows[SOURCE] = i  # which of the side's runs (folders) a row came from
            frames.append(rows)
    out = pd.concat(frames, ignore_index=True)
    out[RUN] = pd.Categorical(out[RUN], categories=names, ordered=True)
    return out


def names(rows: pd.DataFrame) -> list[str]:
    """The run labels in order; [] for rows of one run (no ``run`` column)."""
    if RUN not in rows.columns:
        return []
    col = rows[RUN]
    return [str(c) for c in (col.cat.categories if hasattr(col, "cat") else pd.unique(col))]


def per_run(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(label, that run's rows) in run order."""
    return [
        (name, rows[rows[RUN] == name].drop(columns=[RUN]).reset_index(drop=True))
        for name in names(rows)
    ]


def machine_of_run(rows: pd.DataFrame) -> list[str]:
    """The machine fields that hold one value within every run: they describe the runs
    (shown in their environments), so configurations are matched without them."""
    if RUN not in rows.columns:
        return []
    present = [m for m in MACHINE if m in rows.columns]
    counts = rows.groupby(RUN, observed=True)[present].nunique(dropna=False)
    return [m for m in present if (counts[m] <= 1).all()]


def config_keys(rows: pd.DataFrame) -> list[str]:
    """The columns a configuration is matched on across the runs in ``rows``."""
    fixed = set(machine_of_run(rows))
    keys = [k for k in CONFIG if k not in fixed]
    return keys + [k for k in EXTRA if k in rows.columns and k not in keys]


def setting(keys: list[str], rows: pd.DataFrame) -> list[str]:
    """``keys`` (a table's or a plot's grouping) without the machine fields that only
    tell the runs apart, so matched rows of several runs share a group."""
    fixed = set(machine_of_run(rows))
    return [k for k in keys if k not in fixed]


def environment(rows: pd.DataFrame, sources: dict | None = None) -> dict[str, str]:
    """One environment for the page head: a field every run shares shows once, a field
    that differs shows each run's value as 'label: value; label: value'."""
    runs = per_run(rows)
    if not runs:
        return env_mod.environment(rows)
    envs = {name: env_mod.environment(r) for name, r in runs}
    out = {
        "runs": "; ".join(
            f"{name}" + (f" ({sources[name]})" if sources else "") for name, _ in runs
        )
    }
    for field in next(iter(envs.values())):
        values = [envs[name][field] for name, _ in runs]
        out[field] = (
            values[0]
            if len(set(values)) == 1
            else "; ".join(f"{name}: {v}" for (name, _), v in zip(runs, values))
        )
    return out
