"""The report layer on synthetic rows with known laws (time = a·τ^k, memory = b·τ^k)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import report_synthetic as rs
from helpers import CHROMIUM, NO_CHROMIUM, images_loaded

from rnnbench import cli, stats
from rnnbench.errors import UsageError
from rnnbench.report import analyse, build_report, claims, plots, scaling_figure, tables, tidy
from rnnbench.report.escape import md_text
from rnnbench.results import store

# its module fixture is costly: one process runs the whole module (make test: loadgroup)
pytestmark = pytest.mark.xdist_group("report")


ENV_MARK = rs.ENV["cpu_model"]


@pytest.fixture(scope="session")  # once per test process: xdist may interleave modules
def built(tmp_path_factory):
    """The full synthetic sweep, reported once (plots included) for the whole module."""
    return build_report(rs.frame(), tmp_path_factory.mktemp("report") / "out")


def verdicts(frame: pd.DataFrame) -> dict[str, str]:
    return {c.key: c.verdict for c in claims.evaluate(analyse(tidy.load(frame)))}


# --------------------------------------------------------------------------- fits


@pytest.mark.parametrize(
    "df, expected",
    [(1, 12.7062), (2, 4.3027), (5, 2.5706), (10, 2.2281), (30, 2.0423), (1000, 1.9623)],
)
def test_t_quantile_matches_the_printed_table(df, expected):
    assert stats.t_quantile(0.975, df) == pytest.approx(expected, abs=1e-4)
    assert stats.t_quantile(0.025, df) == pytest.approx(-expected, abs=1e-4)


def test_fitted_exponents_recover_the_known_laws(built):
    """Every exponent within ±0.05 of its law; all intervals together contain the truth.

    Nine 95% intervals at once miss somewhere about a third of the time, so the
    joint check widens each to the Bonferroni level (familywise 95%); the 95%
    level itself is checked by simulation in the next test.
    """
    names = {"step_ms_median": "time", "saved_bytes": "saved", "peak_bytes": "peak"}
    fits = built.fits
    assert len(fits) == 3 * len(rs.LAWS)
    for _, f in fits.iterrows():
        truth = rs.LAWS[(f["model"], f["strategy_label"])][names[f["measure"]]][1]
        assert abs(f["exponent"] - truth) <= 0.05, (f["series"], f["measure"], f["exponent"])
        assert f["n_points"] == len(rs.TAUS) * len(rs.SEEDS)
        df = f["n_points"] - 2
        half = (f["ci_high"] - f["ci_low"]) / 2
        widen = stats.t_quantile(1 - 0.05 / (2 * len(fits)), df) / stats.t_quantile(0.975, df)
        assert abs(f["exponent"] - truth) <= half * widen, (f["series"], f["measure"])
        assert 0 < half < 0.05


def test_interval_covers_the_truth_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    tau = np.repeat(np.array(rs.TAUS, dtype=float), 2)
    hits = []
    for _ in range(600):
        y = 3.0 * tau**0.5 * np.exp(rng.normal(0.0, 0.1, tau.size))
        f = stats.power_fit(tau, y)
        hits.append(f.ci_low <= 0.5 <= f.ci_high)
    assert 0.92 <= np.mean(hits) <= 0.98


def test_power_fit_needs_two_distinct_taus():
    assert stats.power_fit([64, 64, 64], [1.0, 1.1, 0.9]) is None
    two = stats.power_fit([16, 32], [1.0, 2.0])
    assert two.exponent == pytest.approx(1.0) and np.isnan(two.ci_low)


def test_speedup_and_crossover_follow_the_laws(built):
    a_b, k_b = rs.LAWS[("elman", "bptt")]["time"]
    a_f, k_f = rs.LAWS[("elman", "bptt_fused")]["time"]
    a_t, k_t = rs.LAWS[("jordan", "teacher_forcing")]["time"]
    text_b1 = (built.speedup["task_label"] == "text") & (built.speedup["batch"] == 1)
    big = built.speedup[text_b1 & (built.speedup["tau"] == 1024)].iloc[0]
    assert big["speedup_vs_bptt"] == pytest.approx(a_b * 1024**k_b / (a_t * 1024**k_t), rel=0.1)
    c = built.crossover[built.crossover["batch"] == 1].set_index("baseline")
    fused_truth = (a_t / a_f) ** (1 / (k_f - k_t))  # 39 steps
    assert 32 < c.loc["bptt_fused", "tau_cross"] < 64
    assert c.loc["bptt_fused", "tau_cross_fit"] == pytest.approx(fused_truth, rel=0.15)
    assert c.loc["bptt", "finding"] == "teacher forcing is faster at every τ measured"
    assert np.isnan(c.loc["bptt", "tau_cross"])


def test_seeds_are_aggregated_as_mean_and_spread(built):
    timing = built.summary[
        (built.summary["train_steps"] == 0)
        & (built.summary["workers"] == 1)
        & (built.summary["split"] == "none")
    ]
    assert set(timing["n_seeds"]) == {len(rs.SEEDS)}
    ok = built.rows[built.rows["status"] == "ok"]
    one = ok[
        (ok["model"] == "elman")
        & (ok["strategy"] == "bptt")
        & (ok["tau"] == 64)
        & (ok["train_steps"] == 0)
        & (ok["workers"] == 1)
        & (ok["split"] == "none")
    ]["step_ms_median"]
    row = timing[(timing["strategy_label"] == "bptt") & (timing["tau"] == 64)].iloc[0]
    assert row["step_ms_median_mean"] == pytest.approx(one.mean())
    assert row["step_ms_median_sd"] == pytest.approx(one.std(ddof=1))
    shown = built.tables()[3][4]
    assert shown["step time (ms)"].str.contains(" ± ").any()


# --------------------------------------------------------------------------- claims

EXPECTED = {
    "bptt_time_linear": "holds",
    "bptt_not_parallel": "holds",
    "bptt_memory_linear": "holds",
    "tf_depth_one": "by construction",
    "tf_parallel_workers": "holds",
    "tf_faster_one_device": "holds",
    "tf_speedup_not_overhead": "holds",
    "parallel_depth": "holds",
    "deer_depth": "holds",
    "quasi_deer_depth": "holds",
    "deer_faster": "does not hold",
    "jordan_less_powerful": "holds",
    "jordan_fine_parity": "holds",
    "exposure_bias": "holds",
    "belief_jordan_better": "does not hold",
}


def test_claims_on_chapter_like_data():
    got = claims.table(claims.evaluate(_frame()))
    assert dict(zip(got["key"], got["verdict"])) == EXPECTED
    assert (got["cells"] > 0).all()
    assert got["evidence"].str.len().gt(0).all()


def _laws(override):
    laws = {k: dict(v) for k, v in rs.LAWS.items()}
    for (model, strategy, measure), law in override.items():
        laws[(model, strategy)][measure] = law
    return laws


def _trained(**acc_loss):
    trained = dict(rs.TRAINED)
    for key, value in acc_loss.items():
        task, model = key.rsplit("__", 1)
        trained[(task, model)] = value
    return trained


def _frame(
    laws=rs.LAWS,
    trained=rs.TRAINED,
    gap=0.3,
    mismatch=0.3,
    tf=(1.0, 1.8, 3.2),
    el=(1.0, 0.97, 0.95),
    **claims_rows,
):
    return pd.DataFrame(
        rs.timing_rows(laws=laws)
        + rs.trained_rows(trained, exposure_gap=gap)
        + rs.worker_rows(tf, el, laws=laws)
        + rs.claims_rows(mismatch=mismatch, **claims_rows)
    )


# (claim, change, claims that follow from the same change)
FLIPS = [
    ("bptt_time_linear", dict(laws=_laws({("elman", "bptt_compiled", "time"): (1e-4, 2.0)})), ()),
    ("bptt_memory_linear", dict(laws=_laws({("elman", "bptt", "saved"): (4096.0, 0.5)})), ()),
    ("bptt_not_parallel", dict(chain=1.9), ()),
    ("tf_parallel_workers", dict(tf_cores=0.9, tf_workers=0.95), ()),
    # on 2 cores teacher forcing slower than the compiled loop: not faster, and what was
    # left of its speedup against the framework loop was overhead
    ("tf_faster_one_device", dict(vs_compiled=0.8), ("tf_speedup_not_overhead",)),
    ("jordan_less_powerful", dict(trained=_trained(delayed_recall__jordan=(1.0, 0.2))), ()),
    ("jordan_fine_parity", dict(trained=_trained(running_parity__jordan=(0.55, 0.7))), ()),
    ("exposure_bias", dict(mismatch=-0.3), ()),
]


@pytest.mark.parametrize("key, change, follows", FLIPS, ids=[k for k, *_ in FLIPS])
def test_a_verdict_flips_when_the_data_flips(key, change, follows):
    got = verdicts(_frame(**change))
    assert got[key] == "does not hold"
    others = {
        k: v
        for k, v in got.items()
        if k != key and k != "belief_jordan_better" and k not in follows
    }
    assert others == {k: EXPECTED[k] for k in others}, others


def test_belief_holds_only_when_jordan_wins_every_task():
    jordan_wins = {(task, "jordan"): (0.99, 0.01) for task, _ in rs.TRAINED}
    assert (
        verdicts(_frame(trained={**rs.TRAINED, **jordan_wins}, gap=0.0))["belief_jordan_better"]
        == "holds"
    )
    one_loss = {**rs.TRAINED, **jordan_wins, ("text", "jordan"): (0.2, 3.0)}
    assert verdicts(_frame(trained=one_loss, gap=0.0))["belief_jordan_better"] == "does not hold"


def test_not_measured_when_the_rows_are_missing_or_untrained():
    timing_only = verdicts(pd.DataFrame(rs.timing_rows()))
    for key in (
        "bptt_not_parallel",
        "tf_parallel_workers",
        "jordan_less_powerful",
        "jordan_fine_parity",
        "exposure_bias",
        "belief_jordan_better",
        "deer_depth",
        "deer_faster",
        "tf_speedup_not_overhead",
    ):
        assert timing_only[key] == "not measured", key
    # Elman at chance on delayed recall: the experiment did not train enough to decide.
    untrained = rs.capacity_rows({("elman", "bptt"): 0.13, ("jordan", "free_running"): 0.12})
    c = claims.evaluate(pd.DataFrame(untrained))[
        [r.key for r in claims.RULES].index("jordan_less_powerful")
    ]
    assert c.verdict == "not measured" and "did not learn" in c.evidence
    # A fit whose interval is too wide decides nothing.
    noisy = pd.DataFrame(rs.law_rows(a=1.0, b=0.01, taus=(16, 32, 64, 128), noise=0.5))
    assert verdicts(noisy)["bptt_time_linear"] == "not measured"


# --------------------------------------------------------------------------- plots


def tiny_rows() -> list[dict]:
    """Elman + bptt at three τ (two plots to draw) and the two failures."""
    laws = {("elman", "bptt"): rs.LAWS[("elman", "bptt")]}
    return rs.timing_rows(laws=laws, taus=(16, 64, 256), seeds=(0,)) + rs.failed_rows()


AXES = {  # name -> (x label, y label fragment, x scale, y scale) of the first axes
    "time_vs_tau": ("sequence length τ (steps)", "step time (ms)", "log", "log"),
    "memory_vs_tau": ("sequence length τ (steps)", "(MiB)", "log", "log"),
    "speedup_vs_tau": ("sequence length τ (steps)", "speedup", "log", "log"),
    "speedup_vs_workers": ("workers", "speedup over one worker", "log", "log"),
    "loss_curves": ("training step", "loss (nats/token)", "linear", "linear"),
    "exposure_bias": (
        "position in the sequence t (steps)",
        "loss (nats/token)",
        "linear",
        "linear",
    ),
    "capacity": ("model", "task", "linear", "linear"),
}


# The parallel-in-time plots, drawn from their own rows (the sweep above has none).
DEER_AXES = {
    "deer_iterations": ("spectral radius ρ of W at init", "Newton iterations", "linear", "log"),
    "time_vs_hidden": ("hidden size H", "step time (ms)", "log", "log"),
}


def deer_plot_rows() -> pd.DataFrame:
    rows = []
    for rho in (0.5, 0.9, 1.5, 3.0):
        rows += rs.deer_rows(
            iterations=lambda tau, rho=rho: int(4 + 40 * max(rho - 0.8, 0)),
            converged=rho < 2,
            rho=rho,
            taus=(1024, 16384),
        )
    for hidden in (8, 32, 128):
        for strategy, ms in (("bptt", 2.0), ("deer", 0.05), ("scan_bptt", 1.0)):
            rows.append(
                rs.row(
                    model="elman",
                    strategy=strategy,
                    tau=1024,
                    hidden=hidden,
                    step_ms_median=ms * hidden,
                )
            )
        rows.append(
            rs.row(
                model="jordan",
                strategy="teacher_forcing",
                tau=1024,
                hidden=hidden,
                step_ms_median=0.1 * hidden,
            )
        )
    return tidy.load(pd.DataFrame(rows))


@pytest.mark.parametrize("name", sorted(DEER_AXES))
def test_parallel_in_time_plots_are_drawn_only_from_their_rows(name):
    fig = getattr(plots, name)(deer_plot_rows())
    xlabel, ylabel, xscale, yscale = DEER_AXES[name]
    ax = fig.axes[0]
    assert ax.get_xlabel() == xlabel and ylabel in ax.get_ylabel()
    assert (ax.get_xscale(), ax.get_yscale()) == (xscale, yscale)
    assert fig.get_suptitle() and len(fig.legends) == 1
    if name == "time_vs_hidden":
        assert len(fig.legends[0].get_texts()) == 4  # bptt, deer, scan_bptt, teacher forcing
    else:  # not-converged runs are marked
        assert any(ln.get_marker() == "x" for ln in ax.get_lines())
    assert getattr(plots, name)(tidy.load(pd.DataFrame(rs.timing_rows()))) is None


def test_every_plot_is_written_as_png_and_svg(built):
    # the scaling model's and the regime map have their own tests
    assert set(built.figures) - {scaling_figure.NAME, "regime_map"} == set(plots.PLOTS)
    assert set(plots.PLOTS) == set(AXES) | set(DEER_AXES)
    for name in AXES:
        for ext in ("png", "svg"):
            path = built.out_dir / "plots" / f"{name}.{ext}"
            assert path.stat().st_size > 5000, path
        assert (built.out_dir / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("name", sorted(AXES))
def test_each_figure_has_its_labels_and_scales(built, name):
    fig = built.figures[name]
    xlabel, ylabel, xscale, yscale = AXES[name]
    ax = fig.axes[0]
    assert ax.get_xlabel() == xlabel
    assert ylabel in ax.get_ylabel()
    assert (ax.get_xscale(), ax.get_yscale()) == (xscale, yscale)
    assert fig.get_suptitle()
    assert ax.has_data()


def test_figures_carry_fits_reference_lines_and_both_loss_axes(built):
    time_ax = built.figures["time_vs_tau"].axes[0]
    labels = [t.get_text() for t in built.figures["time_vs_tau"].legends[0].get_texts()]
    assert "elman + bptt" in labels
    assert "k=1.00" in [t.get_text() for t in time_ax.texts]  # at the fitted line's end
    dashed = [ln for ln in time_ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == len(rs.LAWS)  # one fitted line per model + strategy
    speed_ax = built.figures["speedup_vs_tau"].axes[0]
    assert any(list(ln.get_ydata()) == [1.0, 1.0] for ln in speed_ax.get_lines())
    workers_ax = built.figures["speedup_vs_workers"].axes[0]
    ideal = [ln for ln in workers_ax.get_lines() if ln.get_label().startswith("ideal")]
    assert list(ideal[0].get_xdata()) == list(ideal[0].get_ydata()) == [1, 4]
    mem = built.figures["memory_vs_tau"]
    assert [a.get_ylabel() for a in mem.axes[:2]] == [
        "saved for backward (MiB)",
        "peak memory (MiB)",
    ]
    curves = built.figures["loss_curves"].axes
    assert {a.get_xlabel() for a in curves} == {"training step", "wall-clock time (s)"}


def test_a_plot_without_rows_is_not_drawn():
    rows = tidy.load(pd.DataFrame(tiny_rows()))
    ev = analyse(rows)
    drawn = {
        name: fig is not None for name, fig in plots.figures(rows, ev.speedup, ev.workers).items()
    }
    assert drawn == {name: name in ("time_vs_tau", "memory_vs_tau") for name in plots.PLOTS}
    # Trained cells at a single τ give no line to draw against τ.
    single = tidy.load(pd.DataFrame(rs.trained_rows(seeds=(0,))))
    assert plots.time_vs_tau(single) is None and plots.memory_vs_tau(single) is None


# --------------------------------------------------------------------------- pages


def test_pages_are_written_and_headed_by_the_environment(built):
    out = built.out_dir
    pages = [out / "index.html", out / "report.md", out / "claims.md"]
    pages += sorted((out / "tables").glob("*.md")) + sorted((out / "tables").glob("*.html"))
    assert len(pages) == 3 + 2 * len(built.tables())
    for page in pages:
        text = page.read_text()
        # under the title, what the rows ran on; the full environment at the end
        top = text[text.find("<body>") + 1 :][:1500]  # HTML: after the style sheet
        assert ENV_MARK in top, page
        assert "torch" in text[text.rindex("Environment") :], page
    for name in ("fits", "crossover", "speedup", "summary", "workers", "failed", "claims"):
        assert (out / "tables" / f"{name}.csv").is_file()
    index = (out / "index.html").read_text()
    assert "http://" not in index and "https://" not in index and "<script" not in index
    for name in AXES:
        assert f'src="plots/{name}.png"' in index


def test_claims_page_shows_every_claim_with_its_verdict(built):
    text = (built.out_dir / "claims.md").read_text()
    for _, c in built.claims.iterrows():
        assert md_text(c["claim"]) in text  # as text: < > & escaped
        assert md_text(c["gate"]) in text  # every rule's evidence gate is printed beside it
    counts = built.claims["verdict"].value_counts()
    assert text.count("✅ holds") == counts.get("holds", 0) > 0
    assert text.count("❌ does not hold") == counts.get("does not hold", 0)
    assert text.count("📐 by construction (not measured)") == 1
    assert claims.METHOD in text
    csv = pd.read_csv(built.out_dir / "tables" / "claims.csv")
    assert list(csv["verdict"]) == list(built.claims["verdict"])


def test_failed_rows_are_reported_not_dropped(built):
    failed = built.failed
    assert sorted(failed["status"]) == ["crashed", "oom"]
    assert "RuntimeError: out of memory" in set(failed["error"])
    for page in ("index.html", "report.md"):
        text = (built.out_dir / page).read_text()
        assert "out of memory" in text and "worker died unexpectedly" in text
    assert "Failed rows (2)" in (built.out_dir / "index.html").read_text()


# --------------------------------------------------------------------------- loading, CLI


def small_results(folder: Path, rows=None) -> Path:
    """A results folder written by rnnbench.results.store, as a sweep leaves it."""
    for row in rows or tiny_rows():
        store.write_row(folder, row)
    return folder


def test_store_folder_and_parquet_give_the_same_rows(tmp_path):
    small_results(
        tmp_path / "res",
        rs.timing_rows(taus=(16, 64, 256), seeds=(0,))
        + rs.failed_rows()
        + rs.trained_rows(seeds=(0,))[:2],
    )
    from_json = tidy.load(tmp_path / "res")
    store.consolidate(tmp_path / "res")
    shutil.rmtree(tmp_path / "res" / "rows")
    from_parquet = tidy.load(tmp_path / "res")
    assert len(from_json) == len(from_parquet) == len(rs.LAWS) * 3 + 2 + 2
    key = ["cell_id"]
    a, b = from_json.sort_values(key), from_parquet.sort_values(key)
    assert list(a["train_curve"]) == list(b["train_curve"])
    assert list(a["task_label"]) == list(b["task_label"])
    assert "delayed_recall(k=5, symbols=8)" in set(a["task_label"])


def run_cli(*args, capsys):
    code = cli.main(["report", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_writes_one_standalone_page(tmp_path, capsys):
    res = small_results(tmp_path / "res")
    code, out, err = run_cli(
        res, "--out", tmp_path / "rep", "--format", "html", "--embed-images", capsys=capsys
    )
    assert code == 0, err
    assert "2 not ok" in out and "claims:" in out
    index = (tmp_path / "rep" / "index.html").read_text()
    assert index.count("data:image/png;base64,") == 2  # time and memory: all there is to draw
    assert 'src="plots/' not in index
    assert not (tmp_path / "rep" / "report.md").exists()


@pytest.mark.parametrize(
    "setup, messages",
    [
        (lambda d: None, ["not a results folder"]),
        (lambda d: (d / "notes.txt").write_text("hello"), ["not a results folder"]),
        # a foreign JSON file under rows/ is a broken row file: named on its own line, skipped
        (
            lambda d: (
                (d / "rows").mkdir(),
                (d / "rows" / "x.json").write_text(json.dumps({"a": 1})),
            ),
            ["broken row file(s) skipped: x.json", "no result rows to report"],
        ),
    ],
)
def test_empty_or_foreign_folder_is_one_clear_error(tmp_path, capsys, setup, messages):
    setup(tmp_path)
    code, out, err = run_cli(tmp_path, "--out", tmp_path / "rep", capsys=capsys)
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == len(messages) and "Traceback" not in err
    assert all(m in line for m, line in zip(messages, lines))
    assert not (tmp_path / "rep").exists()


def test_missing_folder_and_bad_format_are_usage_errors(tmp_path, capsys):
    code, _, err = run_cli(tmp_path / "nope", capsys=capsys)
    assert code == 2 and "no such results folder" in err
    res = small_results(tmp_path / "res")
    code, _, err = run_cli(res, "--format", "pdf", capsys=capsys)
    assert code == 2 and "--format" in err and "html, md" in err
    with pytest.raises(UsageError):
        build_report(pd.DataFrame())


# --------------------------------------------------------------------------- browser


@pytest.mark.chromium
@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_index_renders_in_chromium_with_every_image(built):
    # every plot that was drawn (the DEER plots only where their rows exist) is on the page
    n = len(list((built.out_dir / "plots").glob("*.png")))
    assert n >= 7
    assert images_loaded(built.out_dir / "index.html") == f"{n}/{n}"
    # The probe does see a broken image: move one away and it reports it.
    png = built.out_dir / "plots" / "capacity.png"
    png.rename(png.with_suffix(".bak"))
    try:
        assert images_loaded(built.out_dir / "index.html") == f"{n - 1}/{n}"
    finally:
        png.with_suffix(".bak").rename(png)


def test_exposure_plot_uses_trained_rows_only():
    untrained = rs.row(
        model="jordan",
        strategy="teacher_forcing",
        tau=1024,
        task="text",
        horizon_t=[512, 1024],
        horizon_loss_tf=[5.0, 5.0],
        horizon_loss_free=[5.0, 5.0],
    )
    rows = tidy.load(pd.DataFrame(rs.trained_rows(seeds=(0,)) + [untrained]))
    titles = [ax.get_title() for ax in plots.exposure_bias(rows).axes]
    assert titles and all(t.endswith("τ=64") for t in titles)


# -------------------------------------------------------------------- claims on worker speed-ups


def _claims_of(frame: pd.DataFrame) -> dict:
    return {c.key: c for c in claims.evaluate(analyse(tidy.load(frame)))}


@pytest.mark.parametrize(
    "key, model, strategy, point",
    [
        ("tf_parallel_workers", "jordan", "teacher_forcing", "holds"),
        ("bptt_not_parallel", "elman", "deer", "does not hold"),
    ],
)
def test_worker_verdicts_decide_on_the_interval_not_two_medians(key, model, strategy, point):
    """Speedup 1.3× (past 1.1×); with the replicates spread over ×/÷ 1.8 the interval
    over them straddles 1.1×: not measured. Narrow replicates decide again; one cell's
    spread is never the interval (one seed, unpaired: below the gate)."""

    def rows(spread):
        control = (
            []
            if model == "jordan"
            else rs.paired_rows(
                "jordan",
                "teacher_forcing",
                2.0,
                {"workers": 1},
                tau=4096,
                workers=2,
                split="time",
                harness="group",
            )
        )
        return control + rs.paired_rows(
            model,
            strategy,
            1.3,
            {"workers": 1},
            spread=spread,
            tau=4096,
            workers=2,
            split="time",
            harness="group",
        )

    wide = _claims_of(pd.DataFrame(rows(0.6)))[key]
    assert wide.verdict == "not measured"
    assert "1.3× [" in wide.evidence
    assert _claims_of(pd.DataFrame(rows(0.01)))[key].verdict == point
    one_seed = _claims_of(pd.DataFrame(rs.worker_rows(spread=0.01)))["tf_parallel_workers"]
    assert one_seed.verdict == "not measured" and "gate 3 a side" in one_seed.evidence


def test_worker_speedup_interval_comes_from_the_quartiles():
    w = analyse(tidy.load(pd.DataFrame(rs.worker_rows(spread=0.2)))).workers
    row = w[(w["model"] == "jordan") & (w["workers"] == 4)].iloc[0]
    assert row["speedup"] == pytest.approx(3.2)
    # samples evenly over ±20%: quartiles at ±10%
    assert row["speedup_lo"] == pytest.approx(3.2 * 0.9 / 1.1)
    assert row["speedup_hi"] == pytest.approx(3.2 * 1.1 / 0.9)


def test_workers_pair_only_with_a_baseline_from_the_same_harness():
    # The group-harness 1-worker row is 2× slower than the single-process one: the speedup
    # over it (1.8/0.5 = 3.6 on 2 workers) differs from one over the single-process row.
    rows = pd.DataFrame(rs.timing_rows() + rs.worker_rows(tf_speedups=(0.5, 1.8, 3.2)))
    w = analyse(tidy.load(rows)).workers
    assert set(w["split"]) == {"time", "batch"}  # single-process rows never enter
    two = w[(w["model"] == "jordan") & (w["workers"] == 2)].iloc[0]
    assert two["speedup"] == pytest.approx(1.8 / 0.5)
    # No 1-worker baseline in the group harness: not measured, not the single-process rows.
    alone = tidy.load(pd.DataFrame(rs.timing_rows() + rs.worker_rows(baseline=False)))
    ev = analyse(alone)
    assert ev.workers["speedup"].isna().all() and len(ev.workers) == 4
    got = {c.key: c for c in claims.evaluate(ev)}
    for key in ("tf_parallel_workers", "bptt_not_parallel"):
        assert got[key].verdict == "not measured"
    assert "no paired rows and no baseline cell" in got["tf_parallel_workers"].evidence
    assert plots.speedup_vs_workers(ev.workers) is None


def test_missing_split_and_harness_mean_single_process_auto():
    rows = tidy.load(pd.DataFrame(tiny_rows()))
    assert set(rows["split"]) == {"none"} and set(rows["harness"]) == {"auto"}


def test_one_seed_shows_no_spread_rather_than_plus_minus_zero():
    report = build_report(pd.DataFrame(rs.timing_rows(seeds=(0,))), figures=False)
    sp = report.speedup
    assert sp["speedup_vs_bptt"].notna().all()
    assert sp["speedup_vs_bptt_sd"].isna().all() and sp["tf_sd"].isna().all()
    for _, _, _, _, shown in report.tables():
        text = shown.astype(str).to_string()
        assert "± 0" not in text and "nan" not in text.lower().replace("nans", "")
    assert not tables.display(sp).astype(str).apply(lambda c: c.str.contains("±")).any().any()
    # Two seeds or more: the spread is shown.
    three = build_report(pd.DataFrame(rs.timing_rows()), figures=False)
    assert three.speedup["speedup_vs_bptt_sd"].gt(0).all()
    assert tables.display(three.speedup)["speedup vs bptt (×)"].str.contains(" ± ").all()


def test_tf_faster_decides_on_the_interval_at_the_largest_tau():
    def on_two_cores(rows):  # one thread decides nothing
        return [{**r, "threads": 2} for r in rows]

    rows = on_two_cores(rs.timing_rows())
    # Means over seeds: teacher forcing faster than fused BPTT at the largest τ; but its
    # three seeds spread over a factor 100, so the interval over seeds straddles 1×.
    for r in rows:
        if r["strategy"] == "teacher_forcing" and r["tau"] == max(rs.TAUS):
            r["step_ms_median"] *= (0.1, 1.0, 10.0)[r["seed"]] / 3
    c = _claims_of(pd.DataFrame(rows))["tf_faster_one_device"]
    assert c.verdict == "not measured"
    two = pd.DataFrame(on_two_cores(rs.timing_rows()))
    assert _claims_of(two)["tf_faster_one_device"].verdict == "holds"
    assert _claims_of(pd.DataFrame(rs.timing_rows()))["tf_faster_one_device"].verdict == (
        "not measured"
    )  # the same rows on one thread


def test_depth_one_is_labelled_by_construction_not_measured(built):
    c = built.claims.set_index("key").loc["tf_depth_one"]
    assert c["verdict"] == "by construction"
    assert c["evidence"].startswith("by construction (from the strategy registry), not measured")
    index = (built.out_dir / "index.html").read_text()
    assert '<span class="verdict by-construction">by construction (not measured)' in index
    # The registry saying otherwise still shows.
    rows = rs.timing_rows()
    for r in rows:
        if r["strategy"] == "teacher_forcing":
            r["depth"] = r["tau"]
    assert verdicts(pd.DataFrame(rows))["tf_depth_one"] == "does not hold"


def test_plot_panels_share_one_decoration(built):
    for name in (
        "time_vs_tau",
        "speedup_vs_tau",
        "speedup_vs_workers",
        "loss_curves",
        "exposure_bias",
    ):
        assert len(built.figures[name].legends) == 1, name  # one legend below the panels
        for ax in built.figures[name].axes:
            assert any(g.get_visible() for g in ax.xaxis.get_gridlines()), name


def test_untrained_rows_with_nan_losses_are_ignored_quietly(tmp_path):
    trained = rs.trained_rows()
    for r in trained[::4]:  # some trained cells lost their evaluation
        r.update(
            loss_tf=None,
            loss_free=None,
            acc_tf=None,
            acc_free=None,
            horizon_loss_free=[None] * len(r["horizon_t"]),
        )
    for r in trained:  # and one series has no free-running loss at any position
        if r["model"] == "jordan" and r["task"] == "running_parity":
            r["horizon_loss_free"] = [float("nan")] * len(r["horizon_t"])
    frame = pd.DataFrame(rs.timing_rows() + trained + rs.worker_rows() + rs.claims_rows())
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = build_report(frame, tmp_path / "out", formats=("md",))
    assert not report.claims["evidence"].str.contains(r"\bnan\b", case=False).any()
    assert report.claims.set_index("key").loc["exposure_bias", "verdict"] == "holds"
    text = (tmp_path / "out" / "claims.md").read_text()
    assert " nan" not in text.lower()
