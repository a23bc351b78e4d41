"""Parallel-in-time Elman: the associative scan, the (quasi-)Newton solvers, the
adjoint-scan gradient, their row diagnostics, and the spectral radius ``rho``.

References are step-by-step loops over t and the autograd gradient of
``bptt``, in float64.
"""

from __future__ import annotations

import hashlib
import json
import math

import pytest
import torch
from helpers import value_and_grads as grads

from rnnbench import cli
from rnnbench.core import models, strategies
from rnnbench.errors import UsageError
from rnnbench.facts import scan_depth
from rnnbench.harness import memory, single
from rnnbench.job.cell import NOT_IN_ID, Cell
from rnnbench.pit import diagnostics
from rnnbench.pit.newton import elman_states
from rnnbench.pit.scan import linear_scan

DT = torch.float64
REL = 1e-8
pytestmark = pytest.mark.usefixtures("one_thread")
PARALLEL = ("scan_bptt", "deer", "quasi_deer")


def loop(A, b, reverse=False, h0=None):
    """h_t = A_t h_{t-1} + b_t (or h_t = A_t h_{t+1} + b_t), one t at a time."""
    dense = A.dim() == b.dim() + 1
    h = torch.zeros_like(b[0]) if h0 is None else h0.expand_as(b[0])
    out = torch.empty_like(b)
    for t in reversed(range(b.shape[0])) if reverse else range(b.shape[0]):
        h = (A[t] @ h.unsqueeze(-1)).squeeze(-1) + b[t] if dense else A[t] * h + b[t]
        out[t] = h
    return out


def setup(model="elman", tau=30, batch=2, n_in=4, hidden=6, n_out=3, rho=None, seed=0):
    torch.manual_seed(seed)
    m = models.build(model, n_in, hidden, n_out, rho).double()
    x = torch.randn(tau, batch, n_in, dtype=DT)
    y = torch.randint(0, n_out, (batch,) if m.single_output else (tau, batch))
    return m, x, y


def sequential(m, x):
    with torch.no_grad():
        return elman_states(m.input_term(x), m.W)


# --------------------------------------------------------------------------- scan


