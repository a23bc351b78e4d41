"""The report's figures (matplotlib, Agg; saved as PNG and SVG).

Each function takes tidy rows (or a derived table) and returns a
``matplotlib.figure.Figure`` — or ``None`` when the rows hold nothing to plot,
so the report can say "not measured" instead of drawing an empty frame.
Figures are built without pyplot: no global state, nothing to close.

Layout, the same in every figure: panels in a grid at most MAX_ACROSS wide
(:func:`grid`, constrained layout), one legend below them with room made for it
(:func:`legend`: labels cut at LABEL_MAX characters, the figure grows), a panel with fewer
than two distinct x values dropped, fitted exponents written at each line's end, ratio
axes labelled densely (:func:`ratio_axis`), a strategy's colour and marker from
:mod:`.style`, and every string from the rows drawn literally (:mod:`.escape`).
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")

import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.figure import Figure

from rnnbench.facts import NEWTON_SOLVERS, NOISY_IQR
from rnnbench.report import runs, style
from rnnbench.report.escape import plot_text
from rnnbench.report.tables import SETTING, noisy, ok_rows, single
from rnnbench.stats import power_fit

MAX_PANELS = 6
MIB = 2.0**-20
TF_LABEL = "jordan + teacher_forcing"
MIN_FIT_TAUS = 3  # a fitted line through fewer distinct τ would only join the points
LEGEND_LINE = 0.16  # inches per legend line (fontsize 7)
MAX_ACROSS = 3  # panels per row of a figure: readable at page width
PANEL_W, PANEL_H = 4.2, 3.3  # inches per panel
LABEL_MAX = 90  # characters of a legend label; longer ones are cut with '…'
TITLE_WRAP = 52  # characters per line of a panel title (fontsize 9 in PANEL_W)
CHAR_W = 7 * 0.6 / 72  # inches per character at fontsize 7 (a generous average)


# Several runs in one plot: each run its own marker and line style (colour: the series).
RUN_STYLES = (
    ("o", "-"),
    ("s", "--"),
    ("^", ":"),
    ("D", "-."),
    ("v", (0, (5, 1))),
    ("P", (0, (1, 2))),
)


def _by_run(frame: pd.DataFrame) -> list[tuple[str, str, object, pd.DataFrame]]:
    """(legend suffix, marker, line style, rows) per run; rows of one run give one
    entry ('', 'o', None, frame): the caller keeps its own styles."""
    names = runs.names(frame)
    if not names:
        return [("", "o", None, frame)]
    return [
        (f" [{plot_text(name)}]", *RUN_STYLES[i % len(RUN_STYLES)], frame[frame[runs.RUN] == name])
        for i, name in enumerate(names)
    ]


def _colors(names) -> dict:
    """Series -> colour: the strategy's, the same in every plot (:mod:`.style`)."""
    return style.colors(names)


