"""Every plot is legible at page width on a crowded sweep: no legend or text past the
canvas, at most three panels across, a width that fits a page (issue 24.2).

Each figure is drawn on busy synthetic rows (eleven series, options, a long task path
with ``$``, three thread counts) and every text artist's window extent is checked against
the canvas as the report saves it (``savefig`` at the report's dpi, no tight bbox)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import report_synthetic as rs
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.text import Text

from rnnbench.report import build_report, plots, style

# its module fixture is costly: one process runs the whole module (make test: loadgroup)
pytestmark = pytest.mark.xdist_group("plots")


MAX_WIDTH_IN = 13.5  # inches: three panels of 4.5 in; 1485 px at 110 dpi, shown at ≥ 0.8 scale
SLACK = 1.0  # pixels


@pytest.fixture(scope="session")  # once per test process: xdist may interleave modules
def busy():
    return build_report(pd.DataFrame(rs.busy_rows())).figures  # every figure, as the report


def outside(fig: Figure) -> list[str]:
    """Every visible text or legend whose extent leaves the canvas, as 'text: where'."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    width, height = fig.bbox.width, fig.bbox.height
    artists = list(fig.legends) + [a.get_legend() for a in fig.axes if a.get_legend()]
    artists += [t for t in fig.findobj(Text) if t.get_visible() and id(t) not in tick_labels(fig)]
    artists += drawn_tick_labels(fig)
    bad = []
    for artist in artists:
        if hasattr(artist, "get_text") and not artist.get_text():
            continue
        box = artist.get_window_extent(renderer)
        if box.x0 < -SLACK or box.y0 < -SLACK or box.x1 > width + SLACK or box.y1 > height + SLACK:
            what = artist.get_text() if hasattr(artist, "get_text") else type(artist).__name__
            bad.append(
                f"{what[:40]!r}: {box.x0:.0f},{box.y0:.0f}..{box.x1:.0f},{box.y1:.0f} "
                f"on {width:.0f}x{height:.0f}"
            )
    return bad


def _ticks(fig: Figure):
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                yield tick, lo <= tick.get_loc() <= hi


def tick_labels(fig: Figure) -> set[int]:
    return {id(label) for tick, _ in _ticks(fig) for label in (tick.label1, tick.label2)}


def drawn_tick_labels(fig: Figure) -> list[Text]:
    """Tick labels matplotlib draws: visible, on a tick inside the axis' view."""
    return [
        label
        for tick, inside in _ticks(fig)
        if inside
        for label in (tick.label1, tick.label2)
        if label.get_visible()
    ]


def across(fig: Figure) -> int:
    """The most panels side by side: data axes whose vertical spans overlap."""
    axes = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    boxes = [a.get_position() for a in axes]
    return max(sum(1 for b in boxes if b.y0 < a.y1 and a.y0 < b.y1) for a in boxes)


def test_every_plot_is_drawn_on_the_busy_rows(busy):
    assert all(busy[name] is not None for name in plots.PLOTS), [
        n for n in plots.PLOTS if busy[n] is None
    ]


@pytest.mark.parametrize("name", plots.PLOTS)
def test_nothing_leaves_the_canvas_and_panels_fit_the_page(busy, name):
    fig = busy[name]
    assert outside(fig) == []
    assert across(fig) <= plots.MAX_ACROSS
    assert fig.get_figwidth() <= MAX_WIDTH_IN


def test_the_bounds_check_sees_a_clipped_legend():
    """The opposite case: a legend anchored below the axes in a figure without room."""
    fig = Figure(figsize=(4, 3))
    ax = fig.subplots()
    ax.plot([1, 2], [1, 2], label="a label long enough to leave a small canvas on the right")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2))
    assert outside(fig)


def test_the_panel_count_check_sees_a_strip():
    fig = Figure(figsize=(20, 3))
    fig.subplots(1, 6)
    assert across(fig) == 6 > plots.MAX_ACROSS


def test_a_grid_of_seven_is_three_across_and_one_legend_below():
    fig, axes = plots.grid(7)
    for i, ax in enumerate(axes):
        ax.plot([1, 2], [i, i + 1], label=f"series {i % 3}")
    before = fig.get_figheight()
    leg = plots.legend(fig, axes)
    assert len(axes) == 7 and across(fig) == 3
    assert len(leg.get_texts()) == 3 and fig.get_figheight() > before
    assert all(ax.get_legend() is None for ax in axes)
    assert outside(fig) == []


def test_long_labels_are_cut_and_dollars_drawn_literally():
    fig, axes = plots.grid(1)
    axes[0].plot([1, 2], [1, 2], label="x" * 200)
    axes[0].plot([1, 2], [2, 1], label=plots.cut("cost $5 and $6"))
    leg = plots.legend(fig, axes)
    texts = [t.get_text() for t in leg.get_texts()]
    assert len(texts[0]) == plots.LABEL_MAX and texts[0].endswith("…")
    assert texts[1] == r"cost \$5 and \$6"
    assert outside(fig) == []  # drawn without a mathtext error


def test_a_ratio_axis_labels_a_point_below_one():
    fig, axes = plots.grid(1)
    axes[0].plot([1, 2], [0.74, 1.3])
    plots.ratio_axis(axes[0], [0.74, 1.3])
    ticks = labelled_between(fig, 0.5, 1.0)
    assert len(ticks) >= 3  # 0.74× reads between labelled ticks 0.1 apart
    assert np.diff(sorted(ticks)).max() <= 0.2 + 1e-9
    # the opposite case: the base-2 log axis speedup_vs_workers had labels only 1 and 2
    bare, ax = plots.grid(1)
    ax[0].plot([1, 2], [0.74, 1.3])
    plots._log(ax[0], None, 2)
    assert len(labelled_between(bare, 0.5, 1.0)) < 3


def labelled_between(fig: Figure, lo: float, hi: float) -> list[float]:
    """The y values in [lo, hi] that carry a tick label once the figure is drawn."""
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    return [
        t.get_loc()
        for t in ax.yaxis.get_major_ticks() + ax.yaxis.get_minor_ticks()
        if lo <= t.get_loc() <= hi and t.label1.get_visible() and t.label1.get_text()
    ]


def test_a_strategy_keeps_its_colour_and_marker_in_every_plot(busy):
    """bptt is the same colour in time_vs_tau and time_vs_hidden; options are a lighter
    shade; an unknown strategy is a stable grey."""
    seen = {}
    for name in ("time_vs_tau", "time_vs_hidden", "memory_vs_tau"):
        for ax in busy[name].axes:
            drawn = [(c.get_label(), c.lines[0]) for c in ax.containers]  # errorbars
            drawn += [(line.get_label(), line) for line in ax.get_lines()]
            for label, line in drawn:
                if label == "elman + bptt":
                    seen.setdefault(name, set()).add((to_hex(line.get_color()), line.get_marker()))
    assert len(seen) >= 2 and len(set().union(*seen.values())) == 1
    assert style.color("elman + bptt") == style.color("jordan + bptt")
    light = style.color("elman + truncated_bptt(k=32)")
    assert light != style.color("elman + truncated_bptt") and sum(light) > sum(
        style.color("elman + truncated_bptt")
    )
    grey = style.color("elman + brand_new")
    assert grey[0] == grey[1] == grey[2] and grey == style.color("elman + brand_new")
    assert style.color("elman + bptt") != style.color("elman + deer")
