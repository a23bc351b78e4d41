"""The scaling model's figure: predicted speedup against N = 1..1,024 workers for each
time-split configuration, on the measured loopback and on the datacentre example, with
the measured speedups on it (:mod:`rnnbench.report.scaling`)."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure

from rnnbench.report.scaling import GRID, Scaling, label

NAME = "scaling_vs_workers"
CAPTION = (
    "Scaling model: predicted speedup T(1)/T(N) of each time split against N = 1..1,024 "
    "workers (lines: the measured loopback network, dashed: the datacentre example; dotted: "
    "ideal N), measured speedups as points with their 95% interval over replicates; "
    "a cross marks the N of the largest predicted speedup (docs/scaling.md)."
)
STYLES = ("-", "--", ":")


def figure(s: Scaling) -> Figure | None:
    """One panel per configuration and tau; None when there is no model to draw."""
    if not s.models:
        return None
    n = len(s.models)
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(6.0 * cols, 4.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, m in zip(axes, s.models):
        name = label(m)
        ax.plot(GRID, GRID, ":", color="0.6", label="ideal (N)")
        for net, style in zip(s.networks, STYLES):
            sp = m.speedup(net)
            line = ax.plot(GRID, sp, style, label=net.name)[0]
            best = int(GRID[sp.argmax()])
            ax.plot([best], [sp.max()], "x", color=line.get_color(), markersize=9)
        mine = s.check[s.check["configuration"] == name] if len(s.check) else s.check
        if len(mine):
            lo = (mine["measured"] - mine["measured_lo"]).fillna(0).clip(lower=0)
            hi = (mine["measured_hi"] - mine["measured"]).fillna(0).clip(lower=0)
            ax.errorbar(
                mine["workers"],
                mine["measured"],
                yerr=[lo, hi],
                fmt="o",
                color="black",
                capsize=3,
                label="measured",
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlim(1, GRID[-1])
        ax.set_xlabel("workers N")
        ax.set_ylabel("speedup T(1) / T(N)")
        ax.set_title(name, fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig
