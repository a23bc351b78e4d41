"""The scaling model (rnnbench.report.scaling) on synthetic rows with known laws, its
figure and tables in the report, and the worker group's collective timings (real Ray)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import report_synthetic as rs

from rnnbench.report import build_report, scaling_figure, tidy
from rnnbench.report import scaling as sc

SIZES = [8.0, 4096.0, 65536.0, 1048576.0]


def collective_fields(n: int, alpha: float, beta: float) -> dict:
    """A group row's collective timings as the ring model says a network (alpha, beta)
    gives them over n ranks."""
    return {
        "coll_bytes": SIZES,
        "allreduce_s": [2 * (n - 1) * alpha + 2 * (n - 1) / n * m / beta for m in SIZES],
        "allgather_s": [(n - 1) * alpha + (n - 1) * m / beta for m in SIZES],
    }


def group_rows(
    strategy="teacher_forcing",
    model="jordan",
    taus=(1000, 2000),
    fwd=(1e-3, 2e-6),  # s = a + b L (per Newton iteration)
    bwd=(0.0, 3e-6),
    rest=1e-4,
    alpha=1e-4,
    beta=1e9,
    iterations=None,
    measured=(),  # (N, tau, [step seconds per replicate])
    one=None,  # [step seconds per replicate] of the 1-worker rows at measured taus
    n_params=1000,
    batch=1,
    hidden=32,
    gemm_gflops=None,
):
    """1-worker time-split rows following the stated compute law, and N-worker rows
    with the given step times and collective timings from (alpha, beta)."""
    rows = []
    k = iterations or 1
    for tau in taus:
        f, b = (fwd[0] + fwd[1] * tau) * k, bwd[0] + bwd[1] * tau
        steps = one if one is not None and tau in {t for _, t, _ in measured} else [f + b + rest]
        for rep, s in enumerate(steps):
            rows.append(
                rs.row(
                    model=model,
                    strategy=strategy,
                    tau=tau,
                    workers=1,
                    split="time",
                    harness="group",
                    replicate=rep,
                    step_ms_median=s * 1e3,
                    fwd_ms_median=f * 1e3,
                    bwd_ms_median=b * 1e3,
                    iterations=iterations,
                    n_params=n_params,
                    batch=batch,
                    hidden=hidden,
                    gemm_gflops=gemm_gflops,
                )
            )
    for n, tau, steps in measured:
        for rep, s in enumerate(steps):
            rows.append(
                rs.row(
                    model=model,
                    strategy=strategy,
                    tau=tau,
                    workers=n,
                    split="time",
                    harness="group",
                    replicate=rep,
                    step_ms_median=s * 1e3,
                    iterations=iterations,
                    n_params=n_params,
                    batch=batch,
                    hidden=hidden,
                    gemm_gflops=gemm_gflops,
                    **collective_fields(n, alpha, beta),
                )
            )
    return tidy.tidy(pd.DataFrame(rows), "synthetic")


# --------------------------------------------------------------------------- network


def test_the_network_is_fitted_to_the_collective_timings():
    rows = group_rows(measured=[(2, 1000, [1e-3]), (4, 1000, [1e-3])], alpha=3e-5, beta=2e9)
    net = sc.loopback(rows)
    assert net is not None and net.points == 16
    assert net.alpha == pytest.approx(3e-5, rel=1e-6)
    assert net.beta == pytest.approx(2e9, rel=1e-6)
    # the opposite: rows without collective timings describe no network
    assert sc.loopback(group_rows()) is None


def test_ring_costs():
    net = sc.Network("x", alpha=1e-5, beta=1e9)
    assert net.allreduce(1, 1e6) == 0.0 and net.allgather(1, 1e6) == 0.0
    assert net.allreduce(4, 1e6) == pytest.approx(6e-5 + 1.5e-3)
    assert net.allgather(4, 1e6) == pytest.approx(3e-5 + 3e-3)


# --------------------------------------------------------------------------- curves


def test_teacher_forcing_follows_the_known_curve():
    alpha, beta, n_params = 1e-4, 1e9, 1000
    rows = group_rows(alpha=alpha, beta=beta, n_params=n_params, measured=[(2, 2000, [3e-3])])
    (m,) = [m for m in sc.models(rows) if m.tau == 2000]
    net = sc.loopback(rows)
    n = sc.GRID.astype(float)
    shard = np.ceil(2000 / n)
    msg = (n_params + 1) * 4
    expected = 1e-3 + 2e-6 * shard + 3e-6 * shard + 1e-4
    expected = expected + np.where(n > 1, 2 * (n - 1) * alpha + 2 * (n - 1) / n * msg / beta, 0)
    assert m.step(net, n) == pytest.approx(expected, rel=1e-6)
    assert m.speedup(net) == pytest.approx(expected[0] / expected, rel=1e-6)
    # a wrong law is told apart: twice the slope is not this curve
    assert m.step(net, 16)[0] != pytest.approx(expected[15] + 3e-6 * shard[15], rel=1e-3)


def test_deer_counts_its_iterations_summaries_and_folds():
    k, B, H, alpha, beta, gflops = 6, 2, 8, 2e-5, 5e8, 10.0
    rows = group_rows(
        strategy="deer",
        model="elman",
        iterations=k,
        alpha=alpha,
        beta=beta,
        batch=B,
        hidden=H,
        gemm_gflops=gflops,
        measured=[(2, 1000, [5e-3])],
    )
    (m,) = [m for m in sc.models(rows) if m.tau == 1000]
    net = sc.Network("given", alpha, beta)
    dense = B * (H * H + H) * 4
    n = 8
    comm = (
        net.allreduce(n, 1001 * 4)
        + net.allgather(n, 8)
        + (k + 1) * net.allreduce(n, 8)
        + k * net.allgather(n, dense)
        + net.allgather(n, dense)
    )
    fold = (n - 1) * 2 * B * H * H * (k + 1) / (gflops * 1e9)
    compute = (1e-3 + 2e-6 * 125) * k + 3e-6 * 125 + 1e-4 + fold
    assert m.step(net, n)[0] == pytest.approx(compute + comm, rel=1e-6)


def test_communication_wins_where_the_model_says():
    """T(N) = a + C / N + 2 (N - 1) alpha (a gradient of no size to speak of): the
    largest speedup is at N* = sqrt(C / (2 alpha)) = 10."""
    C, alpha, tau = 0.2, 1e-3, 2**20  # compute of the whole sequence (s), latency a message
    rows = group_rows(
        taus=(tau,),
        fwd=(0.0, C / tau),
        bwd=(0.0, 0.0),
        rest=0.0,
        n_params=0,
        alpha=alpha,
        beta=1e15,
        measured=[(2, tau, [0.1])],
    )
    (m,) = sc.models(rows)
    net = sc.loopback(rows)
    lim = sc.limits(m, net)
    assert lim["n_best"] == 10
    assert sc.communication_wins(m, net, 10)
    assert not sc.communication_wins(m, net, 9)
    # the opposite: on a network a million times faster it still gains at 1,024
    fast = sc.Network("fast", alpha * 1e-6, 1e15)
    assert math.isnan(sc.limits(m, fast)["n_best"])
    assert not sc.communication_wins(m, fast, 512)


def test_the_check_gives_the_error_with_its_interval():
    one, two = [4e-3, 4.2e-3, 3.9e-3], [2.5e-3, 2.4e-3, 2.6e-3]
    rows = group_rows(
        taus=(1000,), fwd=(0.0, 2e-6), bwd=(0.0, 2e-6), rest=0.0, measured=[(2, 1000, two)], one=one
    )
    s = sc.scaling(rows)
    (line,) = s.check.to_dict("records")
    measured = math.exp(np.mean(np.log(one)) - np.mean(np.log(two)))
    assert line["measured"] == pytest.approx(measured)
    assert line["measured_lo"] < measured < line["measured_hi"]
    assert line["error"] == pytest.approx(line["predicted"] / measured)
    assert line["error_lo"] < line["error"] < line["error_hi"]
    # one replicate a side: a point, no interval
    rows = group_rows(taus=(1000,), measured=[(2, 1000, two[:1])], one=one[:1])
    (line,) = sc.scaling(rows).check.to_dict("records")
    assert math.isfinite(line["error"]) and math.isnan(line["error_lo"])


def test_no_one_worker_rows_no_model():
    rows = group_rows(measured=[(2, 1000, [1e-3])])
    rows = rows[rows["workers"] > 1]
    s = sc.scaling(rows)
    assert not s.models and s.check.empty and s.limits.empty
    assert scaling_figure.figure(s) is None


# --------------------------------------------------------------------------- report


def test_the_report_draws_and_tabulates_the_model(tmp_path):
    rows = group_rows(taus=(2000,), measured=[(2, 2000, [3e-3, 3.1e-3])], one=[5.3e-3, 5.4e-3])
    report = build_report(rows, tmp_path / "r", formats=("md",))
    fig = report.figures[scaling_figure.NAME]
    (ax,) = [a for a in fig.axes if a.get_visible()][:1]
    curves = {line.get_label(): line for line in ax.get_lines()}
    (m,) = report.scaling.models
    loop = curves[report.scaling.networks[0].name]
    assert np.allclose(loop.get_ydata(), m.speedup(report.scaling.networks[0]))
    assert sc.DATACENTRE.name in curves
    names = [t[0] for t in report.tables()]
    assert "scaling_check" in names and "scaling_limits" in names
    page = (tmp_path / "r" / "report.md").read_text()
    assert f"plots/{scaling_figure.NAME}.png" in page
    assert (tmp_path / "r" / "tables" / "scaling_limits.csv").is_file()


# --------------------------------------------------------------------------- the group


@pytest.mark.ray
def test_the_group_records_its_collective_costs(ray_session):
    from rnnbench.harness.group import collectives, run_cell
    from rnnbench.job.cell import Cell

    base = dict(
        model="jordan",
        strategy="teacher_forcing",
        task="delayed_recall",
        task_options={"symbols": 4},
        tau=8,
        batch=1,
        hidden=4,
        repeats=2,
    )
    row = run_cell(Cell(workers=2, **base), cpus_per_worker=0.5)
    assert row["status"] == "ok", row["error"]
    assert row["coll_bytes"] == [float(s) for s in collectives.SIZES]
    for kind in collectives.KINDS:
        times = row[f"{kind}_s"]
        assert len(times) == len(collectives.SIZES)
        assert all(math.isfinite(t) and t > 0 for t in times)
        assert math.isfinite(row[f"{kind}_latency_s"])
        assert row[f"{kind}_bandwidth_Bps"] > 0
    # the opposite: one worker has no network to time
    alone = run_cell(Cell(workers=1, **base), cpus_per_worker=0.5)
    assert alone["status"] == "ok", alone["error"]
    assert alone["coll_bytes"] == [] and math.isnan(alone["allreduce_latency_s"])
