"""The compiled BPTT kernel: same loss and gradient as the autograd loop, built once.

The kernel is built (or found in torch's extension cache) once per test module by
the ``kernel`` fixture: the very first build on a machine takes ~40 s (minutes on
a loaded one), later sessions only load it.  The two tests that start a fresh
Python process are marked slow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import rel_err

from rnnbench.core import compiled, models, strategies
from rnnbench.core.strategies import loss
from rnnbench.harness import gemm, memory, single
from rnnbench.job.cell import Cell

pytestmark = [pytest.mark.xdist_group("compiled"), pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def kernel():
    return compiled.load()


def grads(model, x, y, strategy):
    model.zero_grad(set_to_none=True)
    value = loss(model, x, y, strategy)
    value.backward()
    out = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return value.detach(), out


TOL = {torch.float64: 1e-10, torch.float32: 1e-4}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("cls", [models.Elman, models.SingleOutput], ids=lambda c: c.__name__)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("tau", [1, 7, 257])
def test_gradients_equal_the_autograd_loop(kernel, tau, batch, cls, dtype):
    torch.manual_seed(tau * 10 + batch)
    model = cls(5, 16, 4).to(dtype)
    x = torch.randn(tau, batch, 5, dtype=dtype)
    y = torch.randint(0, 4, (batch,) if model.single_output else (tau, batch))
    want_L, want = grads(model, x, y, "bptt")
    got_L, got = grads(model, x, y, "bptt_compiled")
    assert abs(float(got_L - want_L)) <= TOL[dtype] * abs(float(want_L))
    for name in want:
        if name == "W" and tau == 1:  # h^(0) = 0: W gets no gradient at tau = 1
            assert not got[name].any() and not want[name].any()
            continue
        assert rel_err(got[name], want[name]) < TOL[dtype], name


def test_a_backward_without_the_recurrence_is_caught(kernel, monkeypatch):
    """The comparison above can fail: a backward that drops W^T delta^(t+1) (the
    gradient truncated to one step) is far from bptt's."""

    class Truncated:
        forward = kernel.forward

        @staticmethod
        def backward(g, h, W):
            return kernel.backward(g, h, torch.zeros_like(W))

    torch.manual_seed(0)
    model = models.Elman(5, 16, 4).double()
    x, y = torch.randn(7, 3, 5, dtype=torch.float64), torch.randint(0, 4, (7, 3))
    _, want = grads(model, x, y, "bptt")
    monkeypatch.setattr(compiled, "load", lambda: Truncated)
    _, got = grads(model, x, y, "bptt_compiled")
    assert min(rel_err(got[n], want[n]) for n in ("U", "W", "b")) > 1e-3


@pytest.mark.parametrize("batch", [1, 3])
def test_the_chains_control_does_the_chains_steps_without_waiting(kernel, batch):
    """The control (rnnbench.harness.chain) runs the kernels over τ steps, each step's
    input given: h^(t-1) and δ^(t+1) from the chain.  Its outputs equal the chain's (the
    same operations on the same values); fed anything else, they differ."""
    from rnnbench.harness import chain

    cell = Cell(model="elman", strategy="bptt_compiled", tau=9, batch=batch, hidden=6)
    a, g, W = chain.tensors(cell)
    a, g, W = a.double(), g.double(), W.double()
    h = kernel.forward(a, W)
    d = kernel.backward(g, h, W)
    prev = torch.cat([torch.zeros_like(h[:1]), h[:-1]])
    after = torch.cat([d[1:], torch.zeros_like(d[:1])])
    assert torch.allclose(kernel.forward_steps(a, W, prev), h, atol=1e-12)
    assert torch.allclose(kernel.backward_steps(g, h, W, after), d, atol=1e-12)
    assert not torch.allclose(kernel.forward_steps(a, W, prev.flip(0)), h, atol=1e-3)
    with pytest.raises(RuntimeError, match="prev: expected the shape of a"):
        kernel.forward_steps(a, W, prev[1:])
    assert chain.control_runs(cell) == 1
    assert chain.control_runs(Cell(model="elman", strategy="bptt", tau=9)) == 9


@pytest.mark.parametrize("cls", [models.Elman, models.SingleOutput], ids=lambda c: c.__name__)
def test_gradcheck(kernel, cls):
    torch.manual_seed(0)
    model = cls(2, 3, 3).double()
    x = torch.randn(4, 2, 2, dtype=torch.float64)
    y = torch.randint(0, 3, (2,) if model.single_output else (4, 2))
    params = tuple(model.parameters())
    assert torch.autograd.gradcheck(lambda *_: loss(model, x, y, "bptt_compiled"), params)


