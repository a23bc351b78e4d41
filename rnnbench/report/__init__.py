"""``rnnbench report``: a results folder into tables, fitted laws, plots and claims.

Python API::

    from rnnbench.report import build_report
    report = build_report("results/quick", "reports/quick", formats=("html", "md"))
    report.fits, report.claims, report.figures["time_vs_tau"]

Several runs in one report (each keeps its label and environment; rows matched by
configuration, see :mod:`.runs`)::

    report = build_report(["results/laptop", "results/node"], "reports/both")

Command line: ``rnnbench report RESULTS [RESULTS ...] [--out DIR] [--label NAME ...]
[--format html,md]`` (RESULTS: a results folder or its ``results.parquet``). Modules:
:mod:`.load` (rows), :mod:`.runs` (several runs), :mod:`.tables`, :mod:`.fit`,
:mod:`.claims`, :mod:`.plots`, :mod:`.markdown` and :mod:`.html` (pages), :mod:`.env`,
:mod:`.compare` (``rnnbench compare``).
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from rnnbench.errors import StorageError, UsageError
from rnnbench.report import claims as claims_mod
from rnnbench.report import compare as compare_mod
from rnnbench.report import env as env_mod
from rnnbench.report import findings, fit, plots, regime, runs, scaling_figure, tables, tidy
from rnnbench.report import scaling as scaling_mod
from rnnbench.report.escape import csv_frame
from rnnbench.results import location, store

FORMATS = ("html", "md")


@dataclass(frozen=True, eq=False)
class Report:
    """Everything a report shows, as DataFrames and matplotlib figures."""

    source: str
    rows: pd.DataFrame
    summary: pd.DataFrame
    speedup: pd.DataFrame
    fits: pd.DataFrame
    crossover: pd.DataFrame
    workers: pd.DataFrame
    failed: pd.DataFrame
    claims: pd.DataFrame
    figures: dict
    paired: pd.DataFrame
    env: dict
    out_dir: Path | None = None
    files: tuple = field(default=())
    runs: tuple = ()  # run labels, in order, when the report holds several runs
    compared: pd.DataFrame | None = None  # each later run's step time against the first
    scaling: scaling_mod.Scaling | None = None  # the scaling model (one run's report)
    regime: pd.DataFrame | None = None  # the fastest method per (H, tau): .regime

    def tables(self) -> list[tuple[str, str, str, pd.DataFrame, pd.DataFrame]]:
        """(name, title, note, numeric table, display table) in page order."""
        spread = "mean ± sd over seeds (no ± with one seed)"
        first = (
            []
            if not self.runs
            else [
                (
                    "compare",
                    f"Runs compared: step time against {self.runs[0]}",
                    f"Matched configurations; ratio = run / {self.runs[0]} (NEW/BASE); "
                    + compare_mod.rule("step_ms", compare_mod.THRESHOLD)
                    + ". Each table below has a "
                    "run column, matched configurations on adjacent lines.",
                    self.compared,
                    tables.display(self.compared),
                )
            ]
        )
        out = first + [
            (
                "fits",
                "Scaling exponents (y = a·τ^k)",
                "Least-squares slope of log y on log τ over every ok cell (one point per seed); "
                "95% CI from Student's t with n−2 degrees of freedom.",
                self.fits,
                _keep_run(self.fits, fit.display(self.fits)),
            ),
            (
                "crossover",
                "Cross-over: the τ from which teacher forcing wins",
                "tau_cross: log-log interpolation between the last τ where BPTT wins and the first "
                "from which teacher forcing wins at every larger τ; tau_cross_fit: where the two "
                "fitted power laws meet (may be extrapolated beyond the τ range).",
                self.crossover,
                tables.display(self.crossover),
            ),
            (
                "speedup",
                "Speedup of Jordan + teacher forcing over Elman + BPTT",
                f"baseline time / teacher-forcing time, per τ and batch; times are {spread}.",
                self.speedup,
                tables.display(self.speedup),
            ),
            (
                "summary",
                "Every configuration",
                f"Measures are {spread} (n_seeds rows each); "
                f"noisy: how many of its rows have a step-time IQR above "
                f"{tables.NOISY_IQR:.0%} of the median (torch.utils.benchmark's warning).",
                self.summary,
                tables.display(self.summary),
            ),
            (
                "workers",
                "Time-parallel runs",
                "speedup = time on one worker / time on N, both "
                "timed by the worker-group harness (no such 1-worker row: no speedup; the "
                "single-process rows are not a baseline); lo/hi: the speedup from the quartiles "
                "Q1/Q3 of the raw samples; efficiency = speedup / N.",
                self.workers,
                tables.display(self.workers),
            ),
            (
                "paired",
                "Paired comparisons: each cell against its baseline, taking turns",
                "speedup = baseline step / cell step per block pair (blocks alternate A B B A ... "
                "in one process, same CPUs within a pair); median and lo/hi = Q1/Q3 over the "
                "pairs; baseline_config: the baseline as run (best_bptt resolved, a time split's "
                "one-worker baseline chunked to the workers' slice); achieved GFLOP/s = "
                "flop_counter's forward+backward FLOPs / step time.",
                self.paired,
                tables.display(self.paired),
            ),
            *(
                []
                if self.regime is None or self.regime.empty
                else [
                    (
                        "regime",
                        "Regime map: the fastest method per (H, τ)",
                        regime.note(self.regime),
                        self.regime,
                        tables.display(self.regime),
                    )
                ]
            ),
            (
                "failed",
                "Failed rows",
                "Every row whose status is not ok, with its error.",
                self.failed,
                self.failed,
            ),
        ]
        return out[:-1] + self._scaling_tables() + out[-1:]  # failed rows last

    def _scaling_tables(self) -> list[tuple[str, str, str, pd.DataFrame, pd.DataFrame]]:
        """The scaling model's tables (docs/scaling.md), when the report has one."""
        if self.scaling is None:
            return []
        return [
            (
                "scaling_check",
                "Scaling model against every measured N",
                "measured = geomean of the 1-worker step times / geomean of the N-worker ones, "
                "lo/hi its 95% interval over replicates; predicted: the model on the measured "
                "loopback network at the N rows' Newton iterations; error = predicted / "
                "measured (lo/hi from the measured interval).",
                self.scaling.check,
                tables.display(self.scaling.check),
            ),
            (
                "scaling_limits",
                "Scaling model: where communication eats the gain (N up to 1,024)",
                "n_best: the N of the largest predicted speedup (blank: still gaining at "
                "1,024); n_even: the first N whose communication takes as long as its "
                "computation (blank: none); per network (alpha: latency a message, beta: "
                "bandwidth a link; the datacentre line is an example, not a measurement).",
                self.scaling.limits,
                tables.display(self.scaling.limits),
            ),
        ]