def shorten(text, limit: int = LABEL_MAX) -> str:
    """``text`` cut to ``limit`` characters with '…' (never leaving a lone escape)."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1].rstrip("\\") + "…"


def cut(text, limit: int = LABEL_MAX) -> str:
    """Row text drawn literally (``$`` escaped), cut to ``limit`` characters."""
    return plot_text(shorten(text, limit))


def grid(n: int, width: float = PANEL_W, height: float = PANEL_H) -> tuple[Figure, list]:
    """A figure of ``n`` panels, at most MAX_ACROSS across (rows as needed), laid out by
    matplotlib's constrained layout so titles, labels and tick labels get their room."""
    cols = max(1, min(n, MAX_ACROSS))
    rows = max(1, math.ceil(n / cols))
    fig = Figure(figsize=(max(6.4, width * cols), 0.5 + height * rows), layout="constrained")
    axes = list(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.remove()
    return fig, axes[:n]


def legend(fig: Figure, axes, ncol: int | None = None):
    """One legend for the whole figure, below the panels: the distinct labelled entries
    of ``axes`` (each axes' own legend removed), labels cut at LABEL_MAX characters, in as
    many columns as the longest label allows; the figure grows by the legend's height so
    the panels keep theirs. None when nothing is labelled."""
    handles: dict[str, Artist] = {}
    for ax in axes:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
        for h, label in zip(*ax.get_legend_handles_labels()):
            if label and not label.startswith("_") and label not in handles:
                handles[label] = h
    if not handles:
        return None
    labels = [shorten(label) for label in handles]  # already drawn literally
    longest = max(len(label) for label in labels) * CHAR_W + 0.6  # marker and gap
    fits = max(1, int((fig.get_figwidth() - 0.3) // longest))
    ncol = max(1, min(ncol or fits, fits, len(labels)))
    lines = math.ceil(len(labels) / ncol)
    fig.set_figheight(fig.get_figheight() + LEGEND_LINE * 1.3 * lines + 0.25)
    return fig.legend(
        list(handles.values()),
        labels,
        loc="outside lower center",
        ncol=ncol,
        fontsize=7,
        frameon=False,
        handlelength=2.5,
    )


NICE_RATIOS = (
    0.05,
    0.1,
    0.2,
    0.25,
    0.3,
    0.4,
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
    1.0,
    1.25,
    1.5,
    2.0,
    2.5,
    3.0,
    4.0,
    5.0,
    6.0,
    8.0,
    10.0,
    15.0,
    20.0,
    30.0,
    50.0,
    100.0,
)


def ratio_axis(ax, values) -> None:
    """A log y axis for a ratio (×) with ticks dense enough to read a point such as
    0.74× (at most about ten labelled ticks from NICE_RATIOS, always 1×)."""
    vals = pd.to_numeric(pd.Series(list(values)), errors="coerce")
    vals = vals[np.isfinite(vals) & (vals > 0)]
    lo = min(float(vals.min()) if len(vals) else 1.0, 1.0) / 1.15
    hi = max(float(vals.max()) if len(vals) else 1.0, 1.0) * 1.15
    ax.set_yscale("log")
    ax.set_ylim(lo, hi)
    ticks = [t for t in NICE_RATIOS if lo <= t <= hi]
    while len(ticks) > 10:
        ticks = ticks[::2] if 1.0 in ticks[::2] else ticks[1::2]
    ax.yaxis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}×"))
    ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def _panels(
    frame: pd.DataFrame, keys: list[str], min_taus: int = 2
) -> list[tuple[dict, pd.DataFrame]]:
    """The largest groups by ``keys`` with at least ``min_taus`` distinct τ (at most
    MAX_PANELS of them), as (setting, rows) pairs: a panel with fewer distinct x than that
    would be empty or one point, and is dropped."""
    keys = runs.setting(keys, frame)  # several runs: their machines share a panel
    groups = [kv for kv in frame.groupby(keys, dropna=False) if kv[1]["tau"].nunique() >= min_taus]
    groups = sorted(groups, key=lambda kv: -len(kv[1]))
    return [(dict(zip(keys, k)), g) for k, g in groups[:MAX_PANELS]]


def _title(setting: dict) -> str:
    parts = []
    if "task_label" in setting:
        parts.append(str(setting["task_label"]))
    for key, short in (("batch", "B"), ("hidden", "H"), ("tau", "τ")):
        if key in setting:
            parts.append(f"{short}={setting[key]:g}")
    if "device" in setting:
        thr = f"×{setting['threads']:g} thr" if "threads" in setting else ""
        parts.append(f"{setting['device']}{thr}")
    lines = textwrap.wrap(", ".join(parts), TITLE_WRAP) or [""]
    return plot_text("\n".join(lines[:2]) + ("…" if len(lines) > 2 else ""))


class _PlainLog(matplotlib.ticker.LogFormatter):
    """Log-axis tick labels as plain numbers (16, 0.5, 2000), not powers; minor ticks
    are labelled too when the axis spans too few decades for the major ones to read."""

    def _num_to_string(self, x, vmin, vmax):
        return f"{x:g}"


def _log(ax, x_base: int | None = 2, y_base: int | None = 10) -> None:
    """Log axes whose tick labels read as plain numbers (16, 32, 0.1), not powers."""
    for base, set_scale, axis in (
        (x_base, ax.set_xscale, ax.xaxis),
        (y_base, ax.set_yscale, ax.yaxis),
    ):
        if base:
            set_scale("log", base=base)
            axis.set_major_formatter(_PlainLog(base, labelOnlyBase=False))
            axis.set_minor_formatter(
                _PlainLog(base, labelOnlyBase=False, minor_thresholds=(1, 0.5))
            )


def _decorate(
    ax,
    xlabel: str,
    ylabel: str | None = None,
    title: str | None = None,
    log: tuple | None = None,
    grid_which: str = "major",
) -> None:
    """The axis decoration every panel shares: labels, title, optional log scales and a
    light grid (the legend is the figure's: :func:`legend`)."""
    if log is not None:
        _log(ax, *log)
    ax.set_xlabel(xlabel)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title, fontsize=9)
    ax.grid(True, which=grid_which, alpha=0.3)


def _errors(values: pd.Series):
    """Error-bar lengths, or None when there are none to draw (one seed: no spread)."""
    values = pd.to_numeric(values, errors="coerce")
    return None if values.isna().all() else values.fillna(0).to_numpy(dtype=float)


def _mfc(name: str, color) -> object:
    return color if style.filled(name) else "white"


def _series_vs_tau(
    ax, rows: pd.DataFrame, measure: str, scale: float, colors: dict, flag_noisy: bool = False
) -> None:
    """Seed means with sd bars, one line per model + strategy (and run), and its fitted
    power law (from MIN_FIT_TAUS distinct τ on), its exponent k written at the line's end.
    ``flag_noisy``: a τ where some seed's timing is noisy (IQR above NOISY_IQR of the
    median) gets a hollow grey-edged marker."""
    rows = rows.assign(noisy=noisy(rows))
    any_noisy = False
    for suffix, run_marker, ls, part in _by_run(rows):
        for name, g in part.groupby("series"):
            pts = (
                g.groupby("tau")
                .agg(mean=(measure, "mean"), std=(measure, "std"), noisy=("noisy", "any"))
                .dropna(subset=["mean"])
            )
            if pts.empty:
                continue
            marker = style.marker(name) if not suffix else run_marker
            f = power_fit(g["tau"], g[measure]) if g["tau"].nunique() >= MIN_FIT_TAUS else None
            err = _errors(pts["std"])
            hollow = pts["noisy"].to_numpy(dtype=bool) if flag_noisy else np.zeros(len(pts), bool)
            any_noisy |= bool(hollow.any())
            ax.errorbar(
                pts.index,
                pts["mean"] * scale,
                yerr=None if err is None else err * scale,
                marker=marker,
                ms=5,
                lw=0,
                elinewidth=1,
                capsize=2,
                color=colors[name],
                mfc=_mfc(name, colors[name]),
                label=plot_text(name) + suffix,
                markevery=list(np.flatnonzero(~hollow)),
            )
            if hollow.any():
                ax.plot(
                    pts.index[hollow],
                    pts["mean"][hollow] * scale,
                    ls="none",
                    marker=marker,
                    ms=7,
                    mfc="white",
                    mec=colors[name],
                    mew=1.2,
                )
            if f is not None:
                t = np.geomspace(f.tau_min, f.tau_max, 50)
                y = f.predict(t) * scale
                ax.plot(t, y, ls=ls or "--", lw=1.2, color=colors[name])
                ax.annotate(
                    f"k={f.exponent:.2f}",
                    (t[-1], y[-1]),
                    xytext=(-3, 3),
                    textcoords="offset points",
                    ha="right",
                    va="bottom",
                    fontsize=7,
                    color=colors[name],
                )
    if any_noisy:
        ax.plot(
            [],
            [],
            ls="none",
            marker="o",
            ms=6,
            mfc="white",
            mec="gray",
            label=f"hollow: noisy (IQR > {NOISY_IQR:.0%} of median)",
        )
    _decorate(ax, "sequence length τ (steps)", log=(2, 10))


def _fitted(rows: pd.DataFrame, prefactor: str) -> str:
    """How the fitted lines are drawn, for a figure's title."""
    if runs.names(rows):
        return f"a style per run; lines: fitted {prefactor}·τ^k, k at each line's end"
    return f"dashed: fitted {prefactor}·τ^k, k at each line's end"


def _suptitle(fig: Figure, text: str) -> None:
    """The figure's title, wrapped to the figure's width."""
    width = max(40, int(fig.get_figwidth() * 72 / (11 * 0.6)))
    fig.suptitle("\n".join(textwrap.wrap(text, width)), fontsize=11)


def time_vs_tau(rows: pd.DataFrame) -> Figure | None:
    """Median step time against τ, log-log, with the fitted line of each model + strategy."""
    ok = ok_rows(rows)
    ok = ok[single(ok) & ok["step_ms_median"].notna()]
    if ok.empty:
        return None
    panels = _panels(ok, SETTING)
    if not panels:
        return None
    colors = _colors(ok["series"])
    fig, axes = grid(len(panels))
    for ax, (setting, g) in zip(axes, panels):
        _series_vs_tau(ax, g, "step_ms_median", 1.0, colors, flag_noisy=True)
        ax.set_ylabel("training step time (ms)")
        ax.set_title(_title(setting), fontsize=9)
    legend(fig, axes)
    bars = "bars: sd" if runs.names(ok) else "bars: sd over seeds"
    _suptitle(fig, f"Step time vs τ ({_fitted(ok, 'a')}; {bars})")
    return fig


def memory_vs_tau(rows: pd.DataFrame) -> Figure | None:
    """Saved-for-backward and peak memory against τ, log-log, with fitted lines: per
    setting a panel of each, side by side."""
    ok = ok_rows(rows)
    ok = ok[single(ok) & (ok["saved_bytes"].notna() | ok["peak_bytes"].notna())]
    if ok.empty:
        return None
    keys = [k for k in SETTING if k != "threads"]  # memory does not depend on threads
    panels = _panels(ok, keys)[: MAX_PANELS // 2]
    if not panels:
        return None
    colors = _colors(ok["series"])
    fig, axes = _pairs(len(panels))  # a setting a row: saved and peak side by side
    for (ax_saved, ax_peak), (setting, g) in zip(zip(axes[::2], axes[1::2]), panels):
        for ax, measure, what in (
            (ax_saved, "saved_bytes", "saved for backward"),
            (ax_peak, "peak_bytes", "peak memory"),
        ):
            _series_vs_tau(ax, g, measure, MIB, colors)
            ax.set_ylabel(f"{what} (MiB)")
            ax.set_title(plot_text(what + ": ") + _title(setting), fontsize=9)
    legend(fig, axes)
    _suptitle(fig, "Memory vs τ (" + _fitted(ok, "b") + ")")
    return fig


def _pairs(n: int) -> tuple[Figure, list]:
    """``n`` rows of two panels (a setting's pair side by side)."""
    fig = Figure(figsize=(2 * PANEL_W + 0.6, 0.5 + PANEL_H * n), layout="constrained")
    return fig, list(fig.subplots(n, 2, squeeze=False).ravel())


def speedup_vs_tau(speedups: pd.DataFrame) -> Figure | None:
    """Speedup of teacher forcing over bptt and bptt_fused against τ, with the 1× line;
    panels with fewer than two τ are dropped (a line needs two points)."""
    cols = [c for c in ("speedup_vs_bptt", "speedup_vs_bptt_fused") if c in speedups]
    if speedups.empty or speedups[cols].notna().sum().sum() == 0:
        return None
    keys = [k for k in SETTING if k != "batch"]
    measured = speedups[speedups[cols].notna().any(axis=1)]
    panels = _panels(measured, keys)
    if not panels:
        return None
    fig, axes = grid(len(panels))
    markers = {"speedup_vs_bptt": "o", "speedup_vs_bptt_fused": "s"}
    batches = sorted(speedups["batch"].unique())
    cmap = matplotlib.colormaps["viridis"]
    for ax, (setting, panel) in zip(axes, panels):
        values = []
        for suffix, _, run_ls, g in _by_run(panel):
            for (batch, tf), s in g.groupby(["batch", "teacher_forcing"]):
                color = cmap(batches.index(batch) / max(1, len(batches) - 1) * 0.85)
                for col in cols:
                    pts = s[["tau", col, f"{col}_sd"]].dropna(subset=[col]).sort_values("tau")
                    if pts.empty:
                        continue
                    values += list(pts[col])
                    base = col.removeprefix("speedup_vs_")
                    ax.errorbar(
                        pts["tau"],
                        pts[col],
                        yerr=_errors(pts[f"{col}_sd"]),
                        marker=markers[col],
                        ms=4,
                        capsize=2,
                        color=color,
                        ls=run_ls or ("-" if base == "bptt" else ":"),
                        label=plot_text(f"jordan + {tf} vs elman + {base}, B={batch:g}") + suffix,
                    )
        ax.axhline(1.0, color="black", lw=1, label="1× (no speedup)")
        _decorate(
            ax,
            "sequence length τ (steps)",
            "speedup of teacher forcing (×)",
            _title(setting),
            log=(2, None),
        )
        ratio_axis(ax, values)
    legend(fig, axes)
    _suptitle(fig, "Speedup of teacher forcing over BPTT (above 1×: teacher forcing is faster)")
    return fig


def speedup_vs_workers(workers: pd.DataFrame) -> Figure | None:
    """Time-parallel speedup against the number of workers, with the ideal line; bars:
    the interval from the quartiles of the raw samples. Only N-worker rows with a
    1-worker baseline from the same harness are drawn (None when there are none)."""
    if workers.empty or not ((workers["workers"] > 1) & workers["speedup"].notna()).any():
        return None
    keys = ["model", "strategy_label", "task_label", "tau", "batch", "split"]
    fig, axes = grid(1, width=6.4, height=4.4)
    ax = axes[0]
    for suffix, marker, run_ls, part in _by_run(workers):
        for key, g in part.groupby(keys):
            pts = g[g["speedup"].notna()].sort_values("workers")
            if not (pts["workers"] > 1).any():
                continue
            low = (pts["speedup"] - pts["speedup_lo"]).clip(lower=0)
            high = (pts["speedup_hi"] - pts["speedup"]).clip(lower=0)
            yerr = None if low.isna().all() else np.vstack([low.fillna(0), high.fillna(0)])
            series = f"{key[0]} + {key[1]}"
            ax.errorbar(
                pts["workers"],
                pts["speedup"],
                yerr=yerr,
                marker=style.marker(series) if not suffix else marker,
                ms=5,
                capsize=2,
                ls=run_ls or ("-" if key[5] == "time" else "--"),
                color=style.color(series),
                mfc=_mfc(series, style.color(series)),
                label=plot_text(f"{series}, split {key[5]}, {key[2]}, τ={key[3]:g}, B={key[4]:g}")
                + suffix,
            )
    top = workers["workers"].max()
    ax.plot([1, top], [1, top], color="black", lw=1, ls=":", label="ideal (speedup = workers)")
    _decorate(ax, "workers", "speedup over one worker (×)", log=(2, None))
    ratio_axis(ax, list(workers["speedup"].dropna()) + [top])
    legend(fig, axes)
    _suptitle(fig, "Time-parallel training: speedup vs workers (bars: quartile interval)")
    return fig


def _curves(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows with a training curve: Elman + BPTT and Jordan + teacher forcing."""
    ok = ok_rows(rows)
    has = ok["train_curve"].map(len) > 0
    pick = ((ok["model"] == "elman") & ok["strategy"].isin(["bptt", "bptt_fused"])) | (
        (ok["model"] == "jordan") & (ok["strategy"] == "teacher_forcing")
    )
    return ok[has & pick & single(ok)]


def loss_curves(rows: pd.DataFrame) -> Figure | None:
    """Training loss vs step and vs wall-clock: Elman + BPTT against Jordan + TF per task
    (a setting's two panels side by side, a setting a row)."""
    cur = _curves(rows)
    if cur.empty:
        return None
    keys = ["task_label", "tau", "batch", "hidden"]
    panels = _panels(cur, keys, min_taus=1)[: MAX_PANELS // 2]
    colors = _colors(cur["series"])
    fig, axes = _pairs(len(panels))
    for (ax_step, ax_wall), (setting, panel) in zip(zip(axes[::2], axes[1::2]), panels):
        seen = set()
        for suffix, _, ls, g in _by_run(panel):
            for _, r in g.sort_values(["series", "seed"]).iterrows():
                c = np.asarray(r["train_curve"], dtype=float).reshape(-1, 3)
                name = plot_text(r["series"]) + suffix
                label = None if name in seen else name
                seen.add(name)
                for ax, x in ((ax_step, c[:, 0]), (ax_wall, c[:, 1])):
                    ax.plot(
                        x,
                        c[:, 2],
                        color=colors[r["series"]],
                        lw=1,
                        alpha=0.8,
                        ls=ls or "-",
                        label=label,
                    )
        for ax, xlabel in ((ax_step, "training step"), (ax_wall, "wall-clock time (s)")):
            _decorate(ax, xlabel, "training loss (nats/token)", _title(setting))
        ax_step.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    legend(fig, axes)
    _suptitle(fig, "Training loss vs step and vs wall-clock (one line per seed)")
    return fig


def exposure_bias(rows: pd.DataFrame) -> Figure | None:
    """Teacher-forced vs free-running loss by position in the sequence (Jordan)."""
    ok = ok_rows(rows)
    ok = ok[
        (ok["model"] == "jordan")
        & (ok["train_steps"] > 0)
        & (ok["horizon_t"].map(len) > 0)
        & (ok["horizon_loss_free"].map(len) > 0)
    ]
    if ok.empty:
        return None
    # Per task, the longest τ measured: the one where errors have the most room to compound.
    ok = ok[ok["tau"] == ok.groupby("task_label")["tau"].transform("max")]
    panels = _panels(ok, ["task_label", "tau"], min_taus=1)
    colors = _colors(ok["series"])
    fig, axes = grid(len(panels))
    for ax, (setting, panel) in zip(axes, panels):
        for suffix, marker, _, g in _by_run(panel):
            for name, s in g.groupby("series"):
                t = np.asarray(s["horizon_t"].iloc[0], dtype=float)
                same = s[s["horizon_t"].map(len) == len(t)]
                for col, ls, what in (
                    ("horizon_loss_tf", "-", "teacher-forced"),
                    ("horizon_loss_free", "--", "free-running"),
                ):
                    vals = np.array([v for v in same[col] if len(v) == len(t)], dtype=float)
                    if vals.size and np.isfinite(vals).any():
                        counts = np.isfinite(vals).sum(axis=0)
                        mean = np.where(
                            counts > 0, np.nansum(vals, axis=0) / np.maximum(counts, 1), np.nan
                        )  # NaN losses skipped, without a warning
                        ax.plot(
                            t,
                            mean,
                            ls=ls,
                            marker=marker if suffix else style.marker(name),
                            ms=4,
                            color=colors[name],
                            mfc=_mfc(name, colors[name]),
                            label=f"{plot_text(name)}{suffix}: {what}",
                        )
        _decorate(ax, "position in the sequence t (steps)", "loss (nats/token)", _title(setting))
    legend(fig, axes)
    _suptitle(fig, "Exposure bias: loss fed the true outputs (solid) vs its own (dashed)")
    return fig


def capacity(rows: pd.DataFrame) -> Figure | None:
    """Task × model accuracy (best strategy, seeds averaged) as an annotated heatmap."""
    ok = ok_rows(rows)
    ok = ok[ok["train_steps"] > 0].copy()
    ok["acc"] = ok["acc_free"].fillna(ok["acc_tf"])
    ok = ok[ok["acc"].notna()]
    if ok.empty:
        return None
    if runs.names(ok):  # several runs: a column per model and run
        ok["model"] = ok["model"].astype(str) + "\n[" + ok[runs.RUN].astype(str) + "]"
    means = ok.groupby(["task_label", "model", "strategy_label"])["acc"].mean().reset_index()
    best = means.loc[means.groupby(["task_label", "model"])["acc"].idxmax()]
    table = best.pivot(index="task_label", columns="model", values="acc")
    strat = best.pivot(index="task_label", columns="model", values="strategy_label")
    fig, axes = grid(
        1, width=min(12.6, 3.0 + 1.8 * table.shape[1]), height=1.4 + 0.7 * table.shape[0]
    )
    ax = axes[0]
    im = ax.imshow(table.to_numpy(dtype=float), vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
    for i in range(table.shape[0]):
        for j in range(table.shape[1]):
            v = table.iat[i, j]
            if np.isfinite(v):
                ax.text(
                    j,
                    i,
                    f"{v:.2f}\n{cut(strat.iat[i, j], 24)}",
                    ha="center",
                    va="center",
                    fontsize=8,
                )
    ax.set_xticks(range(table.shape[1]), [cut(c, 24) for c in table.columns])
    tasks = ["\n".join(textwrap.wrap(cut(t, 60), 30)) for t in table.index]
    ax.set_yticks(range(table.shape[0]), tasks)
    ax.set_xlabel("model")
    ax.set_ylabel("task")
    fig.colorbar(im, ax=ax, label="accuracy on own outputs")
    _suptitle(fig, "Capacity: accuracy per task and model (best strategy)")
    return fig


# --------------------------------------------------------------------------- DEER


# The contenders for one Elman training step (and Jordan + teacher forcing beside them).
STEP_STRATEGIES = (
    "bptt",
    "bptt_fused",
    "bptt_compiled",
    "scan_bptt",
    "deer",
    "quasi_deer",
    "teacher_forcing",
)


def _numeric(rows: pd.DataFrame, name: str) -> pd.Series:
    if name not in rows.columns:
        return pd.Series(np.nan, index=rows.index)
    return pd.to_numeric(rows[name], errors="coerce")


def deer_iterations(rows: pd.DataFrame) -> Figure | None:
    """Newton iterations to converge against the spectral radius ρ of W (the
    predictability cliff), one line per strategy and τ (the strategy's colour and marker,
    a lighter shade for a shorter τ); runs that did not converge within max_iter are drawn
    as crosses."""
    ok = ok_rows(rows).copy()
    ok["rho"], ok["iterations"] = _numeric(ok, "rho"), _numeric(ok, "iterations")
    ok = ok[
        (ok["model"] == "elman")
        & ok["strategy"].isin(NEWTON_SOLVERS)
        & ok["rho"].notna()
        & ok["iterations"].notna()
    ]
    if ok["rho"].nunique() < 2:
        return None
    conv = ok["converged"] if "converged" in ok.columns else pd.Series(True, index=ok.index)
    ok["failed"] = conv.map(lambda v: str(v).lower() in ("false", "0"))
    fig, axes = grid(1, width=6.4, height=4.2)
    ax = axes[0]
    taus = sorted(ok["tau"].unique())
    for (label, tau), g in ok.groupby(["strategy_label", "tau"]):
        base = style.color(f"elman + {label}")
        shade = 0.55 * (1 - (taus.index(tau) + 1) / len(taus))  # longest τ: full colour
        color = tuple(c + (1 - c) * shade for c in base)
        pts = g.groupby("rho")["iterations"].mean().sort_index()
        ax.plot(
            pts.index,
            pts.to_numpy(),
            marker=style.marker(f"elman + {label}"),
            ms=5,
            lw=1.2,
            color=color,
            label=plot_text(f"{label}, τ={tau:g}"),
        )
        bad = g[g["failed"]]
        if len(bad):
            ax.plot(bad["rho"], bad["iterations"], ls="", marker="x", ms=8, color=color)
    ax.axvline(1.0, color="grey", lw=0.8, ls=":")
    _decorate(
        ax,
        "spectral radius ρ of W at init",
        "Newton iterations to converge",
        "× = not converged within max_iter",
        log=(None, 2),
    )
    legend(fig, axes)
    _suptitle(fig, "DEER: iterations vs spectral radius (contracting left of ρ = 1)")
    return fig


def time_vs_hidden(rows: pd.DataFrame) -> Figure | None:
    """Step time against the hidden size H for every Elman step strategy and Jordan +
    teacher forcing, one panel per (τ, B, threads); seeds averaged."""
    ok = ok_rows(rows)
    ok = ok[
        single(ok)
        & (ok["train_steps"].fillna(0) == 0)
        & ok["step_ms_median"].notna()
        & ok["strategy"].isin(STEP_STRATEGIES)
    ]
    ok = ok[(ok["model"] == "elman") | (ok["strategy"] == "teacher_forcing")]
    keys = ["task_label", "tau", "batch", "device", "threads"]
    panels = []
    for k, g in ok.groupby(keys, dropna=False):
        lines = [n for n, x in g.groupby("series") if x["hidden"].nunique() >= 2]
        if len(lines) >= 2 and g["strategy"].isin(NEWTON_SOLVERS + ("scan_bptt",)).any():
            panels.append((dict(zip(keys, k)), g[g["series"].isin(lines)]))
    if not panels:
        return None
    panels = sorted(panels, key=lambda kv: -len(kv[1]))[:MAX_PANELS]
    fig, axes = grid(len(panels))
    colors = _colors(ok["series"])
    for ax, (setting, g) in zip(axes, panels):
        for name, x in g.groupby("series"):
            pts = x.groupby("hidden")["step_ms_median"].mean().sort_index()
            ax.plot(
                pts.index,
                pts.to_numpy(),
                marker=style.marker(name),
                ms=5,
                lw=1.2,
                color=colors[name],
                mfc=_mfc(name, colors[name]),
                label=plot_text(name),
            )
        _decorate(ax, "hidden size H", "step time (ms)", _title(setting), log=(2, 10))
    legend(fig, axes)
    _suptitle(fig, "Step time vs hidden size: sequential BPTT, parallel-in-time, teacher forcing")
    return fig


PLOTS = (
    "time_vs_tau",
    "memory_vs_tau",
    "speedup_vs_tau",
    "speedup_vs_workers",
    "loss_curves",
    "exposure_bias",
    "capacity",
    "deer_iterations",
    "time_vs_hidden",
)


def figures(rows: pd.DataFrame, speedups: pd.DataFrame, workers: pd.DataFrame) -> dict:
    """Every plot that has data, by name (None where nothing was measured)."""
    return {
        "time_vs_tau": time_vs_tau(rows),
        "memory_vs_tau": memory_vs_tau(rows),
        "speedup_vs_tau": speedup_vs_tau(speedups),
        "speedup_vs_workers": speedup_vs_workers(workers),
        "loss_curves": loss_curves(rows),
        "exposure_bias": exposure_bias(rows),
        "capacity": capacity(rows),
        "deer_iterations": deer_iterations(rows),
        "time_vs_hidden": time_vs_hidden(rows),
    }


def save(fig: Figure, folder: Path, name: str) -> list[Path]:
    """Write ``name``.png and ``name``.svg into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png", folder / f"{name}.svg"]
    fig.savefig(paths[0], dpi=110)
    if fig.get_layout_engine() is not None:
        fig.set_layout_engine("none")  # keep the layout just computed for the SVG
    with matplotlib.rc_context({"svg.hashsalt": name}):  # the same ids on every run
        fig.savefig(paths[1], metadata={"Date": None})
    return paths
