"""``rnnbench compare``: the command line of the regression gate — two sides (each one
results folder or several), the decision of :mod:`rnnbench.report.compare`, and
``--confirm``: the configurations flagged worse are measured again (new replicates, each a
fresh process, into NEW's folder) and decided on every repetition before the exit code is
set, as asv's users confirm a regression before failing a build."""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from rnnbench.argtypes import positive_float, positive_int
from rnnbench.errors import UsageError
from rnnbench.facts import OK
from rnnbench.report import compare as rule
from rnnbench.report import runs, tidy


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Compare two runs configuration by configuration: the ratio NEW/BASE of the "
        "geometric means over repetitions (replicates and seeds), its 95% Welch interval and "
        "a mark (slower / faster / same / unclear / undecided).  Configurations are matched "
        "on the cell fields without seed and replicate, and without device/threads when "
        "each run has one value of them; only ok rows compare."
    )
    parser.add_argument(
        "sides",
        metavar="RESULTS",
        nargs="*",
        help="BASE NEW: two results folders (or use --base/--new)",
    )
    parser.add_argument(
        "--base",
        nargs="+",
        metavar="DIR",
        help="the reference side: one or more results folders, pooled",
    )
    parser.add_argument(
        "--new",
        nargs="+",
        metavar="DIR",
        help="the side judged against BASE: one or more results folders",
    )
    parser.add_argument(
        "--threshold",
        type=positive_float,
        default=rule.THRESHOLD,
        metavar="T",
        help=f"NEW/BASE ratio that counts as a change (default {rule.THRESHOLD})",
    )
    parser.add_argument(
        "--measure",
        choices=list(rule.MEASURES),
        default="step_ms",
        help="what to compare (default step_ms: the training step time; "
        "speedup: paired cells' speedups over their baselines)",
    )
    parser.add_argument(
        "--label",
        nargs=2,
        metavar=("BASE_NAME", "NEW_NAME"),
        help="names for the two sides (default: the folders' names)",
    )
    parser.add_argument(
        "--confirm",
        type=positive_int,
        nargs="?",
        const=3,
        default=None,
        metavar="R",
        help="measure each configuration flagged worse again, "
        "R more replicates (default 3) into NEW's folder, and decide on all",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.epilog = (
        "Exit code: 0 when nothing is slower (larger) beyond the threshold; 1 when something "
        "is, or a configuration ok in BASE is not ok in NEW (each named); 2 for bad input."
    )


def sides(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """(BASE folders, NEW folders) from the positional pair or --base/--new."""
    if args.base or args.new:
        if args.sides or not (args.base and args.new):
            raise UsageError("compare: give BASE NEW, or both --base and --new (not both forms)")
        return args.base, args.new
    if len(args.sides) != 2:
        raise UsageError(f"compare: give two results folders, BASE NEW, got {len(args.sides)}")
    return [args.sides[0]], [args.sides[1]]


def flagged_cells(c: rule.Comparison, rows, more: int) -> list:
    """``more`` new replicates (fresh processes) of the cell behind each configuration of
    NEW's ``rows`` that ``c`` flagged worse (its first ok row stands for it)."""
    from rnnbench.job.cell import Cell

    worse = c.matched[c.matched["mark"] == rule.MEASURES[c.measure].worse]
    keys = [k for k in runs.config_keys(rows) if k in worse.columns]
    cells: list[Cell] = []
    for _, flagged in worse.iterrows():
        group = rows
        for k in keys:
            value = flagged[k]
            group = group[group[k].isna()] if pd.isna(value) else group[group[k] == value]
        ok = group[group["status"] == OK]
        if ok.empty:
            continue
        have = int(pd.to_numeric(ok["replicate"], errors="coerce").fillna(0).max()) + 1
        row = ok.iloc[0].to_dict()
        cells += [
            Cell.from_row({**row, "replicate": have + i, "replicates": have + more})
            for i in range(more)
        ]
    return cells


def confirm(c: rule.Comparison, new: str, more: int) -> int:
    """Run :func:`flagged_cells` into ``new``; how many cells ran."""
    from rnnbench.results import store
    from rnnbench.sweep.command import connect
    from rnnbench.sweep.driver import run_sweep

    cells = flagged_cells(c, tidy.load(store.load(new)), more)
    if not cells:
        return 0
    started = connect(None, None, False)
    try:
        run_sweep(cells, new, progress=False, job="compare-confirm")
    finally:
        if started:
            import ray

            ray.shutdown()
    return len(cells)


def main(args: argparse.Namespace) -> int:
    base, new = sides(args)
    c = rule.compare(base, new, args.measure, args.threshold, args.label)
    if args.confirm and c.worse:
        if len(new) != 1:
            raise UsageError(
                "--confirm: NEW must be one results folder (the new replicates are written there)"
            )
        ran = confirm(c, new[0], args.confirm)
        print(
            f"rnnbench compare: confirming {len(c.worse)} flagged configuration(s): "
            f"{ran} new replicate(s) measured",
            file=sys.stderr,
        )
        c = rule.compare(base, new, args.measure, args.threshold, args.label)
    print(rule.as_json(c) if args.json else rule.text(c))
    return c.exit_code