def _keep_run(numeric: pd.DataFrame, shown: pd.DataFrame) -> pd.DataFrame:
    """A display table with the numeric table's ``run`` column first, when it has one."""
    if runs.RUN in numeric.columns and runs.RUN not in shown.columns:
        shown = shown.copy()
        shown.insert(0, runs.RUN, numeric[runs.RUN].to_numpy())
    return shown


def analyse(rows: pd.DataFrame) -> claims_mod.Evidence:
    """The derived tables the claims are judged on (tidy rows in, no drawing)."""
    fits = fit.fits(rows)
    speedup = tables.speedup(rows)
    return claims_mod.Evidence(
        rows, fits, speedup, fit.crossover(speedup, fits), tables.workers(rows)
    )


def judge(ev: claims_mod.Evidence) -> pd.DataFrame:
    """The claims page's table for one run's evidence (the claims engine, called once)."""
    return claims_mod.table(claims_mod.evaluate(ev))


def build_report(
    source,
    out_dir=None,
    formats=FORMATS,
    embed_images: bool = False,
    figures: bool = True,
    labels=None,
) -> Report:
    """Load rows (a results folder or a DataFrame; or a list of them: several runs),
    derive everything, and write the report into ``out_dir`` when one is given
    (``figures=False``: tables and claims only, nothing drawn). ``labels`` names the
    runs (default: each folder's name)."""
    formats = _formats(formats)
    if isinstance(source, (list, tuple)):
        if len(source) > 1:
            report = _several(source, labels, figures)
            return report if out_dir is None else _write(report, out_dir, formats, embed_images)
        runs.label_runs(source, labels)  # a label count that does not fit is still an error
        source = source[0]
    rows = tidy.load(source)
    ev = analyse(rows)
    scale = scaling_mod.scaling(rows)
    regime_map = regime.table(rows)
    drawn = _figures(rows, ev.speedup, ev.workers, regime_map) if figures else {}
    if figures:
        drawn[scaling_figure.NAME] = scaling_figure.figure(scale)
    report = Report(
        source=str(source) if not isinstance(source, pd.DataFrame) else "DataFrame",
        rows=rows,
        summary=tables.summary(rows),
        speedup=ev.speedup,
        fits=ev.fits,
        crossover=ev.crossover,
        workers=ev.workers,
        failed=tables.failed(rows),
        claims=judge(ev),
        figures=drawn,
        env=env_mod.environment(rows),
        paired=tables.paired(rows),
        scaling=scale,
        regime=regime_map,
    )
    if out_dir is None:
        return report
    return _write(report, out_dir, formats, embed_images)


