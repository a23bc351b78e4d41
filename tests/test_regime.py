"""The regime map (report/regime.py): the fastest method per (H, τ), from plain timing
cells only, its crossovers, its heatmap, and its place in the report."""

from __future__ import annotations

import pandas as pd
import report_synthetic as rs
from matplotlib.backends.backend_agg import FigureCanvasAgg

from rnnbench.report import build_report, regime, tidy

# step time (ms) of each method at (H, tau): bptt_compiled wins small tau, deer wins long
# tau at H=8, teacher forcing wins long tau at H=32
TIMES = {
    ("elman", "bptt_compiled"): {(8, 256): 1.0, (8, 1024): 4.0, (32, 256): 2.0, (32, 1024): 8.0},
    ("elman", "bptt"): {(8, 256): 5.0, (8, 1024): 20.0, (32, 256): 6.0, (32, 1024): 24.0},
    ("elman", "deer"): {(8, 256): 3.0, (8, 1024): 2.0, (32, 256): 9.0, (32, 1024): 30.0},
    ("jordan", "teacher_forcing"): {
        (8, 256): 1.5,
        (8, 1024): 3.0,
        (32, 256): 2.5,
        (32, 1024): 4.0,
    },
}


def grid_rows(threads=(1, 2), times=TIMES, **fields) -> list[dict]:
    out = []
    for t in threads:
        for (model, strategy), cells in times.items():
            for (hidden, tau), ms in cells.items():
                extra = {"converged": True, "iterations": 3} if strategy == "deer" else {}
                out.append(
                    rs.row(
                        model=model,
                        strategy=strategy,
                        hidden=hidden,
                        tau=tau,
                        threads=t,
                        step_ms_median=ms * (1 if t == 1 else 0.8),
                        step_ms_iqr=0.01,
                        **{**extra, **fields},
                    )
                )
    return out


def _at(table: pd.DataFrame, threads: int, hidden: int, tau: int) -> pd.Series:
    sel = table[(table["threads"] == threads) & (table["hidden"] == hidden) & (table["tau"] == tau)]
    assert len(sel) == 1, sel
    return sel.iloc[0]


def test_winner_runner_up_margin_and_gain_over_the_best_bptt():
    table = regime.table(tidy.load(pd.DataFrame(grid_rows())))
    assert len(table) == 8  # 2 thread counts x 2 H x 2 tau
    line = _at(table, 1, 8, 1024)
    assert (line["winner"], line["runner_up"]) == ("deer", "teacher_forcing")
    assert line["margin"] == 3.0 / 2.0
    assert line["best_bptt"] == "bptt_compiled" and line["gain_vs_bptt"] == 4.0 / 2.0
    line = _at(table, 1, 8, 256)
    assert (line["winner"], line["runner_up"]) == ("bptt_compiled", "teacher_forcing")
    assert line["gain_vs_bptt"] == 1.0  # a sequential BPTT wins: no gain over itself
    assert line[regime.PREFIX + "bptt"] == 5.0
    assert _at(table, 2, 32, 1024)["winner"] == "teacher_forcing"


def test_only_plain_converged_one_process_timing_cells_enter():
    """A fastest-of-all row that is paired, training, unconverged, on two workers or
    contended changes nothing; the same row as a plain converged cell wins."""
    fast = {("elman", "deer"): {(32, 256): 0.1}}
    excluded = [
        grid_rows((1,), fast, baseline='{"threads": 1}'),
        grid_rows((1,), fast, train_steps=100),
        grid_rows((1,), fast, converged=False),
        grid_rows((1,), fast, workers=2, split="time"),
        grid_rows((1,), fast, cpu_share=0.2, wait_share=0.5),
    ]
    base = grid_rows((1,))
    for bad in excluded:
        table = regime.table(tidy.load(pd.DataFrame(base + bad)))
        assert _at(table, 1, 32, 256)["winner"] == "bptt_compiled", bad[0]
    # the opposite case: a plain converged cell that fast does win
    plain = grid_rows((1,), fast, seed=1) + grid_rows((1,), fast, seed=2)
    table = regime.table(tidy.load(pd.DataFrame(base + plain)))
    line = _at(table, 1, 32, 256)
    assert line["winner"] == "deer"  # the median of 9.0, 0.1 and 0.1 ms
    assert line[regime.PREFIX + "deer"] == 0.1


def test_a_cell_with_one_method_is_no_regime_and_no_rows_give_no_figure():
    one = {("elman", "bptt"): TIMES[("elman", "bptt")]}
    table = regime.table(tidy.load(pd.DataFrame(grid_rows((1,), one))))
    assert table.empty
    assert regime.figure(table) is None


