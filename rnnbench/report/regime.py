"""The regime map: for each (H, τ), which method trains a step fastest, and by how much.

:func:`table` answers the reader's question "for my H and τ, which method is fastest?"
from the rows: per setting (:data:`SETTING`: task, batch, device, threads, dtype, the
dynamics' ``rho``, and the run when the report holds several) and per cell (H, τ),

- ``ms: <method>``: each method's step time, the median over its rows (seeds and
  replicates) of each row's median training-step time, in ms;
- ``winner`` and ``runner_up``: the fastest and the second fastest method;
- ``margin``: runner-up time / winner time (≥ 1: how clearly the winner wins);
- ``best_bptt`` and ``gain_vs_bptt``: the fastest sequential BPTT
  (:data:`rnnbench.facts.SEQUENTIAL_BPTT`) and its time / the winner's time (1 when a
  sequential BPTT wins).

Only plain timing cells enter (:func:`timing_rows`): status ok, timed in one process
(one worker, no split), no paired baseline (a paired cell's time is taken in turns with
another), no training steps, not contended; a Newton solver (DEER, quasi-DEER) only where
it converged (an unconverged solve is not the gradient the others compute).  A method
is named by its strategy label (``deer(max_iter=64)``), with its model in front where one
strategy appears with several models.

:func:`crossovers` lists where the winner changes between neighbouring cells (along τ at
fixed H, along H at fixed τ); :func:`figure` draws the map, one heatmap per setting (one
per thread count in a one-setting run), the winner's name and margin written in each
cell and a thick line on every boundary where the winner changes.
"""

from __future__ import annotations

import textwrap

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from rnnbench.facts import NEWTON_SOLVERS, OK, SEQUENTIAL_BPTT
from rnnbench.report import runs
from rnnbench.report.escape import plot_text
from rnnbench.report.tables import single

SETTING = ["task_label", "batch", "device", "threads", "dtype", "rho"]
CELL = ["hidden", "tau"]
PREFIX = "ms: "  # the column of a method's time is PREFIX + method
COLUMNS = ["winner", "runner_up", "margin", "best_bptt", "gain_vs_bptt", "n_methods"]
MAX_ACROSS = 3  # panels per figure row
NOTE = (
    "Per setting and (H, τ): each method's step time (ms: the median over its rows of each "
    "row's median training-step time), the fastest (winner) and second fastest (runner-up), "
    "margin = runner-up / winner, gain_vs_bptt = fastest sequential BPTT / winner (1 when a "
    "sequential BPTT wins). Plain one-process timing cells only: no paired baseline, no "
    "training steps, not contended; DEER and quasi-DEER only where they converged."
)


def _setting(rows: pd.DataFrame) -> list[str]:
    keys = ([runs.RUN] if runs.RUN in rows.columns else []) + SETTING
    return [k for k in keys if k in rows.columns]


