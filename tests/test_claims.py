"""Claims decided by rules that could go the other way: each claim on synthetic rows
where it is true, where it is false, and below its evidence gate — among them the
reviewer's cases (the step gaining 1.45x while the chain gains 1.1x; quasi-DEER capped
beside a converging DEER; iterations growing like τ^0.4; no train/test mismatch)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import report_synthetic as rs

from rnnbench import stats
from rnnbench.report import claims

HOLDS, FAILS, NM = "holds", "does not hold", "not measured"


def judged(rows: list[dict]) -> dict[str, claims.Claim]:
    return {c.key: c for c in claims.evaluate(pd.DataFrame(rows))}


def verdict(rows: list[dict], key: str) -> str:
    return judged(rows)[key].verdict


# --------------------------------------------------------------------------- O(τ)


def test_linear_time_with_a_large_fixed_cost_is_linear():
    """T = 5 ms + 0.001 ms·τ over τ 16..1024: the log-log slope is far below 1 (the fixed
    cost flattens it), yet T = a + b·τ is the law."""
    rows = rs.law_rows(a=5.0, b=0.001, taus=(16, 32, 64, 128, 256, 512, 1024), seeds=(0, 1))
    loglog = stats.power_fit([r["tau"] for r in rows], [r["step_ms_median"] for r in rows])
    assert loglog.ci_high < 0.5  # the old rule would have said: not O(τ)
    c = judged(rows)["bptt_time_linear"]
    assert c.verdict == HOLDS, c.evidence
    assert "fixed cost a = 4.9" in c.evidence or "fixed cost a = 5" in c.evidence
    assert c.finding.startswith("Over τ = 16–1024 (bptt_compiled") and c.finding.endswith(
        ": holds."
    )


def test_quadratic_time_does_not_hold():
    rows = rs.law_rows(a=0.0, b=1e-4, k=2.0, seeds=(0, 1))
    assert verdict(rows, "bptt_time_linear") == FAILS


def test_time_is_decided_on_the_compiled_loop_alone():
    """The framework loop bending upwards (its autograd graph) is shown as an
    implementation effect; only the compiled loop — the algorithm — decides."""
    rows = rs.law_rows(a=1.0, b=0.01, seeds=(0, 1))  # compiled: linear
    rows += rs.law_rows(a=0.0, b=1e-4, k=1.5, seeds=(0, 1), strategy="bptt")
    c = judged(rows)["bptt_time_linear"]
    assert c.verdict == HOLDS and "shown, not deciding" in c.evidence
    assert "bptt, text, B=1, H=32, threads=1: τ² share" in c.evidence.split("not deciding")[1]
    framework_only = rs.law_rows(a=0.0, b=1e-4, k=1.5, seeds=(0, 1), strategy="bptt")
    c = judged(framework_only)["bptt_time_linear"]
    assert c.verdict == NM and "no Elman bptt_compiled timing cells" in c.evidence


def test_two_tau_values_are_not_measured_and_give_no_fit():
    rows = rs.law_rows(a=1.0, b=0.01, taus=(16, 1024), seeds=(0, 1, 2))
    c = judged(rows)["bptt_time_linear"]
    assert c.verdict == NM and "2 distinct τ" in c.evidence
    assert stats.overhead_fit([16, 16, 1024, 1024], [1, 1.1, 10, 11]) is None


def test_every_draw_fitted_at_once_equals_its_own_weighted_fit():
    """:func:`stats.overhead_fits` (the power simulation's batch) against an independent
    weighted least squares of each row (numpy's lstsq, the covariance from the residuals):
    the τ² share with its interval, the fixed cost a with its interval; a linear row and a
    quadratic one are told apart."""
    import numpy as np
    from scipy import stats as st

    rng = np.random.default_rng(1)
    tau = np.array([256, 512, 1024, 2048, 4096] * 2, dtype=float)
    truth = np.stack([2 + 0.01 * tau, 2 + 0.01 * tau + 4e-6 * tau**2])
    Y = truth * np.exp(rng.normal(0, 0.05, truth.shape))
    fits = stats.overhead_fits(tau, Y)
    s = tau / tau.max()

    def wls(X, y):
        """Coefficients and their t half-widths, weights 1/y² (rows scaled by 1/y)."""
        Xw = X / y[:, None]
        coef, res, *_ = np.linalg.lstsq(Xw, np.ones_like(y), rcond=None)
        df = len(y) - X.shape[1]
        cov = res[0] / df * np.linalg.inv(Xw.T @ Xw)
        return coef, st.t.ppf(0.975, df) * np.sqrt(np.diag(cov))

    for y, fit in zip(Y, fits):
        coef, half = wls(np.column_stack([np.ones_like(s), s, s * s]), y)
        share, half_q = coef[2] / coef.sum(), half[2] / coef.sum()
        assert fit.quad_share == pytest.approx(share, rel=1e-9)
        assert (fit.quad_low, fit.quad_high) == pytest.approx(
            (share - half_q, share + half_q), rel=1e-9
        )
        line, half_l = wls(np.column_stack([np.ones_like(s), s]), y)
        assert (fit.a_low, fit.a, fit.a_high) == pytest.approx(
            (line[0] - half_l[0], line[0], line[0] + half_l[0]), rel=1e-9
        )
        assert fit == stats.overhead_fit(tau, y)
    assert stats.law_verdict(fits[0], 0.2) == stats.LINEAR
    assert stats.law_verdict(fits[1], 0.2) == stats.NOT_LINEAR


def test_too_short_a_tau_range_is_not_measured():
    rows = rs.law_rows(a=1.0, b=0.01, taus=(64, 128, 256), seeds=(0, 1))
    c = judged(rows)["bptt_time_linear"]
    assert c.verdict == NM and "under 8×" in c.evidence


def test_one_failing_setting_among_four_is_not_holds():
    rows = []
    for batch in (1, 2, 4):
        rows += rs.law_rows(a=1.0, b=0.01, batch=batch)
    assert verdict(rows, "bptt_time_linear") == HOLDS
    rows += rs.law_rows(a=0.0, b=1e-4, k=2.0, batch=8)
    c = judged(rows)["bptt_time_linear"]
    assert c.verdict == FAILS and c.evidence.count("→ holds") == 3


def test_cells_timed_beside_others_never_enter_a_time_fit():
    """Time growing faster than τ reads 'does not hold' from cells that ran alone; from
    cells that shared their node it is not judged.  Bytes are judged either way."""
    rows = rs.law_rows(a=0.0, b=1e-4, k=2.0, seeds=(0, 1))
    assert verdict(rows, "bptt_time_linear") == FAILS
    shared = [{**r, "neighbours": 1} for r in rows]
    c = judged(shared)["bptt_time_linear"]
    assert c.verdict == NM and "timed beside other cells" in c.evidence
    assert verdict(shared, "bptt_memory_linear") == HOLDS


def test_a_contended_cell_is_kept_out_of_a_time_fit():
    """A truly linear law with one replicate at the largest τ timed while its threads
    waited for a CPU (a busy neighbour process): read as it is, the fit bends; with the
    row marked contended (its wait share recorded), it is left out and the law holds."""
    rows = rs.law_rows(a=1.0, b=0.01, seeds=(0, 1), noise=0.01)
    slowed = {**rows[-1], "step_ms_median": rows[-1]["step_ms_median"] * 3.0, "seed": 5}
    slowed = rs.row(**{k: v for k, v in slowed.items() if k != "cell_id"})
    assert verdict(rows + [slowed], "bptt_time_linear") != HOLDS
    waited = {**slowed, "wait_share": 0.45, "cpu_share": 0.52}
    c = judged(rows + [waited])["bptt_time_linear"]
    assert c.verdict == HOLDS and "contended" in c.evidence


def test_the_wait_decides_contention_where_it_was_recorded():
    """The 1-minute load average lags: cells that ran alone right after their neighbours
    read a load of 2.8 on 2 CPUs though their threads never waited (quick's time law was
    left out whole that way).  Where the wait was recorded it decides; without it, the
    load and the CPU share do."""
    from rnnbench.results.rows import contended

    alone = {"threads": 1, "cpu_share": 1.0, "wait_share": 0.001, "load_before": 2.8}
    alone["node_cpus"] = 2
    assert not contended(alone)
    assert contended({**alone, "wait_share": 0.2})
    assert contended({**alone, "baseline_wait_share": 0.3})  # the paired side waited
    assert contended({**alone, "wait_share": None})  # no wait statistics: the load decides
    assert contended({**alone, "wait_share": None, "load_before": 1.0, "cpu_share": 0.5})
    assert not contended({**alone, "wait_share": None, "load_before": 1.0})
    rows = [{**r, **alone} for r in rs.law_rows(a=1.0, b=0.01, seeds=(0, 1), noise=0.01)]
    assert verdict(rows, "bptt_time_linear") == HOLDS
    waited = [{**r, "wait_share": 0.2} for r in rows]
    assert verdict(waited, "bptt_time_linear") == NM


def test_training_cells_never_enter_a_fit():
    rows = rs.law_rows(a=1.0, b=0.01)
    rows += [
        {
            **r,
            "train_steps": 300,
            "step_ms_median": r["step_ms_median"] * r["tau"],
            "cell_id": r["cell_id"] + "t",
        }
        for r in rows
    ]
    c = judged(rows)["bptt_time_linear"]
    assert c.verdict == HOLDS and c.cells == 7


def test_memory_law_flips_on_quadratic_memory():
    rows = rs.law_rows(a=1.0, b=0.01)
    assert verdict(rows, "bptt_memory_linear") == HOLDS
    for r in rows:
        r["saved_bytes"] = 3.0 * r["tau"] ** 2
    assert verdict(rows, "bptt_memory_linear") == FAILS


def test_a_law_left_undecided_says_how_often_the_rule_would_decide():
    """At 25% noise on two replicates a τ the O(τ) rule rarely decides a truly linear law:
    the page says so beside the verdict, with the noise it measured."""
    rows = rs.law_rows(a=1.0, b=0.01, seeds=(0, 1), noise=0.25)
    c = judged(rows)["bptt_time_linear"]
    assert c.power_text.startswith("power: at this run's")
    # the sentence gives the interval that left it undecided, against the band
    assert "a τ² term explains" in c.finding and "(linear: the interval within ±0.2)" in c.finding
    assert c.finding.endswith(f": {c.verdict}.")
    assert "decides a truly linear law in" in c.evidence
    quiet = judged(rs.law_rows(a=1.0, b=0.01, seeds=(0, 1), noise=0.01))["bptt_time_linear"]
    assert quiet.power > c.power and quiet.power > 0.8


def test_a_law_timed_in_one_process_cancels_the_process_speed():
    """Three processes running 1.0x, 1.8x and 1.3x as fast (this VM's vCPUs differ): the
    τ values taken in turns inside each process decide a linear law; the same times as
    cells each in its own process leave it undecided (the speed is in their spread)."""
    inside = rs.process_law_rows(a=1.0, b=0.0035)
    c = judged(inside)["bptt_time_linear"]
    assert c.verdict == HOLDS, c.evidence
    assert "taking turns in each process" in c.evidence and "3 processes" in c.evidence
    assert "taking turns in each of 3 processes" in c.finding
    apart = [
        rs.row(
            model="elman",
            strategy="bptt_compiled",
            tau=t,
            step_ms_median=ms,
            replicate=r["replicate"],
        )
        for r in inside
        for t, ms in zip(r["law_taus"], r["law_step_ms"])
    ]
    assert verdict(apart, "bptt_time_linear") == NM
    # both kinds in one setting: the law cells decide, the others are shown
    both = judged(inside + apart)["bptt_time_linear"]
    assert both.verdict == HOLDS and "each τ in its own process" in both.evidence


def test_beside_law_cells_an_undecided_setting_is_shown_and_a_decided_one_counts():
    """Law cells decide; a setting of one-τ-per-process cells (say paired cells at 2
    threads from other parts) that the spread between processes leaves undecided is
    shown beside them; one that is decidedly not linear still makes the claim fail."""
    law = rs.process_law_rows(a=1.0, b=0.0035)
    noisy = rs.law_rows(a=1.0, b=0.01, seeds=(0,), noise=0.4, threads=2)
    c = judged(law + noisy)["bptt_time_linear"]
    assert c.verdict == HOLDS and "undecided beside the law cells" in c.evidence, c.evidence
    assert verdict(noisy, "bptt_time_linear") == NM  # alone, that setting decides nothing
    quad = rs.law_rows(a=0.0, b=1e-4, k=2.0, seeds=(0, 1), threads=2)
    assert verdict(law + quad, "bptt_time_linear") == FAILS


def test_a_law_in_one_process_fails_on_quadratic_time_and_needs_three_processes():
    quad = rs.process_law_rows(a=1.0, b=0.001, k=2.0)
    assert verdict(quad, "bptt_time_linear") == FAILS
    two = judged(rs.process_law_rows(a=1.0, b=0.0035, speeds=(1.0, 1.8)))["bptt_time_linear"]
    assert two.verdict == NM and "2 process(es), gate 3" in two.evidence
    # a wide spread between processes' shares: undecided, with the rule's power beside it
    noisy = judged(rs.process_law_rows(a=1.0, b=0.0035, noise=0.3))["bptt_time_linear"]
    assert noisy.verdict == NM and noisy.power_text.startswith("power:")
    short = rs.process_law_rows(a=1.0, b=0.0035, taus=(256, 512, 1024))
    assert "τ range under 8×" in judged(short)["bptt_time_linear"].evidence


# --------------------------------------------------------------------------- intervals


def test_intervals_need_two_repetitions_and_cover_the_mean():
    assert stats.mean_ci([1.0]) is None and stats.ratio_ci([2.0]) is None
    assert stats.diff_ci([1.0, 2.0], [3.0]) is None
    ci = stats.mean_ci([1.0, 2.0, 3.0])
    assert ci.low < 2.0 < ci.high and ci.n == 3
    r = stats.ratio_ci([2.0, 2.0, 2.0])
    assert r.estimate == pytest.approx(2.0) and r.low == pytest.approx(2.0)


def test_a_speedup_interval_is_taken_over_replicates_not_pairs():
    """One replicate with nine tight pairs gives a point, never an interval."""
    one = rs.paired_rows(
        "jordan", "teacher_forcing", 1.6, {"threads": 1}, tau=1024, threads=2, replicates=1
    )
    c = judged(one)["tf_parallel_workers"]
    assert c.verdict == NM and "1 replicate(s) (gate 3" in c.evidence
    three = rs.paired_rows(
        "jordan", "teacher_forcing", 1.6, {"threads": 1}, tau=1024, threads=2, replicates=3
    )
    assert verdict(three, "tf_parallel_workers") == HOLDS


# --------------------------------------------------------------------------- the chain


def test_the_chain_gaining_no_more_than_its_steps_cannot_be_reduced():
    """The reviewer's case: the whole step gains 1.45x on 2 cores, the chain 1.1x, one
    step's operations 1.1x: parallel hardware sped up the steps, not the chain — holds."""
    c = judged(rs.chain_rows(step=1.45, chain=1.1, op=1.1))["bptt_not_parallel"]
    assert c.verdict == HOLDS, c.evidence
    assert "whole step, context only: 1.45" in c.evidence
    assert "more cores speed up each step, not the O(τ) chain" in c.finding


def test_the_chain_gaining_beyond_its_steps_does_not_hold():
    c = judged(rs.chain_rows(step=1.45, chain=1.6, op=1.1))["bptt_not_parallel"]
    assert c.verdict == FAILS, c.evidence


def test_a_time_split_method_that_gains_refutes_the_claim():
    rows = rs.chain_rows() + rs.paired_rows(
        "elman", "deer", 1.7, {"workers": 1}, tau=1024, workers=2, split="time", harness="group"
    )
    c = judged(rows)["bptt_not_parallel"]
    assert c.verdict == FAILS and "split along time" in c.evidence


def test_the_whole_step_decides_nothing_without_the_chain():
    step_only = rs.paired_rows("elman", "bptt_compiled", 1.45, {"threads": 1}, tau=4096, threads=2)
    assert verdict(step_only, "bptt_not_parallel") == NM


def test_teacher_forcing_gaining_nowhere_does_not_hold():
    assert verdict(rs.hardware_rows(tf_cores=0.9, tf_workers=0.95), "tf_parallel_workers") == FAILS
    assert verdict(rs.hardware_rows(), "tf_parallel_workers") == HOLDS


def test_unpaired_cells_need_three_replicates_a_side():
    c = judged(rs.worker_rows())["tf_parallel_workers"]
    assert c.verdict == NM and "gate 3 a side" in c.evidence
    assert verdict(rs.worker_rows(seeds=(0, 1, 2), spread=0.01), "tf_parallel_workers") == HOLDS


# --------------------------------------------------------------------------- one device


def test_one_thread_decides_no_on_one_device_claim():
    """On 1 thread teacher forcing loses to the compiled loop, on 2 it wins: the 1-thread
    setting is a diagnostic (it compares the two models' work), the 2-core one decides."""
    rows = rs.paired_rows(
        "jordan",
        "teacher_forcing",
        0.9,
        {"model": "elman", "strategy": "bptt_compiled"},
        tau=4096,
        batch=32,
        threads=1,
    ) + rs.paired_rows(
        "jordan",
        "teacher_forcing",
        1.3,
        {"model": "elman", "strategy": "bptt_compiled"},
        tau=4096,
        batch=32,
        threads=2,
    )
    c = judged(rows)["tf_faster_one_device"]
    assert c.verdict == HOLDS and "diagnostics on 1 thread" in c.evidence
    assert "Teacher forcing on 2 cores is 1.3" in c.finding
    one_thread_only = judged(rows[:3])["tf_faster_one_device"]
    assert one_thread_only.verdict == NM


def test_teacher_forcing_against_the_compiled_loop_splits_overhead_from_parallelism():
    c = judged(rs.overhead_rows(vs_loop=20.0, vs_compiled=2.0))["tf_speedup_not_overhead"]
    assert c.verdict == HOLDS
    assert "a factor 10 is the framework loop's per-step overhead" in c.evidence
    assert c.evidence.count("→ holds") == 2  # 2 threads × B = 1 and 32 decide
    assert c.evidence.count("diagnostic on 1 thread") == 2
    false = judged(rs.overhead_rows(vs_loop=20.0, vs_compiled=0.8))["tf_speedup_not_overhead"]
    assert false.verdict == FAILS and "100% overhead" in false.evidence


def test_tf_faster_judges_the_fastest_bptt_in_every_setting():
    assert verdict(rs.overhead_rows(), "tf_faster_one_device") == HOLDS
    rows = rs.overhead_rows() + rs.paired_rows(
        "jordan",
        "teacher_forcing",
        0.7,
        {"model": "elman", "strategy": "bptt_fused"},
        tau=1024,
        threads=2,
        batch=32,
    )
    c = judged(rows)["tf_faster_one_device"]
    assert c.verdict == FAILS and "fastest BPTT (bptt_fused)" in c.evidence


def test_a_best_bptt_baseline_is_judged_as_the_strategy_it_stood_for():
    rows = rs.paired_rows(
        "jordan",
        "teacher_forcing",
        0.8,
        {"model": "elman", "strategy": "best_bptt"},
        tau=4096,
        batch=32,
        threads=2,
        baseline_config='{"model": "elman", "strategy": "bptt_fused"}',
    )
    c = judged(rows)["tf_faster_one_device"]
    assert c.verdict == FAILS and "fastest BPTT (bptt_fused)" in c.evidence


# --------------------------------------------------------------------------- DEER


def test_deer_depth_holds_with_bounded_iterations_and_fails_otherwise():
    wide = (64, 256, 1024, 4096)
    assert verdict(rs.deer_rows(taus=wide), "deer_depth") == HOLDS
    assert verdict(rs.deer_rows(iterations=lambda tau: tau // 2), "deer_depth") == FAILS
    c = judged(rs.deer_rows(rho=3.0, lyapunov=0.2))["deer_depth"]
    assert c.verdict == NM and "λ = +0.200: not contracting" in c.evidence
    assert "ρ=3" in c.evidence  # a setting left out names its ρ
    c = judged(rs.deer_rows(taus=(64, 256, 1024)))["deer_depth"]
    assert c.verdict == NM and "under 32×" in c.evidence


def test_iterations_growing_like_tau_to_the_0_4_do_not_hold():
    """The old limit τ^0.5 read this as bounded; 0.2 with τ spanning 32× does not."""
    rows = rs.deer_rows(
        iterations=lambda tau: max(1, round(0.5 * tau**0.4)),
        taus=(64, 256, 1024, 4096, 16384, 65536),
    )
    assert verdict(rows, "deer_depth") != HOLDS
    assert verdict(rows, "deer_depth") == FAILS


def test_deer_converging_beside_a_capped_quasi_deer_holds():
    """The reviewer's case: deer converges in 6 iterations at every τ, quasi-DEER hits its
    cap of 64 at ρ 0.9: the depth can be cut (by deer); quasi-DEER's own claim is not
    decided from capped runs — they are censored, never fitted as k = 64."""
    deer = rs.deer_rows(taus=(64, 256, 1024, 4096))
    quasi = rs.deer_rows(
        strategy="quasi_deer",
        taus=(64, 256, 1024, 4096),
        iterations=lambda tau: 64,
        cap=64,
        converged=False,
    )
    got = judged(deer + quasi)
    assert got["parallel_depth"].verdict == HOLDS
    assert got["deer_depth"].verdict == HOLDS
    q = got["quasi_deer_depth"]
    assert q.verdict == NM and "k > 64" in q.evidence and "τ^0.00" not in q.evidence


def test_deer_faster_is_judged_on_more_than_one_thread():
    def rows(s, threads=2, converged=True, strategy="deer"):
        return rs.paired_rows(
            "elman",
            strategy,
            s,
            {"strategy": "bptt"},
            tau=4096,
            hidden=8,
            iterations=6 if converged else 64,
            converged=converged,
            threads=threads,
        )

    assert verdict(rows(3.0), "deer_faster") == HOLDS
    assert verdict(rows(0.3), "deer_faster") == FAILS
    assert verdict(rows(3.0, threads=1), "deer_faster") == NM  # a diagnostic only
    c = judged(rows(3.0, converged=False))["deer_faster"]
    assert c.verdict == NM and "not converged after 64 iterations" in c.evidence
    mixed = rows(3.0) + rows(5.0, converged=False, strategy="quasi_deer")
    c = judged(mixed)["deer_faster"]
    assert c.verdict == HOLDS and "quasi_deer" in c.evidence and "not converged" in c.evidence


# --------------------------------------------------------------------------- capability


CAPACITY = {
    ("elman", "bptt"): 0.99,
    ("jordan", "teacher_forcing"): 0.13,
    ("jordan", "free_running"): 0.56,
}


def test_capacity_is_judged_on_jordans_best_strategy():
    c = judged(rs.capacity_rows(CAPACITY))["jordan_less_powerful"]
    assert c.verdict == HOLDS and "Jordan + free_running 0.5" in c.evidence
    equal = {**CAPACITY, ("jordan", "scheduled_sampling"): 0.99}
    assert verdict(rs.capacity_rows(equal), "jordan_less_powerful") == FAILS


def test_capacity_from_teacher_forcing_alone_is_not_measured():
    only_tf = {k: v for k, v in CAPACITY.items() if k[1] != "free_running"}
    c = judged(rs.capacity_rows(only_tf))["jordan_less_powerful"]
    assert c.verdict == NM and "failure by construction" in c.evidence


def test_a_one_seed_twenty_step_loss_comparison_is_not_measured():
    rows = rs.capacity_rows(CAPACITY, seeds=(0,), steps=20)
    rows += rs.capacity_rows(
        {("elman", "bptt"): 0.5, ("jordan", "teacher_forcing"): 0.3},
        task="text",
        seeds=(0,),
        steps=20,
    )
    got = judged(rows)
    for key in ("jordan_less_powerful", "belief_jordan_better"):
        assert got[key].verdict == NM, key
        assert "1 seed(s), the gate is 3" in got[key].evidence
    rows = rs.capacity_rows(CAPACITY, steps=20)
    assert "20 training steps" in judged(rows)["jordan_less_powerful"].evidence


def test_parity_holds_when_jordan_solves_it_and_not_otherwise():
    solved = {("elman", "bptt"): 0.99, ("jordan", "teacher_forcing"): 0.99}
    assert verdict(rs.capacity_rows(solved, task="running_parity"), "jordan_fine_parity") == HOLDS
    failed = {("elman", "bptt"): 0.99, ("jordan", "teacher_forcing"): 0.55}
    assert verdict(rs.capacity_rows(failed, task="running_parity"), "jordan_fine_parity") == FAILS


def test_belief_needs_jordan_better_on_every_task():
    jordan = {("elman", "bptt"): 0.5, ("jordan", "teacher_forcing"): 0.8}
    elman = {("elman", "bptt"): 0.8, ("jordan", "teacher_forcing"): 0.5}
    both = rs.capacity_rows(jordan, task="running_parity") + rs.capacity_rows(jordan)
    assert verdict(both, "belief_jordan_better") == HOLDS
    mixed = rs.capacity_rows(jordan, task="running_parity") + rs.capacity_rows(elman)
    assert verdict(mixed, "belief_jordan_better") == FAILS


# --------------------------------------------------------------------------- exposure bias


def test_exposure_bias_is_the_mismatch_against_self_fed_training():
    c = judged(rs.exposure_rows(mismatch=0.3))["exposure_bias"]
    assert c.verdict == HOLDS and "mismatch +0.3" in c.evidence and "W = 0 control" in c.evidence
    assert "loss by position" in c.evidence


def test_no_train_test_mismatch_is_not_exposure_bias():
    """The reviewer's case: free running is worse than teacher-forced loss for both
    models alike (no model can beat the W = 0 floor), but the model trained on its own
    outputs does no better: no train/test mismatch, so never 'holds'."""
    c = judged(rs.exposure_rows(gap=0.5, mismatch=0.0))["exposure_bias"]
    assert c.verdict != HOLDS, c.evidence


def test_without_a_self_fed_model_there_is_no_mismatch_to_measure():
    c = judged(rs.exposure_rows(self_fed=False))["exposure_bias"]
    assert c.verdict == NM and "no mismatch to measure" in c.evidence


def test_a_redundant_feedback_channel_is_not_exposure_bias():
    """Text with its input, where y^(t−1) = x^(t): the W = 0 control's teacher-forced loss
    equals the model's, so running free only corrupts a redundant channel."""
    c = judged(rs.exposure_rows(feedback_worth=0.0, task_options={}))["exposure_bias"]
    assert c.verdict == NM and "not a generation setting" in c.evidence
    c = judged(rs.exposure_rows(control=False))["exposure_bias"]
    assert c.verdict == NM and "no W = 0 control" in c.evidence


# --------------------------------------------------------------------------- the page


def test_every_rule_prints_its_text_gate_decision_and_finding():
    got = claims.evaluate(pd.DataFrame(rs.law_rows(a=1.0, b=0.01)))
    assert [c.key for c in got] == [r.key for r in claims.RULES]
    for c in got:
        assert c.claim and c.rule and c.gate and c.evidence and c.finding
        assert c.verdict in claims.VERDICTS
    with pytest.raises(ValueError):
        claims.judge(
            claims.Rule(
                "k",
                "chapter",
                "t",
                lambda r: "",
                lambda r: "",
                lambda rows, r: claims.Decision("probably"),
            ),
            pd.DataFrame(rs.law_rows(a=1.0, b=0.01)),
        )


def test_every_setting_means_every_setting():
    assert claims.every_setting([(HOLDS, "")] * 3 + [(FAILS, "")]) == FAILS
    assert claims.every_setting([(HOLDS, "")] * 3 + [(NM, "")]) == NM
    assert claims.every_setting([(HOLDS, "")] * 4) == HOLDS
    assert claims.every_setting([]) == NM
    assert claims.some_setting([(FAILS, ""), (HOLDS, "")]) == HOLDS
    assert claims.some_setting([(FAILS, ""), (NM, "")]) == NM


def test_an_exact_linear_count_is_linear():
    """Saved bytes are counted, not timed: exactly c·τ, no noise, a = 0 to rounding."""
    rows = rs.law_rows(a=1.0, b=0.01)
    for r in rows:
        r["saved_bytes"] = 4096.0 * r["tau"]
    assert verdict(rows, "bptt_memory_linear") == HOLDS
    assert math.isnan(judged(rows)["bptt_memory_linear"].power)  # an exact count: no noise