@pytest.mark.parametrize("tau", [1, 2, 3, 7, 64, 257])
@pytest.mark.parametrize("dense", [True, False], ids=["dense", "diagonal"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_scan_equals_the_loop(tau, dense, reverse):
    g = torch.Generator().manual_seed(tau)
    b = torch.randn(tau, 3, 5, dtype=DT, generator=g)
    shape = (tau, 3, 5, 5) if dense else (tau, 3, 5)
    A = torch.randn(*shape, dtype=DT, generator=g) * (0.5 if dense else 1.0)
    h0 = torch.randn(5, dtype=DT, generator=g)
    want, got = loop(A, b, reverse), linear_scan(A, b, reverse=reverse)
    assert (got - want).abs().max() <= 1e-12 * (1 + want.abs().max())
    want, got = loop(A, b, reverse, h0), linear_scan(A, b, reverse=reverse, h0=h0)
    assert (got - want).abs().max() <= 1e-12 * (1 + want.abs().max())


def test_scan_float32_and_shape_errors():
    A, b = torch.rand(100, 4, 4) * 0.5, torch.randn(100, 4)
    assert linear_scan(A, b).dtype == torch.float32
    assert torch.allclose(linear_scan(A, b), loop(A, b), atol=1e-5)
    with pytest.raises(ValueError, match="A: expected shape"):
        linear_scan(torch.rand(100, 4, 3), b)


# --------------------------------------------------------------------------- states


@pytest.mark.parametrize("method", ["newton", "quasi"])
@pytest.mark.parametrize("rho", [None, 0.9])
def test_converged_states_equal_the_sequential_ones(method, rho):
    m, x, _ = setup(tau=200, batch=3, hidden=8, rho=rho)
    want = sequential(m, x)
    with diagnostics.recording() as rec, torch.no_grad():
        got = elman_states(m.input_term(x), m.W, method, tol=1e-12)
    assert rec.converged is True and 1 <= rec.iterations < 200
    assert rec.residual <= 1e-11
    assert (got - want).abs().max() <= 1e-10


def test_float32_newton_converges_to_the_sequential_states():
    m, x, _ = setup(tau=300, batch=2, hidden=16, rho=0.9)
    m, x = m.float(), x.float()
    want = sequential(m, x)
    for method in ("newton", "quasi"):
        with diagnostics.recording() as rec, torch.no_grad():
            got = elman_states(m.input_term(x), m.W, method)
        assert rec.converged is True and rec.iterations < 300
        assert (got - want).abs().max() <= 1e-3


@pytest.mark.parametrize("method", ["newton", "quasi"])
def test_max_iter_tau_ends_at_the_sequential_answer_even_for_rho_3(method):
    tau = 40
    m, x, _ = setup(tau=tau, hidden=8, rho=3.0)
    want = sequential(m, x)
    # k iterations make the first k states exact, whatever the linearisation
    with diagnostics.recording() as rec, torch.no_grad():
        part = elman_states(m.input_term(x), m.W, method, tol=1e-300, max_iter=5)
    assert rec.iterations == 5
    assert (part[:5] - want[:5]).abs().max() <= 1e-12
    with diagnostics.recording() as rec, torch.no_grad():
        got = elman_states(m.input_term(x), m.W, method, tol=1e-300, max_iter=tau)
    assert rec.iterations == tau - 1 or rec.iterations == tau  # the last one moves nothing
    assert (got - want).abs().max() <= 1e-10
    with diagnostics.recording() as rec, torch.no_grad():
        got = elman_states(m.input_term(x), m.W, method, max_iter=tau)
    assert rec.converged is True and rec.iterations <= tau
    assert (got - want).abs().max() <= 1e-10


def test_a_run_that_does_not_converge_says_so():
    m, x, y = setup(tau=64, hidden=8, rho=3.0)
    with diagnostics.recording() as rec:
        L = strategies.loss(m, x, y, "deer", max_iter=2)
    assert math.isfinite(L.item())
    assert rec.iterations == 2 and rec.converged is False and rec.residual > 1e-3
    with pytest.warns(RuntimeWarning, match="not converged after 2 iterations"):
        strategies.loss(m, x, y, "quasi_deer", max_iter=2)


def test_recorders_do_not_leak():
    m, x, y = setup(tau=8)
    with diagnostics.recording() as outer:
        with diagnostics.recording() as inner:
            strategies.loss(m, x, y, "deer")
        assert outer.fields() == dict.fromkeys(diagnostics.FIELDS)
        strategies.loss(m, x, y, "bptt")
    assert inner.iterations >= 1 and outer.iterations is None


# --------------------------------------------------------------------------- gradient


@pytest.mark.parametrize("model", ["elman", "single_output"])
@pytest.mark.parametrize("strategy", PARALLEL)
@pytest.mark.parametrize("rho", [None, 0.9])
def test_gradient_equals_bptt(model, strategy, rho):
    m, x, y = setup(model, tau=60, batch=3, hidden=7, rho=rho)
    want_L, want = grads(m, lambda: strategies.loss(m, x, y, "bptt"))
    with diagnostics.recording() as rec:
        got_L, got = grads(m, lambda: strategies.loss(m, x, y, strategy))
    assert rec.converged is not False
    assert abs(float(got_L - want_L)) <= 1e-9 * abs(float(want_L))
    for name in want:
        assert (got[name] - want[name]).norm() <= REL * want[name].norm(), name


def test_gradient_with_max_iter_tau_equals_bptt_for_rho_3():
    m, x, y = setup(tau=24, hidden=6, rho=3.0)
    _, want = grads(m, lambda: strategies.loss(m, x, y, "bptt"))
    for strategy in ("deer", "quasi_deer"):
        with diagnostics.recording():  # tol 1e-300: every iteration runs, never "converged"
            _, got = grads(m, lambda: strategies.loss(m, x, y, strategy, max_iter=24, tol=1e-300))
        for name in want:
            assert (got[name] - want[name]).norm() <= REL * want[name].norm(), (strategy, name)


@pytest.mark.parametrize("model", ["elman", "single_output"])
@pytest.mark.parametrize("strategy", PARALLEL)
def test_gradcheck(model, strategy):
    m, x, y = setup(model, tau=5, batch=2, n_in=2, hidden=3, n_out=3)
    params = tuple(m.parameters())
    assert torch.autograd.gradcheck(lambda *_: strategies.loss(m, x, y, strategy), params)


def test_gradcheck_of_the_states_in_their_inputs():
    g = torch.Generator().manual_seed(1)
    ux = torch.randn(9, 2, 3, dtype=DT, generator=g, requires_grad=True)
    W = torch.randn(3, 3, dtype=DT, generator=g, requires_grad=True)
    for method in ("sequential", "newton", "quasi"):
        assert torch.autograd.gradcheck(lambda u, w: elman_states(u, w, method), (ux, W))


def test_gradcheck_fails_for_a_wrong_adjoint(monkeypatch):
    """The other side: with J_{t+1} in place of J_{t+1}^T the check says no."""
    from rnnbench.pit import newton

    real = newton.adjoint

    def transposed(hs, W, g, *split):
        return real(hs, W.t(), g, *split)

    monkeypatch.setattr(newton, "adjoint", transposed)
    m, x, y = setup(tau=5, batch=2, n_in=2, hidden=3)
    assert not torch.autograd.gradcheck(
        lambda *_: strategies.loss(m, x, y, "scan_bptt"),
        tuple(m.parameters()),
        raise_exception=False,
    )


# --------------------------------------------------------------------------- options, rho


@pytest.mark.parametrize(
    "options, needle",
    [
        ({"tol": 0}, "tol:"),
        ({"tol": -1.0}, "tol:"),
        ({"tol": "x"}, "tol:"),
        ({"max_iter": 0}, "max_iter:"),
        ({"k": 2}, "deer.k"),
    ],
)
def test_bad_options_name_the_option(options, needle):
    m, x, y = setup(tau=4)
    with pytest.raises(UsageError, match=needle):
        strategies.loss(m, x, y, "deer", **options)


def test_rho_sets_the_spectral_radius():
    m, _, _ = setup(hidden=16, rho=0.9)
    # set in float64, stored in the model's float32 before .double()
    assert float(torch.linalg.eigvals(m.W.detach()).abs().max()) == pytest.approx(0.9, rel=1e-6)


@pytest.mark.parametrize("rho", [0, -1.0, float("inf"), float("nan"), True, "big"])
def test_cell_rejects_a_bad_rho(rho):
    with pytest.raises(UsageError, match="rho"):
        Cell(model="elman", strategy="bptt", tau=4, rho=rho)


def test_rho_is_refused_for_jordan_and_left_out_of_the_id_when_none():
    with pytest.raises(UsageError, match="rho"):
        Cell(model="jordan", strategy="teacher_forcing", tau=4, rho=0.9)
    cell = Cell(model="elman", strategy="bptt", tau=4)
    left_out = ("harness", "rho", "baseline", "law_taus", "replicate", *NOT_IN_ID)
    config = {k: v for k, v in cell.config().items() if k not in left_out}
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"))
    assert cell.cell_id == hashlib.sha256(blob.encode()).hexdigest()[:16]
    assert Cell(model="elman", strategy="bptt", tau=4, rho=0.9).cell_id != cell.cell_id


@pytest.mark.parametrize(
    "argv",
    [
        ["--rho", "-1"],
        ["--rho", "x"],
        ["--rho", "0.9", "--model", "jordan", "--strategy", "teacher_forcing"],
    ],
)
def test_bench_bad_rho_exits_2_with_one_line(argv, capsys):
    try:
        code = cli.main(["bench", "--model", "elman", "--strategy", "bptt", "--tau", "8", *argv])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "rho" in err.splitlines()[-1] and "Traceback" not in err


# --------------------------------------------------------------------------- rows


SMALL = dict(hidden=8, batch=2, repeats=2, train_steps=0, dtype="float64")


def test_rows_carry_iterations_converged_residual_and_measured_depth():
    deer = single.run_cell(Cell(model="elman", strategy="deer", tau=100, rho=0.9, **SMALL))
    assert deer["status"] == "ok", deer["error"]
    assert deer["converged"] is True and deer["residual"] <= 1e-9
    assert deer["depth"] == deer["iterations"] * 13  # scan_depth(100)
    scan = single.run_cell(Cell(model="elman", strategy="scan_bptt", tau=100, **SMALL))
    assert scan["depth"] == 113 and scan["iterations"] is None
    bptt = single.base_row(Cell(model="elman", strategy="bptt", tau=100, **SMALL))
    assert bptt["iterations"] is None and bptt["converged"] is None
    assert math.isnan(bptt["residual"])  # a float column: NaN, null in a row file
    assert deer["saved_bytes"] == pytest.approx(deer["saved_bytes_expected"], rel=0.10)


def test_non_converging_cell_is_a_row_with_converged_false():
    row = single.run_cell(
        Cell(
            model="elman",
            strategy="deer",
            tau=64,
            rho=3.0,
            strategy_options={"max_iter": 2},
            **SMALL,
        )
    )
    assert row["status"] == "ok", row["error"]
    assert row["converged"] is False and row["iterations"] == 2 and row["residual"] > 1e-3
    assert row["depth"] == 2 * scan_depth(64)  # 2 x 11


def test_saved_bytes_are_the_states_not_the_jacobians():
    for model, tau in (("elman", 64), ("single_output", 64), ("elman", 256)):
        m, x, y = setup(model, tau=tau, batch=2, hidden=8, n_out=4)
        for strategy in PARALLEL:
            got = memory.saved_bytes(
                lambda: strategies.loss(m, x, y, strategy), keep=[*m.parameters(), x, y]
            )
            want = strategies.get(strategy).saved_bytes(model, {}, tau, 2, 8, 4, 0, 8)
            assert abs(got - want) <= 0.10 * want, (model, strategy, got, want)


def test_job_files_take_rho_and_name_a_bad_one():
    from rnnbench.job import jobfile

    grid = {"model": "elman", "strategy": "deer", "tau": 8}
    job = jobfile.validate({"name": "r", "fixed": grid, "grid": {"rho": [0.5, 3.0]}})
    assert [c.rho for c in job.cells] == [0.5, 3.0]
    with pytest.raises(jobfile.JobError, match="rho"):
        jobfile.validate({"name": "r", "fixed": grid, "grid": {"rho": [-1]}})


@pytest.mark.parametrize("method", ["newton", "quasi"])
@pytest.mark.parametrize("rho", [0.5, 0.9, 1.3])
def test_newton_never_stops_unconverged_below_its_cap(method, rho):
    """The stopping rule is the residual test ``converged`` reports: a run either
    converged or used every iteration it was allowed (it once stopped on a small step
    while its residual was still above the tolerance, reported as not converged)."""
    torch.manual_seed(1)
    m = models.build("elman", 6, 12, 6, rho)
    ux = m.input_term(torch.randn(256, 2, 6) * 2.0).detach()
    for cap in (None, 40):
        with diagnostics.recording() as rec:
            elman_states(ux, m.W.detach(), method, max_iter=cap)
        assert rec.converged or rec.iterations == (cap or 256), (rec.iterations, rec.residual)


def test_quasi_newton_on_the_text_task_stops_converged():
    """The case a reviewer found: quasi-DEER at rho 0.9, H 16, tau 1024 on the text task in
    float32 stopped on a small step after 150 iterations with converged = false (residual
    1.07e-4); stopping on the residual test itself, it ends converged."""
    from rnnbench.harness import training

    c = Cell(model="elman", strategy="quasi_deer", tau=1024, hidden=16, rho=0.9, task="text")
    task, x, _ = training.cell_batch(c)
    m = training.initial_model(c, task.n_in, task.n_out)
    with diagnostics.recording() as rec:
        elman_states(m.input_term(x).detach(), m.W.detach(), "quasi")
    assert rec.converged and rec.iterations < 1024, (rec.iterations, rec.residual)


def test_the_lyapunov_exponent_tells_contracting_from_chaotic_dynamics():
    from rnnbench.pit.lyapunov import largest_exponent

    torch.manual_seed(0)
    signs = {}
    for rho in (0.5, 3.0):
        m = models.build("elman", 6, 16, 6, rho)
        ux = m.input_term(torch.randn(400, 2, 6) * 0.3).detach()
        signs[rho] = largest_exponent(ux, m.W)
    assert signs[0.5] < -0.1 and signs[3.0] > 0.05, signs


def test_newton_rows_record_the_dynamics_and_the_cap():
    row = single.run_cell(
        Cell(
            model="elman",
            strategy="quasi_deer",
            tau=32,
            rho=0.9,
            strategy_options={"max_iter": 20},
            **SMALL,
        )
    )
    assert row["status"] == "ok", row["error"]
    assert row["iter_cap"] == 20 and row["lyapunov"] < 0
    plain = single.run_cell(Cell(model="elman", strategy="bptt", tau=32, **SMALL))
    assert plain["iter_cap"] is None and math.isnan(plain["lyapunov"])  # no scan, no rho
