"""What a reader sees: tick labels, legends clear of the data, integer steps, no line
through two points, noisy timings flagged, empty columns explained, GPU 'none' on CPU."""

from __future__ import annotations

import pandas as pd
import pytest
import report_synthetic as rs

from rnnbench.report import env, plots, tables, tidy

TWO_LAWS = {k: v for k, v in rs.LAWS.items() if k[1] != "bptt_fused"}


def rows(**kw) -> pd.DataFrame:
    return tidy.load(pd.DataFrame(rs.timing_rows(laws=TWO_LAWS, **kw)))


def _labels(ax, axis="y") -> list[str]:
    ax.get_figure().canvas.draw()
    ticks = getattr(ax, f"get_{axis}ticklabels")
    lim = getattr(ax, f"get_{axis}lim")()
    lo, hi = min(lim), max(lim)
    return [
        t.get_text()
        for t in ticks(which="both")
        if t.get_text() and lo <= t.get_position()[axis == "y"] <= hi
    ]


def test_summary_counts_noisy_rows_as_torch_benchmark_warns():
    df = rows(taus=(16, 32), seeds=(0, 1, 2))
    first = df.index[(df["tau"] == 16) & (df["strategy"] == "bptt")][0]
    df.loc[first, "step_ms_iqr"] = 0.2 * df.loc[first, "step_ms_median"]
    table = tables.summary(df)
    flags = table.set_index(["strategy_label", "tau"])["noisy"]
    assert flags[("bptt", 16)] == 1
    assert flags.drop(("bptt", 16)).eq(0).all()  # IQR 5% of the median: not noisy


def test_a_narrow_log_axis_has_several_labelled_ticks():
    fig = plots.time_vs_tau(rows(taus=(16, 32, 64), noise=0.0))
    ax = fig.axes[0]
    ax.set_ylim(2.0, 9.0)  # less than a decade: no power of ten inside
    labels = _labels(ax)
    assert len(labels) >= 3 and all(float(t) > 0 for t in labels)


def test_legend_sits_below_the_panel_not_on_the_data():
    fig = plots.time_vs_tau(rows(taus=(16, 32, 64)))
    fig.canvas.draw()
    (legend,) = fig.legends  # one legend for the figure, below every panel
    box = legend.get_window_extent()
    assert all(box.y1 < ax.get_window_extent().y0 for ax in fig.axes)
    assert box.y0 > 0  # inside the figure


@pytest.mark.parametrize("taus, lines", [((16, 32), 0), ((16, 32, 64), len(TWO_LAWS))])
def test_a_fitted_line_needs_three_distinct_taus(taus, lines):
    ax = plots.time_vs_tau(rows(taus=taus)).axes[0]
    assert len([ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]) == lines


def test_a_noisy_point_is_drawn_hollow():
    df = rows(taus=(16, 32, 64), seeds=(0,))
    df.loc[df["tau"] == 32, "step_ms_iqr"] = df["step_ms_median"] * 0.5
    fig = plots.time_vs_tau(df)

    def overlays(ax):  # the hollow markers drawn over a series' noisy points
        return [
            ln
            for ln in ax.get_lines()
            if ln.get_linestyle() == "None"
            and ln.get_markerfacecolor() == "white"
            and len(ln.get_xdata())
        ]

    hollow = overlays(fig.axes[0])
    assert sorted(x for ln in hollow for x in ln.get_xdata()) == [32] * len(TWO_LAWS)
    assert any("noisy" in t.get_text() for t in fig.legends[0].get_texts())
    quiet = plots.time_vs_tau(rows(taus=(16, 32, 64), seeds=(0,)))
    assert not overlays(quiet.axes[0])
    assert not any("noisy" in t.get_text() for t in quiet.legends[0].get_texts())


def test_loss_curve_steps_are_whole_numbers():
    trained = pd.DataFrame(rs.trained_rows(seeds=(0,)))
    trained["train_curve"] = [[[s, 0.1 * s, 2.0 - 0.3 * s] for s in range(4)]] * len(trained)
    ax = plots.loss_curves(tidy.load(trained)).axes[0]
    ticks = [float(t) for t in _labels(ax, "x")]
    assert ticks and all(t == int(t) for t in ticks)


def test_empty_columns_are_named_under_the_table():
    shown = pd.DataFrame(
        {
            "model": ["elman", "jordan"],
            "loss TF (nats/token)": ["", ""],
            "step time (ms)": ["1.5", "2"],
        }
    )
    note = tables.blank_note(shown)
    assert "Empty columns" in note and "loss TF (nats/token)" in note and "train_steps" in note
    assert "step time" not in note
    assert tables.blank_note(shown.drop(columns=["loss TF (nats/token)"])) == ""


def test_gpu_reads_none_on_a_cpu_only_run_and_not_recorded_on_cuda():
    cpu = rows(taus=(16,), seeds=(0,))
    assert env.environment(cpu)["GPU"] == "none (CPU only)"
    cuda = cpu.assign(device="cuda")
    assert env.environment(cuda)["GPU"] == "not recorded"
    named = cuda.assign(gpu_name="NVIDIA H200")
    assert env.environment(named)["GPU"] == "NVIDIA H200"


# ---------------------------------------------------------------- pandas' future warnings


def test_reading_rows_that_lack_keys_raises_no_pandas_warning(tmp_path):
    """Rows written before a key existed (or a frame with only the required keys) read
    with pandas' deprecation and future warnings as errors: a text column that is all
    null, or absent, is filled as text, never a float column filled with a string."""
    import json
    import warnings

    minimal = [
        {"cell_id": f"{i:016x}", "model": "elman", "strategy": "bptt", "tau": 8 * (i + 1)}
        | {"status": "ok", "step_ms_median": 1.0 + i}
        for i in range(3)
    ]
    (tmp_path / "rows").mkdir()
    for r in minimal:
        (tmp_path / "rows" / f"{r['cell_id']}.json").write_text(json.dumps(r))
    future = (pd.errors.Pandas4Warning, pd.errors.Pandas5Warning, FutureWarning)
    with warnings.catch_warnings():
        for category in future:
            warnings.simplefilter("error", category)
        for source in (pd.DataFrame(minimal), tmp_path):
            df = tidy.load(source)
            assert list(df["device"]) == ["cpu"] * 3 and list(df["task_label"]) == ["?"] * 3
            assert list(df["split"]) == ["none"] * 3 and list(df["harness"]) == ["auto"] * 3
            assert list(df["baseline"]) == [""] * 3
        # the opposite case: the filter does turn pandas' warning into an error
        with pytest.raises(future):
            pd.Series([float("nan")]).fillna("cpu")
