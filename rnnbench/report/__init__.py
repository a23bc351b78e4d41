"""``rnnbench report``: a results folder into tables, fitted laws, plots and claims.

Python API::

    from rnnbench.report import build_report
    report = build_report("results/quick", "reports/quick", formats=("html", "md"))
    report.fits, report.claims, report.figures["time_vs_tau"]

Command line: ``rnnbench report RESULTS_DIR [--out DIR] [--format html,md]``.
Modules: :mod:`.load` (rows), :mod:`.tables`, :mod:`.fit`, :mod:`.claims`,
:mod:`.plots`, :mod:`.markdown` and :mod:`.html` (pages), :mod:`.env`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import UsageError
from . import claims as claims_mod
from . import env as env_mod
from . import fit, load, plots, tables

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

    def tables(self) -> list[tuple[str, str, str, pd.DataFrame, pd.DataFrame]]:
        """(name, title, note, numeric table, display table) in page order."""
        spread = "mean ± sd over seeds (no ± with one seed)"
        return [
            ("fits", "Scaling exponents (y = a·τ^k)",
             "Least-squares slope of log y on log τ over every ok cell (one point per seed); "
             "95% CI from Student's t with n−2 degrees of freedom.",
             self.fits, fit.display(self.fits)),
            ("crossover", "Cross-over: the τ from which teacher forcing wins",
             "tau_cross: log-log interpolation between the last τ where BPTT wins and the first "
             "from which teacher forcing wins at every larger τ; tau_cross_fit: where the two "
             "fitted power laws meet (may be extrapolated beyond the τ range).",
             self.crossover, tables.display(self.crossover)),
            ("speedup", "Speedup of Jordan + teacher forcing over Elman + BPTT",
             f"baseline time / teacher-forcing time, per τ and batch; times are {spread}.",
             self.speedup, tables.display(self.speedup)),
            ("summary", "Every configuration", f"Measures are {spread} (n_seeds rows each).",
             self.summary, tables.display(self.summary)),
            ("workers", "Time-parallel runs", "speedup = time on one worker / time on N, both "
             "timed by the worker-group harness (no such 1-worker row: no speedup; the "
             "single-process rows are not a baseline); lo/hi: the speedup from the quartiles "
             "Q1/Q3 of the raw samples; efficiency = speedup / N.",
             self.workers, tables.display(self.workers)),
            ("paired", "Paired comparisons: each cell against its baseline, taking turns",
             "speedup = baseline step / cell step per block pair (blocks alternate A B B A ... "
             "in one process, same CPUs within a pair); median and lo/hi = Q1/Q3 over the "
             "pairs; baseline_config: the baseline as run (best_bptt resolved, a time split's "
             "one-worker baseline chunked to the workers' slice); achieved GFLOP/s = "
             "flop_counter's forward+backward FLOPs / step time.",
             self.paired, tables.display(self.paired)),
            ("failed", "Failed rows", "Every row whose status is not ok, with its error.",
             self.failed, self.failed),
        ]


def analyse(rows: pd.DataFrame) -> claims_mod.Evidence:
    """The derived tables the claims are judged on (tidy rows in, no drawing)."""
    fits = fit.fits(rows)
    speedup = tables.speedup(rows)
    return claims_mod.Evidence(rows, fits, speedup, fit.crossover(speedup, fits),
                               tables.workers(rows))


def build_report(source, out_dir=None, formats=FORMATS, embed_images: bool = False,
                 figures: bool = True) -> Report:
    """Load rows (a results folder or a DataFrame), derive everything, and write
    the report into ``out_dir`` when one is given (``figures=False``: tables and
    claims only, nothing drawn)."""
    formats = _formats(formats)
    rows = load.load(source)
    ev = analyse(rows)
    report = Report(
        source=str(source) if not isinstance(source, pd.DataFrame) else "DataFrame",
        rows=rows, summary=tables.summary(rows), speedup=ev.speedup, fits=ev.fits,
        crossover=ev.crossover, workers=ev.workers, failed=tables.failed(rows),
        claims=claims_mod.table(claims_mod.evaluate(ev)),
        figures=plots.figures(rows, ev.speedup, ev.workers) if figures else {},
        env=env_mod.environment(rows), paired=tables.paired(rows),
    )
    if out_dir is None:
        return report
    return _write(report, Path(out_dir), formats, embed_images)


def _write(report: Report, out: Path, formats, embed_images: bool) -> Report:
    from . import html, markdown

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out: cannot create {out} ({exc.strerror})") from None
    files = []
    for name, fig in report.figures.items():
        if fig is not None:
            files += plots.save(fig, out / "plots", name)
    (out / "tables").mkdir(exist_ok=True)
    for name, *_, numeric, _ in report.tables():
        numeric.to_csv(out / "tables" / f"{name}.csv", index=False)
        files.append(out / "tables" / f"{name}.csv")
    report.claims.to_csv(out / "tables" / "claims.csv", index=False)
    files.append(out / "tables" / "claims.csv")
    if "md" in formats:
        files += markdown.write(report, out)
    if "html" in formats:
        files += html.write(report, out, embed_images)
    return Report(**{**report.__dict__, "out_dir": out, "files": tuple(files)})


def _formats(formats) -> tuple[str, ...]:
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    formats = tuple(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UsageError(f"--format: unknown format {bad[0] if bad else '(none)'!r}; "
                         f"allowed: {', '.join(FORMATS)} (comma-separated)")
    return formats


# --------------------------------------------------------------------------- CLI hooks


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", metavar="RESULTS_DIR", help="a results folder (rnnbench run)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="where to write the report (default: RESULTS_DIR/report)")
    parser.add_argument("--format", default="html,md", metavar="html,md",
                        help="pages to write, comma-separated (default: html,md); "
                             "CSV tables and PNG/SVG plots are always written")
    parser.add_argument("--embed-images", action="store_true",
                        help="embed the plots in index.html (one file) instead of linking them")


def main(args: argparse.Namespace) -> int:
    formats = _formats(args.format)
    out = Path(args.out) if args.out else Path(args.results) / "report"
    report = build_report(args.results, out, formats, args.embed_images)
    counts = report.claims["verdict"].value_counts()
    verdicts = ", ".join(f"{counts.get(v, 0)} {v}" for v in claims_mod.VERDICTS)
    failed = len(report.failed)
    print(f"rnnbench report: {len(report.rows)} rows ({failed} not ok) -> {out}/ "
          f"({len(report.files)} files)")
    print(f"claims: {verdicts}")
    for page in ("index.html", "report.md"):
        if (out / page).exists():
            print(f"  {out / page}")
    return 0
