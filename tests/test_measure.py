"""One benchmark cell gives one honest row (the single-process harness)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from rnnbench import cli
from rnnbench.core import strategies
from rnnbench.errors import UsageError
from rnnbench.harness import memory, sides, single, training
from rnnbench.harness.row import failure_row
from rnnbench.job.cell import Cell
from rnnbench.results.rows import ROW_KEYS

# its module fixture is costly: one process runs the whole module (make test: loadgroup)
pytestmark = pytest.mark.xdist_group("measure")


SMALL = dict(hidden=16, batch=2, repeats=2, train_steps=3)


@pytest.fixture(scope="module")
def elman_row():
    return single.run_cell(Cell(model="elman", strategy="bptt", tau=32, **SMALL))


def test_row_has_every_key_with_the_right_type(elman_row):
    row = elman_row
    assert row["status"] == "ok", row["error"]
    assert list(row) == list(ROW_KEYS)
    ints = (
        "tau",
        "batch",
        "hidden",
        "n_in",
        "n_out",
        "n_params",
        "seed",
        "threads",
        "workers",
        "saved_bytes",
        "saved_bytes_expected",
        "peak_bytes",
        "flops",
        "depth",
    )
    for key in ints:
        assert isinstance(row[key], int) and not isinstance(row[key], bool), key
    floats = (
        "step_ms_median",
        "step_ms_iqr",
        "fwd_ms_median",
        "bwd_ms_median",
        "loss_tf",
        "loss_free",
        "acc_tf",
        "acc_free",
        "wall_s",
    )
    for key in floats:
        assert isinstance(row[key], float) and math.isfinite(row[key]), key
    for key in (
        "cell_id",
        "model",
        "strategy",
        "task",
        "device",
        "status",
        "python",
        "torch",
        "rnnbench",
        "host",
        "cpu_model",
        "timestamp",
        "peak_method",
    ):
        assert isinstance(row[key], str) and row[key], key
    assert row["step_ms_median"] > 0 and row["step_ms_iqr"] >= 0
    assert all(isinstance(s, float) and s > 0 for s in row["step_ms_samples"])
    assert len(row["step_ms_samples"]) == SMALL["repeats"]
    assert row["depth"] == 32 and row["n_in"] == row["n_out"] == 64
    assert row["flops"] > 0 and row["peak_bytes"] > 0
    assert [len(p) for p in row["train_curve"]] == [3, 3, 3]
    assert [p[0] for p in row["train_curve"]] == [1, 2, 3]
    assert len(row["horizon_t"]) == len(row["horizon_loss_tf"]) == len(row["horizon_loss_free"]) > 0
    assert row["loss_tf"] == row["loss_free"]  # Elman never consumes its outputs
    assert json.loads(row["strategy_options"]) == {}
    json.dumps(row)  # plain data all the way down


def test_cell_id_is_stable_and_distinguishes_configs():
    a = Cell(model="elman", strategy="truncated_bptt", tau=8, strategy_options={"k": 4})
    b = Cell(model="elman", strategy="truncated_bptt", tau=8, strategy_options={"k": 4})
    c = Cell(model="elman", strategy="truncated_bptt", tau=8, strategy_options={"k": 2})
    assert a.cell_id == b.cell_id != c.cell_id
    assert Cell.from_config(a.config()) == a
    assert len(a.cell_id) == 16


@pytest.mark.parametrize(
    "model,strategy,task,options",
    [
        ("elman", "bptt", "text", {}),
        ("jordan", "teacher_forcing", "text", {}),
        ("elman", "truncated_bptt", "text", {"k": 8}),
        ("elman", "checkpointed_bptt", "text", {"segments": 4}),
        ("jordan", "free_running", "running_parity", {}),
    ],
)
def test_saved_bytes_match_the_analytic_figure(model, strategy, task, options):
    row = single.run_cell(
        Cell(
            model=model,
            strategy=strategy,
            tau=64,
            task=task,
            strategy_options=options,
            **{**SMALL, "train_steps": 0},
        )
    )
    assert row["status"] == "ok", row["error"]
    assert row["saved_bytes"] == pytest.approx(row["saved_bytes_expected"], rel=0.10)


def _saved(strategy: str, tau: int, **options) -> int:
    cell = Cell(
        model="elman", strategy=strategy, tau=tau, strategy_options=options, hidden=16, batch=2
    )
    _, model, x, y = single._setup(cell)
    return memory.saved_bytes(
        lambda: strategies.loss(model, x, y, strategy, **options), keep=[*model.parameters(), x, y]
    )


def _slope(strategy: str, **options) -> float:
    taus = [64, 128, 256, 512, 1024]
    saved = [_saved(strategy, t, **options) for t in taus]
    return float(np.polyfit(np.log(taus), np.log(saved), 1)[0])


def test_saved_bytes_slope_in_tau_bptt_is_linear_truncated_is_flat():
    assert _slope("bptt") == pytest.approx(1.0, abs=0.05)
    assert _slope("truncated_bptt", k=16) == pytest.approx(0.0, abs=0.05)


def test_same_cell_and_seed_twice_give_the_same_loss():
    cell = Cell(model="jordan", strategy="teacher_forcing", tau=16, task="running_parity", **SMALL)
    a, b = single.run_cell(cell), single.run_cell(cell)
    assert a["status"] == b["status"] == "ok"
    assert a["loss_tf"] == b["loss_tf"] and a["loss_free"] == b["loss_free"]
    assert [p[2] for p in a["train_curve"]] == [p[2] for p in b["train_curve"]]


def test_jordan_row_reports_teacher_forced_and_free_running_apart():
    row = single.run_cell(
        Cell(model="jordan", strategy="teacher_forcing", tau=32, task="running_parity", **SMALL)
    )
    assert row["status"] == "ok"
    assert row["depth"] == 1
    assert row["loss_tf"] != row["loss_free"]  # trained 3 steps, judged both ways


# --------------------------------------------------------------------------- failures


def _replace_strategy(monkeypatch, name, fn):
    """Swap a strategy's function in the registry (what run_cell calls) for the test."""
    monkeypatch.setitem(
        strategies.STRATEGIES, name, dataclasses.replace(strategies.STRATEGIES[name], fn=fn)
    )