def timing_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows the map is drawn from (see the module's docstring), with a ``method``."""
    r = rows[(rows["status"] == OK) & rows["step_ms_median"].notna()]
    r = r[single(r) & (r["baseline"].astype(str) == "")]
    r = r[r["train_steps"].fillna(0) == 0]
    if "contended" in r.columns:
        r = r[~r["contended"].astype(bool)]
    newton = r["strategy"].isin(NEWTON_SOLVERS)
    converged = r["converged"].map(lambda v: v is True or v == 1)
    r = r[~newton | converged]
    if r.empty:
        return r.assign(method=pd.Series(dtype=str))
    models = r.groupby("strategy_label")["model"].nunique()
    several = set(models[models > 1].index)
    method = [
        f"{m} + {s}" if s in several else str(s) for m, s in zip(r["model"], r["strategy_label"])
    ]
    return r.assign(method=method)


def table(rows: pd.DataFrame) -> pd.DataFrame:
    """The regime table: one line per setting and (H, τ) with two methods or more timed."""
    r = timing_rows(rows)
    keys = _setting(rows) + CELL
    if r.empty:
        return pd.DataFrame(columns=keys + COLUMNS)
    times = (
        r.groupby(keys + ["method"], dropna=False, sort=True)["step_ms_median"]
        .median()
        .unstack("method")
    )
    methods = list(times.columns)
    times = times[times.notna().sum(axis=1) >= 2]
    if times.empty:
        return pd.DataFrame(columns=keys + COLUMNS)
    out = times.reset_index()[keys].copy()
    for m in methods:
        out[PREFIX + m] = times[m].to_numpy()
    ranked = [row.dropna().sort_values() for _, row in times.iterrows()]
    out["winner"] = [s.index[0] for s in ranked]
    out["runner_up"] = [s.index[1] for s in ranked]
    out["margin"] = [s.iloc[1] / s.iloc[0] for s in ranked]
    bptt = [s[[m for m in s.index if _strategy(m) in SEQUENTIAL_BPTT]] for s in ranked]
    out["best_bptt"] = [b.index[0] if len(b) else None for b in bptt]
    out["gain_vs_bptt"] = [
        b.iloc[0] / s.iloc[0] if len(b) else np.nan for b, s in zip(bptt, ranked)
    ]
    out["n_methods"] = [len(s) for s in ranked]
    out = out.dropna(axis=1, how="all")
    return out.reset_index(drop=True)


def _strategy(method: str) -> str:
    """'elman + bptt' -> 'bptt'; 'deer(max_iter=64)' -> 'deer'."""
    return method.rsplit(" + ", 1)[-1].split("(", 1)[0]


def crossovers(regime: pd.DataFrame) -> pd.DataFrame:
    """Every boundary between neighbouring cells of one setting where the winner changes:
    ``along`` τ (at fixed H, between τ ``from_value`` and ``to_value``) or H (at fixed τ)."""
    cols = ["setting", "along", "at", "from_value", "to_value", "from_winner", "to_winner"]
    if regime.empty:
        return pd.DataFrame(columns=cols)
    keys = [k for k in _setting(regime) if k in regime.columns]
    out = []
    for setting, g in regime.groupby(keys, dropna=False, sort=True) if keys else [((), regime)]:
        label = _title(dict(zip(keys, setting if isinstance(setting, tuple) else (setting,))))
        for along, fixed in (("tau", "hidden"), ("hidden", "tau")):
            for at, line in g.groupby(fixed):
                line = line.sort_values(along)
                values, winners = line[along].tolist(), line["winner"].tolist()
                for i in range(1, len(values)):
                    if winners[i] != winners[i - 1]:
                        out.append(
                            (label, along, f"{fixed}={at:g}", values[i - 1], values[i])
                            + (winners[i - 1], winners[i])
                        )
    return pd.DataFrame(out, columns=cols)


def note(regime: pd.DataFrame) -> str:
    """:data:`NOTE` and every crossover in words (the report's caption of the table)."""
    cross = crossovers(regime)
    if cross.empty:
        return NOTE + " No crossover: one method wins every cell of each setting."
    said = [
        f"{c.setting}: at {c.at.replace('hidden', 'H')}, "
        f"{'τ' if c.along == 'tau' else 'H'} {c.from_value:g} → {c.to_value:g}, "
        f"{c.from_winner} → {c.to_winner}"
        for c in cross.itertuples()
    ]
    return NOTE + " Crossovers (the winner changes): " + "; ".join(said) + "."


def _title(setting: dict) -> str:
    parts = []
    for k, v in setting.items():
        if v is None or (isinstance(v, float) and np.isnan(v)):
            continue
        if k == "threads":
            parts.append(f"{v:g} thread{'s' if v != 1 else ''}")
        elif k == "batch":
            parts.append(f"B={v:g}")
        elif k == "rho":
            parts.append(f"ρ={v:g}")
        elif k in ("device", "dtype") and v in ("cpu", "float32"):
            continue
        else:
            parts.append(str(v))
    lines = textwrap.wrap(", ".join(parts), 52) or [""]  # a panel's width at fontsize 9
    return plot_text("\n".join(lines[:2]) + ("…" if len(lines) > 2 else ""))  # literally


def colors(methods) -> dict:
    """A colour per method, the same in every panel."""
    cmap = matplotlib.colormaps["tab10"]
    return {m: cmap(i % 10) for i, m in enumerate(sorted(set(methods)))}


PANEL_W, PANEL_H = 4.4, 3.4  # inches


def figure(regime: pd.DataFrame) -> Figure | None:
    """One heatmap per setting: rows H, columns τ, each cell coloured by its winner,
    labelled with the winner and its margin (×, runner-up / winner); thick black lines
    where the winner changes between neighbours. None when no cell has two methods."""
    if regime.empty:
        return None
    keys = [k for k in _setting(regime) if k in regime.columns]
    groups = list(regime.groupby(keys, dropna=False, sort=True)) if keys else [((), regime)]
    palette = colors(regime["winner"])
    n = len(groups)
    across = min(n, MAX_ACROSS)
    down = -(-n // across)
    legend_rows = -(-len(palette) // 3)
    fig = Figure(
        figsize=(max(6.4, PANEL_W * across), PANEL_H * down + 0.9 + 0.25 * legend_rows),
        layout="constrained",
    )
    axes = np.atleast_1d(fig.subplots(down, across, squeeze=False)).ravel()
    for ax, (setting, g) in zip(axes, groups):
        _panel(ax, g, palette)
        values = setting if isinstance(setting, tuple) else (setting,)
        ax.set_title(_title(dict(zip(keys, values))), fontsize=9)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle("Regime map: the fastest method per (H, τ); × = runner-up / winner", fontsize=10)
    fig.legend(
        handles=[Patch(color=c, label=plot_text(m)) for m, c in palette.items()],
        loc="outside lower center",
        ncol=min(3, len(palette)),
        fontsize=8,
        frameon=False,
    )
    return fig


def _panel(ax, g: pd.DataFrame, palette: dict) -> None:
    hs = sorted(g["hidden"].unique())
    taus = sorted(g["tau"].unique())
    names = list(palette)
    index = np.full((len(hs), len(taus)), np.nan)
    winner = g.set_index(CELL)
    for i, h in enumerate(hs):
        for j, t in enumerate(taus):
            if (h, t) in winner.index:
                line = winner.loc[(h, t)]
                index[i, j] = names.index(line["winner"])
                label = f"{plot_text(_short(line['winner']))}\n{line['margin']:.2g}×"
                ax.text(j, i, label, ha="center", va="center", fontsize=7)
            else:
                ax.text(j, i, "—", ha="center", va="center", fontsize=7, color="0.5")
    cmap = matplotlib.colors.ListedColormap([palette[m] for m in names])
    ax.imshow(
        np.ma.masked_invalid(index),
        cmap=cmap,
        vmin=-0.5,
        vmax=len(names) - 0.5,
        alpha=0.55,
        aspect="auto",
        origin="lower",
    )
    for i in range(len(hs)):  # boundaries where the winner changes: thick lines
        for j in range(len(taus)):
            here = index[i, j]
            if j + 1 < len(taus) and here != index[i, j + 1]:
                ax.plot([j + 0.5, j + 0.5], [i - 0.5, i + 0.5], color="black", lw=3)
            if i + 1 < len(hs) and here != index[i + 1, j]:
                ax.plot([j - 0.5, j + 0.5], [i + 0.5, i + 0.5], color="black", lw=3)
    ax.set_xticks(range(len(taus)), [f"{t:g}" for t in taus])
    ax.set_yticks(range(len(hs)), [f"{h:g}" for h in hs])
    ax.set_xlabel("sequence length τ")
    ax.set_ylabel("hidden size H")
    ax.set_xlim(-0.5, len(taus) - 0.5)
    ax.set_ylim(-0.5, len(hs) - 0.5)


def _short(method: str) -> str:
    """A cell label: the strategy without its options' long names, a model + strategy on
    two lines (one line of both overran its cell into the next)."""
    return method.replace("teacher_forcing", "TF").replace(" + ", "+\n")