def _figures(rows, speedup, workers, regime_map) -> dict:
    """The plots (:func:`plots.figures`) and the regime map (:func:`regime.figure`)."""
    return {**plots.figures(rows, speedup, workers), "regime_map": regime.figure(regime_map)}


# Sort order of the stacked tables: configuration first, the run last, so a configuration
# measured by several runs shows on adjacent lines.
ORDER = [
    "model",
    "strategy_label",
    "series",
    "teacher_forcing",
    "task_label",
    "measure",
    "baseline",
    "batch",
    "hidden",
    "device",
    "threads",
    "dtype",
    "train_steps",
    "split",
    "workers",
    "tau",
    "seed",
]


def _stack(parts: list[tuple[str, pd.DataFrame]], rows: pd.DataFrame) -> pd.DataFrame:
    """One table from each run's: a ``run`` column first, matched lines adjacent."""
    frames = [df.assign(**{runs.RUN: name, "_run": i}) for i, (name, df) in enumerate(parts)]
    kept = [f for f in frames if len(f)] or frames[:1]
    out = pd.concat(kept, ignore_index=True)
    keys = [k for k in runs.setting(ORDER, rows) if k in out.columns]
    out = out.sort_values(keys + ["_run"], kind="stable").drop(columns="_run")
    out[runs.RUN] = pd.Categorical(out[runs.RUN], categories=[n for n, _ in parts], ordered=True)
    return out[[runs.RUN] + [c for c in out.columns if c != runs.RUN]].reset_index(drop=True)