def test_forced_nan_gives_a_failed_row(monkeypatch):
    def nan_loss(model, x, y, strategy="bptt", **options):
        return model.U.sum() * float("nan")

    _replace_strategy(monkeypatch, "bptt", nan_loss)
    row = single.run_cell(Cell(model="elman", strategy="bptt", tau=8, **SMALL))
    assert row["status"] == "failed"
    assert "non-finite loss" in row["error"]
    assert math.isnan(row["step_ms_median"])


def test_exception_gives_a_failed_row_with_the_message(monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("the kernel exploded")

    _replace_strategy(monkeypatch, "bptt", boom)
    row = single.run_cell(Cell(model="elman", strategy="bptt", tau=8, **SMALL))
    assert row["status"] == "failed"
    assert row["error"] == "RuntimeError: the kernel exploded"
    assert set(row) == set(ROW_KEYS)


def test_out_of_memory_gives_an_oom_row(monkeypatch):
    def oom(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 TB")

    _replace_strategy(monkeypatch, "bptt", oom)
    row = single.run_cell(Cell(model="elman", strategy="bptt", tau=8, **SMALL))
    assert row["status"] == "oom"


def test_time_out_gives_a_timeout_row():
    cell = Cell(model="elman", strategy="bptt", tau=64, hidden=16, train_steps=10_000)
    row = single.run_cell(cell, timeout_s=0.5)
    assert row["status"] == "timeout"
    assert "time-out during" in row["error"]
    assert row["wall_s"] < 30


def test_failure_row_keeps_configuration():
    cell = Cell(model="jordan", strategy="teacher_forcing", tau=8)
    row = failure_row(cell, "crashed", "worker died")
    assert row["status"] == "crashed" and row["error"] == "worker died"
    assert row["cell_id"] == cell.cell_id and row["model"] == "jordan"
    assert math.isnan(row["step_ms_median"])


# --------------------------------------------------------------------------- threads & CUDA


def test_threads_are_set_from_the_cell_and_restored(monkeypatch):
    seen = []
    real = strategies.STRATEGIES["bptt"].fn

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    _replace_strategy(monkeypatch, "bptt", spy)
    before = torch.get_num_threads()
    single.run_cell(Cell(model="elman", strategy="bptt", tau=8, threads=2, **SMALL))
    assert seen and set(seen) == {2}
    assert torch.get_num_threads() == before


def test_cuda_peak_logic_uses_max_allocated_after_a_reset(monkeypatch):
    """The CUDA branch, with torch.cuda's counters faked: peak = max - starting level."""
    state = {"allocated": 1000, "max": 5000, "calls": []}
    fake = torch.cuda
    monkeypatch.setattr(fake, "synchronize", lambda: state["calls"].append("sync"))
    monkeypatch.setattr(fake, "memory_allocated", lambda: state["allocated"])

    def reset():
        state["calls"].append("reset")
        state["max"] = state["allocated"]

    monkeypatch.setattr(fake, "reset_peak_memory_stats", reset)
    monkeypatch.setattr(fake, "max_memory_allocated", lambda: state["max"])

    def step():
        state["calls"].append("step")
        state["max"] = state["allocated"] + 4096

    peak, how = memory.peak_bytes(step, device="cuda")
    assert (peak, how) == (4096, "cuda_max_memory_allocated")
    assert state["calls"] == ["sync", "reset", "step", "sync"]


def test_cuda_cell_without_a_gpu_is_a_clean_row_or_a_clean_cli_error():
    if torch.cuda.is_available():
        row = single.run_cell(
            Cell(model="elman", strategy="bptt_fused", tau=16, device="cuda", **SMALL)
        )
        assert row["status"] == "ok" and row["gpu_name"]
        assert row["peak_method"] == "cuda_max_memory_allocated"
    else:
        row = single.run_cell(Cell(model="elman", strategy="bptt", tau=8, device="cuda", **SMALL))
        assert row["status"] == "failed" and "no CUDA device" in row["error"]
        assert (
            cli.main(
                [
                    "bench",
                    "--model",
                    "elman",
                    "--strategy",
                    "bptt",
                    "--tau",
                    "8",
                    "--device",
                    "cuda",
                ]
            )
            == 2
        )


# --------------------------------------------------------------------------- CLI


def test_bench_json_prints_exactly_one_json_object():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "rnnbench.cli",
            "bench",
            "--model",
            "jordan",
            "--strategy",
            "teacher_forcing",
            "--tau",
            "16",
            "--hidden",
            "8",
            "--repeats",
            "2",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)
    assert isinstance(row, dict) and set(row) == set(ROW_KEYS)
    assert row["comm_ms_median"] is None  # NaN is written as null: strict JSON


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--tau", "-5"], "--tau"),
        (["--tau", "0"], "--tau"),
        (["--tau", "8", "--batch", "x"], "--batch"),
        (["--tau", "8", "--strategy", "nope"], "--strategy"),
        (["--tau", "8", "--model", "gru"], "--model"),
        (["--tau", "8", "--device", "tpu"], "--device"),
        (["--tau", "8", "--strategy", "teacher_forcing"], "strategy"),
        (["--tau", "8", "--option", "k=3"], "bptt.k"),
        (["--tau", "8", "--n-in", "3", "--n-out", "4"], "--n-out"),
        (["--tau", "8", "--task", "sequence_parity"], "task"),
        (["--tau", "8", "--lr", "-1"], "--lr"),
        # option values are checked before anything runs, not turned into a failed row
        (["--tau", "8", "--strategy", "truncated_bptt", "--option", "k=0"], "k:"),
        (["--tau", "8", "--strategy", "truncated_bptt", "--option", "k=abc"], "k:"),
        (["--tau", "8", "--strategy", "checkpointed_bptt", "--option", "segments=9"], "segments:"),
        (
            [
                "--tau",
                "8",
                "--model",
                "jordan",
                "--strategy",
                "free_running",
                "--option",
                "feedback=bogus",
            ],
            "feedback:",
        ),
        (
            [
                "--tau",
                "8",
                "--model",
                "jordan",
                "--strategy",
                "scheduled_sampling",
                "--option",
                "schedule=exponential",
                "--option",
                "k=2",
            ],
            "k:",
        ),
        (["--tau", "8", "--task-option", "path=/nonexistent/corpus"], "task.path"),
    ],
)
def test_bench_bad_values_exit_2_with_one_line_naming_the_option(argv, needle, capsys):
    assert _exit_code(["bench", "--model", "elman", "--strategy", "bptt", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert needle in err and "Traceback" not in err


def _exit_code(argv) -> int:
    """cli.main's return code, or the code argparse exits with."""
    try:
        return cli.main(argv)
    except SystemExit as exc:
        return exc.code


def test_cell_rejects_bad_fields_naming_them():
    with pytest.raises(UsageError, match="tau"):
        Cell(model="elman", strategy="bptt", tau=-1)
    with pytest.raises(UsageError, match="device"):
        Cell(model="elman", strategy="bptt", tau=4, device="tpu")
    with pytest.raises(UsageError, match="task"):
        Cell(model="single_output", strategy="bptt", tau=4, task="text")
    with pytest.raises(UsageError, match="task.vocab"):
        Cell(model="elman", strategy="bptt", tau=4, task_options={"vocab": 0})


# ----------------------------------------------- loss figures, timing split, random strategies


def test_untrained_cell_reports_no_loss_figures():
    row = single.run_cell(
        Cell(model="jordan", strategy="teacher_forcing", tau=16, **{**SMALL, "train_steps": 0})
    )
    assert row["status"] == "ok"
    assert all(math.isnan(row[k]) for k in ("loss_tf", "loss_free", "acc_tf", "acc_free"))
    assert row["train_curve"] == [] and row["horizon_t"] == []


@pytest.mark.parametrize(
    "strategy,options", [("truncated_bptt", {"k": 4}), ("teacher_forcing", {"chunk": 4})]
)
def test_grad_in_forward_strategies_report_no_forward_backward_split(strategy, options):
    model = "jordan" if strategy == "teacher_forcing" else "elman"
    row = single.run_cell(
        Cell(
            model=model,
            strategy=strategy,
            tau=16,
            strategy_options=options,
            **{**SMALL, "train_steps": 0},
        )
    )
    assert row["status"] == "ok" and row["step_ms_median"] > 0
    assert math.isnan(row["fwd_ms_median"]) and math.isnan(row["bwd_ms_median"])


def test_random_strategies_draw_fresh_coins_each_step_and_rank():
    cell = Cell(model="jordan", strategy="scheduled_sampling", tau=8)
    a, b = training.strategy_options(cell, 0), training.strategy_options(cell, 1)
    assert a["step"] == 0 and b["step"] == 1 and a["seed"] != b["seed"]
    assert training.strategy_options(cell, 1) == b  # deterministic
    assert training.strategy_options(cell, 1, rank=1)["seed"] != b["seed"]
    assert "seed" not in training.strategy_options(cell)  # the timed step: fixed options
    sampled = Cell(
        model="jordan", strategy="free_running", tau=8, strategy_options={"feedback": "sample"}
    )
    assert (
        training.strategy_options(sampled, 0)["seed"]
        != training.strategy_options(sampled, 1)["seed"]
    )
    # the seeds change what the strategy draws: at a constant 1/2 chance of the truth,
    # different coins give different losses
    half = Cell(
        model="jordan",
        strategy="scheduled_sampling",
        tau=16,
        batch=4,
        strategy_options={"schedule": "linear", "k": 0.5, "c": 0.0},
    )
    _, model, x, y = single._setup(half)
    la = single._loss_fn(half, model, x, y, step=0)().item()
    lb = single._loss_fn(half, model, x, y, step=1)().item()
    assert la != lb


def test_harness_enters_the_cell_id_only_when_not_default():
    import hashlib

    cell = Cell(model="elman", strategy="bptt", tau=8)
    config = cell.config()
    # added later, left out at default
    del config["harness"], config["rho"], config["baseline"], config["law_taus"]
    for key in ("replicate", "replicates", "exclusive", "precision", "max_replicates"):
        del config[key]  # how a cell is run (and replicate 0): never in the id
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"))
    assert cell.cell_id == hashlib.sha256(blob.encode()).hexdigest()[:16]  # ids stored before
    grouped = Cell(model="elman", strategy="bptt", tau=8, harness="group")
    assert grouped.cell_id != cell.cell_id and grouped.grouped and not cell.grouped
    with pytest.raises(UsageError, match="harness"):
        Cell(model="elman", strategy="bptt", tau=8, harness="gpu")


def test_a_replicate_is_its_own_cell_and_how_it_is_run_is_not():
    base = Cell(model="elman", strategy="bptt", tau=8, replicates=3)
    assert base.cell_id == Cell(model="elman", strategy="bptt", tau=8).cell_id
    second = Cell(model="elman", strategy="bptt", tau=8, replicates=3, replicate=1)
    assert second.cell_id != base.cell_id  # resume works per replicate
    assert (
        Cell(
            model="elman",
            strategy="bptt",
            tau=8,
            replicates=5,
            replicate=1,
            precision=0.05,
            exclusive=True,
        ).cell_id
        == second.cell_id
    )
    with pytest.raises(UsageError, match="replicate: must be below replicates"):
        Cell(model="elman", strategy="bptt", tau=8, replicates=2, replicate=2)
    with pytest.raises(UsageError, match="precision"):
        Cell(model="elman", strategy="bptt", tau=8, precision=1.5)


def test_a_law_cell_times_every_tau_in_its_one_process_taking_turns():
    """``law_taus``: the training step at each τ, built in this process, timed in rounds
    whose order turns around (A B C, C B A); the step fields are the largest τ's."""
    cell = Cell(model="elman", strategy="bptt", tau=32, hidden=8, repeats=3, law_taus=[4, 32, 8])
    assert (
        cell.law_taus == (4, 8, 32)
        and cell.cell_id != Cell(**{**cell.config(), "law_taus": []}).cell_id
    )
    row = single.run_cell(cell)
    assert row["status"] == "ok", row["error"]
    assert row["law_taus"] == [4, 8, 32] and len(row["law_step_ms"]) == 3
    assert row["step_ms_median"] == pytest.approx(row["law_step_ms"][-1])
    assert len(row["step_ms_samples"]) == 3 and [len(s) for s in row["law_step_samples"]] == [3] * 3
    assert all(ms > 0 for ms in row["law_step_ms"]) and 0 <= row["wait_share"] <= 1
    assert Cell.from_row(row) == cell
    order: list[str] = []
    parts = [sides.Side(lambda n=n: order.append(n), 1) for n in "ABC"]
    sides.rounds(parts, 3, time.perf_counter, lambda what: None)
    assert "".join(order) == "AABBCCCCBBAAAABBCC"  # a block: one settle run, one timed
    # read within rounds: rounds at speeds 1, 1.6 and 1.1 (A half of B in each), A's
    # block of round 3 slowed by something else: the rounds say 0.5 of B's median (1.1);
    # the medians alone would say 0.8 / 1.1
    a, b = [0.5, 0.8, 0.99], [1.0, 1.6, 1.1]
    assert sides.in_rounds([a, b]) == pytest.approx([0.55, 1.1])
    for bad, needle in (
        ([4, 32], "3 distinct tau"),
        ([4, 8, 16], "largest must be the cell's tau"),
        ("4,8,32", "must be a list"),
    ):
        with pytest.raises(UsageError, match=needle):
            Cell(model="elman", strategy="bptt", tau=32, law_taus=bad)
    with pytest.raises(UsageError, match="law_taus: a law cell is one process"):
        Cell(model="elman", strategy="bptt", tau=32, law_taus=[4, 8, 32], baseline={"threads": 2})


def test_timing_samples_are_per_run_means_of_blocks_on_the_cells_clock(monkeypatch):
    """Each sample is (clock after - clock before) / runs in the block, sized per
    statement from its own warm-up (the backward: one run per block, on a graph
    built afresh in the block's setup); on CUDA the clock synchronises first."""
    ticks = itertools.count()
    devices, sized = [], []
    monkeypatch.setattr(
        training, "clock", lambda device: devices.append(device) or (lambda: float(next(ticks)))
    )  # every block lasts exactly 1 "s"
    for module in (single, sides):  # the forward's samples; the step's and the chain's sides
        monkeypatch.setattr(module, "block_size", lambda run_s: sized.append(run_s) or 10)
    row = single.run_cell(Cell(model="elman", strategy="bptt", tau=16, repeats=3))
    assert row["status"] == "ok", row["error"]
    # forward, backward, step, chain; block sizes: forward, step, the chain and its control
    assert devices == ["cpu"] * 4 and sized == [1.0] * 4  # backward: 1 run a block
    assert row["chain_ms_median"] == 100.0 and row["chain_op_ms_median"] == 100.0 * 16
    assert row["step_ms_samples"] == [100.0] * 3  # 1 s / 10 runs, in ms
    assert row["step_ms_median"] == row["fwd_ms_median"] == 100.0
    assert row["bwd_ms_median"] == 1000.0  # 1 s / 1 run
    assert row["step_ms_iqr"] == 0.0
    monkeypatch.undo()
    assert training.clock("cpu") is time.perf_counter
    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: synced.append(a))
    assert isinstance(training.clock("cuda")(), float) and synced == [()]


def test_every_cell_gets_exactly_repeats_timing_samples():
    assert single.block_size(0.007) == 10  # a fast step: 10 runs make a 70 ms sample
    assert single.block_size(0.0004) == 100
    assert single.block_size(0.2) == 1
    for cell in (
        Cell(model="jordan", strategy="teacher_forcing", tau=8, hidden=8, repeats=5),
        Cell(model="elman", strategy="bptt", tau=64, repeats=3),
    ):
        row = single.run_cell(cell)
        assert row["status"] == "ok", row["error"]
        assert len(row["step_ms_samples"]) == cell.repeats
        assert all(t > 0 for t in row["step_ms_samples"])


def test_python_m_rnnbench_bench_is_quiet_on_stderr():
    """The profiler behind peak_bytes prints 'USDT: ... profiler_start/stop' on fd 2
    unless silenced; ``python -m rnnbench`` is the command itself."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "rnnbench",
            "bench",
            "--model",
            "elman",
            "--strategy",
            "bptt",
            "--tau",
            "16",
            "--hidden",
            "8",
            "--repeats",
            "2",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["peak_method"] == "cpu_profiler_memory_events"
    assert "profiler_st" not in out.stderr and "USDT" not in out.stderr, out.stderr


def test_contention_is_read_from_the_threads_that_did_the_work():
    """A thread that ran 100 ms and waited 2 ms beside one (Ray's heartbeat, say) that ran
    0.5 ms and waited 20 ms: the block was crowded out 2%, not 18%."""
    from rnnbench.harness import procstat

    before = {1: (0, 0), 2: (0, 0)}
    after = {1: (100_000_000, 2_000_000), 2: (500_000, 20_000_000), 3: (10, 5_000_000)}
    on, wait = procstat.working_threads(before, after, 102_000_000)
    assert (on, wait) == (100_000_000, 2_000_000)
    assert procstat.wait_share(on, wait) < 0.02
    both = procstat.working_threads(before, after, 5_000_000)  # a 5 ms block: both worked
    assert both == (100_500_000, 22_000_000)


def test_the_chain_and_its_control_take_turns_with_their_baselines_in_rounds(monkeypatch):
    """On P threads against 1: chain and control, each on both thread counts, in
    ``repeats`` rounds; the k-th speedups of both come from round k."""
    calls = []
    real = sides.rounds
    monkeypatch.setattr(
        sides,
        "rounds",
        lambda parts, *a: calls.append([p.threads for p in parts]) or real(parts, *a),
    )
    cell = Cell(
        model="elman",
        strategy="bptt",
        tau=16,
        hidden=8,
        repeats=3,
        threads=2,
        baseline={"threads": 1},
    )
    row = single.run_cell(cell)
    assert row["status"] == "ok", row["error"]
    assert calls == [[2, 1, 2, 1]]
    assert len(row["chain_speedup_samples"]) == len(row["op_speedup_samples"]) == 3
    assert all(x > 0 for x in row["chain_speedup_samples"] + row["op_speedup_samples"])