def test_the_kernel_keeps_each_state_once(kernel):
    torch.manual_seed(0)
    tau, batch, hidden, n_out = 64, 2, 8, 3
    model = models.Elman(4, hidden, n_out).double()
    x, y = torch.randn(tau, batch, 4, dtype=torch.float64), torch.randint(0, n_out, (tau, batch))
    got = memory.saved_bytes(
        lambda: loss(model, x, y, "bptt_compiled"), keep=[*model.parameters(), x, y]
    )
    want, loop = (
        strategies.get(s).saved_bytes("elman", {}, tau, batch, hidden, n_out, 0, 8)
        for s in ("bptt_compiled", "bptt")
    )
    assert abs(got - want) <= 0.1 * want and want < loop


def test_a_cell_row_counts_the_kernels_flops_and_the_gemm_rate(kernel):
    cells = {
        s: Cell(model="elman", strategy=s, tau=16, batch=2, hidden=8, repeats=2)
        for s in ("bptt", "bptt_compiled")
    }
    rows = {s: single.run_cell(c) for s, c in cells.items()}
    for row in rows.values():
        assert row["status"] == "ok", row["error"]
        assert row["gemm_gflops"] == gemm.gflops("float32", "cpu") > 0
    # the same products but two the loop does with h^(0) = 0: W h^(0) forward and
    # its term of dL/dW; the kernel skips both
    tau, batch, hidden = 16, 2, 8
    step = 2 * batch * hidden * hidden
    assert rows["bptt"]["flops"] - rows["bptt_compiled"]["flops"] == 2 * step
    assert rows["bptt_compiled"]["depth"] == tau


def built_files(lib: str) -> dict:
    folder = os.path.dirname(lib)
    return {
        f: os.stat(os.path.join(folder, f)).st_mtime_ns
        for f in os.listdir(folder)
        if f.endswith((".o", ".so"))
    }


@pytest.mark.slow
def test_the_build_is_cached_for_the_next_process(kernel):
    """A second process loads the library built before: no compiler runs (the object
    files and the library are the same files, untouched)."""
    lib = compiled.library_path()
    before = built_files(lib)
    code = "from rnnbench.core import compiled; print(compiled.library_path())"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    ).stdout.split()
    assert out[-1] == lib and len(before) >= 2 and built_files(lib) == before


@pytest.mark.slow
def test_a_machine_that_cannot_compile_gets_a_failed_row(tmp_path):
    """No compiler: the cell is a failed row naming the compiler's error, not a crash."""
    env = {
        **os.environ,
        "CXX": str(tmp_path / "no-such-compiler"),
        "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext"),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rnnbench.cli",
            "bench",
            "--model",
            "elman",
            "--strategy",
            "bptt_compiled",
            "--tau",
            "4",
            "--repeats",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 1, proc.stderr
    row = json.loads(proc.stdout)
    assert row["status"] == "failed"
    assert row["error"].startswith("CompileError: the C++ kernel did not build: ")
    assert "no-such-compiler" in row["error"] and "\n" not in row["error"]


def test_first_error_line_picks_the_compilers_complaint():
    log = (
        "Error building extension 'rnnbench_elman': [1/2] c++ -c elman.cpp -o elman.o\n"
        "FAILED: elman.o\n"
        "elman.cpp:3:10: fatal error: torch/library.h: No such file or directory\n"
        "compilation terminated.\n"
    )
    assert compiled.first_error_line(log) == (
        "elman.cpp:3:10: fatal error: torch/library.h: No such file or directory"
    )
    assert compiled.first_error_line("something odd\nmore") == "something odd"


def test_tables_set_each_step_against_its_compute_bound_time():
    import pandas as pd

    from rnnbench.report import tables, tidy

    rows = pd.DataFrame(
        [
            {
                "model": "elman",
                "strategy": s,
                "tau": 64,
                "status": "ok",
                "step_ms_median": ms,
                "flops": 2e9,
                "gemm_gflops": 100.0,
                "seed": seed,
                "device": "cpu",
                "task": "text",
            }
            for s, ms in (("bptt", 200.0), ("bptt_compiled", 40.0))
            for seed in (0, 1)
        ]
    )
    summary = tables.summary(tidy.tidy(rows, "test")).set_index("strategy_label")
    assert summary["bound_ms_mean"].tolist() == [20.0, 20.0]  # 2 GFLOP at 100 GFLOP/s
    assert summary.loc["bptt", "bound_ratio_mean"] == 10.0
    assert summary.loc["bptt_compiled", "bound_ratio_mean"] == 2.0
    shown = tables.display(summary.reset_index())
    assert {"compute-bound (ms)", "step / bound (×)"} <= set(shown.columns)
    # rows from before the GEMM rate was recorded load, and have no bound
    old = tidy.tidy(rows.drop(columns="gemm_gflops"), "test")
    assert old["gemm_gflops"].isna().all()
    assert "bound_ms_mean" not in tables.summary(old).columns