def _line_up(claims: list[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """Each run's claims table side by side: one verdict (evidence, cells) column per run."""
    first = claims[0][1]
    out = first[[c for c in ("key", "source", "claim", "rule", "gate") if c in first]].copy()
    for name, c in claims:
        c = c.set_index("key")
        for col in ("verdict", "evidence", "cells", "finding", "cell_ids"):
            out[f"{col}: {name}"] = out["key"].map(c[col])
    return out


def _several(sources, labels, figures: bool) -> Report:
    """The report of several runs: each run analysed and judged on its own, then lined up."""
    rows = runs.load_runs(sources, labels)
    names = runs.names(rows)
    parts = {name: (r, analyse(r)) for name, r in runs.per_run(rows)}

    def stack(make):
        return _stack([(n, make(r, ev)) for n, (r, ev) in parts.items()], rows)

    speedup, workers = stack(lambda r, e: e.speedup), stack(lambda r, e: e.workers)
    regime_map = regime.table(rows)  # the run is part of its setting
    where = {
        name: (str(s) if not isinstance(s, pd.DataFrame) else "DataFrame")
        for name, s in zip(names, sources)
    }
    return Report(
        source="; ".join(f"{n}: {w}" for n, w in where.items()),
        rows=rows,
        summary=stack(lambda r, e: tables.summary(r)),
        speedup=speedup,
        fits=stack(lambda r, e: e.fits),
        crossover=stack(lambda r, e: e.crossover),
        workers=workers,
        failed=stack(lambda r, e: tables.failed(r)),
        claims=_line_up([(n, judge(e)) for n, (_, e) in parts.items()]),
        figures=_figures(rows, speedup, workers, regime_map) if figures else {},
        env=runs.environment(rows, where),
        runs=tuple(names),
        compared=_compared(rows),
        paired=stack(lambda r, e: tables.paired(r)),
        regime=regime_map,
    )


COMPARED = [
    "run",
    "against",
    "configuration",
    "against_ms",
    "run_ms",
    "ratio",
    "ratio_lo",
    "ratio_hi",
    "mark",
]


def _compared(rows: pd.DataFrame) -> pd.DataFrame:
    """Every later run's step time against the first run's (:mod:`.compare`)."""
    names = runs.names(rows)
    parts = []
    for name in names[1:]:
        pair = rows[rows[runs.RUN].isin([names[0], name])].copy()
        pair[runs.RUN] = pair[runs.RUN].cat.remove_unused_categories()
        try:
            m = compare_mod.compare_rows(pair).matched
        except UsageError:
            continue  # nothing in common with the first run: no line to show
        parts.append(
            pd.DataFrame(
                {
                    "run": name,
                    "against": names[0],
                    "configuration": m["configuration"],
                    "against_ms": m["base_value"],
                    "run_ms": m["new_value"],
                    "ratio": m["ratio"],
                    "ratio_lo": m["ratio_lo"],
                    "ratio_hi": m["ratio_hi"],
                    "mark": m["mark"],
                }
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COMPARED)


# ---- storage (issue 25/23): the report is built in a staging folder, then published
def _write(report: Report, out, formats, embed_images: bool) -> Report:
    """Build the report in a local staging folder, then publish it to ``out`` (a path or
    a URI) file by file (:meth:`rnnbench.results.location.Location.publish`: a link in
    the way is replaced, never written through).  ``out``, ``out/tables`` or
    ``out/plots`` as a link: UsageError (exit 2); an OSError (a full disk): StorageError
    (exit 3)."""
    where = store.where(out, "--out")
    if where.local:
        for sub in ("", "tables", "plots"):
            if where.kind(sub) == "link":
                raise UsageError(
                    f"--out {where}: {sub or 'the report folder'} is a link; rnnbench never "
                    "writes through links (remove it or give another --out)"
                )
            if where.kind(sub) not in ("dir", "missing"):
                raise UsageError(f"--out {where}: {sub or 'it'} is not a folder")
    staging = Path(location.staging_dir())
    try:
        _build(report, staging, formats, embed_images)
        where.make_dir(parents=True)
        written = where.publish(staging)
    except OSError as exc:
        raise StorageError(
            f"--out {where}: cannot write the report ({exc.strerror or exc})"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    out_dir = Path(where.path) if where.local else where.uri
    files = tuple(Path(w.path) if w.local else w.uri for w in written)
    return Report(**{**report.__dict__, "out_dir": out_dir, "files": files})


# ---- end storage


def _build(report: Report, out: Path, formats, embed_images: bool) -> list[Path]:
    """Write every file of the report under the local folder ``out``."""
    from rnnbench.report import html, markdown

    files = []
    for name, fig in report.figures.items():
        if fig is not None:
            files += plots.save(fig, out / "plots", name)
    (out / "tables").mkdir(exist_ok=True)
    for name, *_, numeric, _ in report.tables():  # text cells made spreadsheet-safe
        csv_frame(numeric).to_csv(out / "tables" / f"{name}.csv", index=False)
        files.append(out / "tables" / f"{name}.csv")
    csv_frame(report.claims).to_csv(out / "tables" / "claims.csv", index=False)
    files.append(out / "tables" / "claims.csv")  # one verdict per run
    files += findings.write_evidence(report.claims, report.rows, out)
    if "md" in formats:
        files += markdown.write(report, out)
    if "html" in formats:
        files += html.write(report, out, embed_images)
    return files


def _formats(formats) -> tuple[str, ...]:
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    formats = tuple(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UsageError(
            f"--format: unknown format {bad[0] if bad else '(none)'!r}; "
            f"allowed: {', '.join(FORMATS)} (comma-separated)"
        )
    return formats


# --------------------------------------------------------------------------- CLI hooks


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "results",
        metavar="RESULTS",
        nargs="+",
        help="a results folder (rnnbench run) or its results.parquet file; "
        "several: one report of them all, side by side",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="where to write the report (default: the first results folder's "
        "report/, e.g. results/quick/report)",
    )
    parser.add_argument(
        "--label",
        metavar="NAME",
        nargs="+",
        default=None,
        help="a name per results folder, in order (default: the folders' names)",
    )
    parser.add_argument(
        "--format",
        default="html,md",
        metavar="html,md",
        help="pages to write, comma-separated (default: html,md); "
        "CSV tables and PNG/SVG plots are always written",
    )
    parser.add_argument(
        "--embed-images",
        action="store_true",
        help="embed the plots in index.html (one file) instead of linking them",
    )


def main(args: argparse.Namespace) -> int:
    formats = _formats(args.format)
    out = args.out or _default_out(args.results[0])
    report = build_report(args.results, out, formats, args.embed_images, labels=args.label)
    failed = len(report.failed)
    print(
        f"rnnbench report: {len(report.rows)} rows ({failed} not ok) -> {out}/ "
        f"({len(report.files)} files)"
    )
    for name in report.runs or ("",):
        counts = report.claims[f"verdict: {name}" if name else "verdict"].value_counts()
        verdicts = ", ".join(f"{counts.get(v, 0)} {v}" for v in claims_mod.VERDICTS)
        print(f"claims{' ' + name if name else ''}: {verdicts}")
    for page in ("index.html", "report.md"):
        shown = [f for f in report.files if str(f).endswith("/" + page)]
        if shown:
            print(f"  {shown[-1]}")
    return 0


def _default_out(first: str) -> str:
    """The first results folder's ``report/`` (beside a ``results.parquet`` file given)."""
    where = store.where(first, "RESULTS")
    if where.kind() == "file":
        parent = where.uri.rstrip("/").rsplit("/", 1)[0] if "/" in where.uri else "."
        return parent + "/report"
    return where.uri.rstrip("/") + "/report"