def test_crossovers_name_every_boundary_where_the_winner_changes():
    table = regime.table(tidy.load(pd.DataFrame(grid_rows((1,)))))
    cross = regime.crossovers(table)
    found = {
        (c.along, c.at, c.from_value, c.to_value, c.from_winner, c.to_winner)
        for c in cross.itertuples()
    }
    assert found == {
        ("tau", "hidden=8", 256, 1024, "bptt_compiled", "deer"),
        ("tau", "hidden=32", 256, 1024, "bptt_compiled", "teacher_forcing"),
        ("hidden", "tau=1024", 8, 32, "deer", "teacher_forcing"),
    }
    # the opposite case: one winner everywhere, no crossover
    same = {k: v for k, v in TIMES.items() if k[1] in ("bptt_compiled", "bptt")}
    one_winner = regime.table(tidy.load(pd.DataFrame(grid_rows((1,), same))))
    assert regime.crossovers(one_winner).empty
    assert "No crossover" in regime.note(one_winner)


def _inside(fig) -> list[str]:
    """The text and legend artists that extend past the canvas."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    box = fig.bbox
    out = []
    for artist in [*fig.legends, *fig.texts, *(t for ax in fig.axes for t in ax.texts)]:
        b = artist.get_window_extent(renderer)
        if b.x0 < box.x0 - 1 or b.y0 < box.y0 - 1 or b.x1 > box.x1 + 1 or b.y1 > box.y1 + 1:
            out.append(str(artist))
    return out


def test_the_heatmap_has_a_panel_per_thread_count_thick_crossover_lines_and_fits():
    table = regime.table(tidy.load(pd.DataFrame(grid_rows())))
    fig = regime.figure(table)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["text, B=1, 1 thread", "text, B=1, 2 threads"]
    labels = sorted(t.get_text() for t in panels[0].texts)
    assert labels == sorted(["bptt_compiled\n1.5×", "deer\n1.5×", "bptt_compiled\n1.2×", "TF\n2×"])
    thick = [line for line in panels[0].lines if line.get_linewidth() >= 3]
    assert len(thick) == 3  # the three boundaries of test_crossovers...
    assert fig.get_size_inches()[0] <= regime.PANEL_W * regime.MAX_ACROSS + 0.01
    assert not _inside(fig)
    legend = {t.get_text() for t in fig.legends[0].get_texts()}
    assert legend == {"bptt_compiled", "deer", "teacher_forcing"}


def test_long_winner_names_stay_inside_their_cells():
    """Where the methods differ in model, a winner is "model + strategy": chapter10's
    single_output + bptt_compiled at three τ ran into its neighbours on one line."""
    times = {
        ("single_output", "bptt_compiled"): {(64, t): 1.0 * t for t in (64, 256, 1024, 4096)},
        ("single_output", "checkpointed_bptt"): {(64, t): 2.0 * t for t in (64, 256, 1024, 4096)},
        ("elman", "bptt_compiled"): {(64, t): 3.0 * t for t in (64, 256, 1024, 4096)},
    }
    rows = [r for batch in (1, 2, 4) for r in grid_rows((1,), times, batch=batch)]
    fig = regime.figure(regime.table(tidy.load(pd.DataFrame(rows))))  # 3 panels across
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 3
    for panel in panels:
        assert any("single_output" in t.get_text() for t in panel.texts)
        boxes = sorted((t.get_window_extent(renderer) for t in panel.texts), key=lambda b: b.x0)
        assert len(boxes) == 4
        assert all(a.x1 <= b.x0 for a, b in zip(boxes, boxes[1:])), [(b.x0, b.x1) for b in boxes]


def test_many_settings_wrap_at_three_panels_across():
    rows = []
    for batch in (1, 2, 4, 8):
        rows += grid_rows((1,), batch=batch)
    fig = regime.figure(regime.table(tidy.load(pd.DataFrame(rows))))
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 4
    assert len({round(ax.get_position().y0, 3) for ax in visible}) == 2  # two rows of panels
    assert not _inside(fig)


def test_the_report_writes_the_regime_table_and_map(tmp_path):
    report = build_report(pd.DataFrame(grid_rows()), tmp_path / "r", formats=("html", "md"))
    assert (tmp_path / "r" / "plots" / "regime_map.png").is_file()
    csv = pd.read_csv(tmp_path / "r" / "tables" / "regime.csv")
    assert set(csv["winner"]) == {"bptt_compiled", "deer", "teacher_forcing"}
    page = (tmp_path / "r" / "index.html").read_text()
    assert "regime_map.png" in page and "Regime map" in page
    assert "at H=8, τ 256 → 1024, bptt_compiled → deer" in page  # a crossover, in words
    assert report.regime is not None and len(report.regime) == 8
