"""Claims decided by rules that could go the other way: each claim on synthetic rows
where it is true, where it is false, and below its evidence gate."""

from __future__ import annotations

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


def test_quadratic_time_does_not_hold():
    rows = rs.law_rows(a=0.0, b=1e-4, k=2.0, seeds=(0, 1))
    assert verdict(rows, "bptt_time_linear") == FAILS


def test_two_tau_values_are_not_measured_and_give_no_fit():
    rows = rs.law_rows(a=1.0, b=0.01, taus=(16, 1024), seeds=(0, 1, 2))
    c = judged(rows)["bptt_time_linear"]
    assert c.verdict == NM and "2 distinct τ" in c.evidence
    assert stats.overhead_fit([16, 16, 1024, 1024], [1, 1.1, 10, 11]) is None


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
    cells that shared their node (a sweep without --exclusive, whose neighbours slow a
    cell by an amount of their own) it is not judged. Bytes are judged either way."""
    rows = rs.law_rows(a=0.0, b=1e-4, k=2.0, seeds=(0, 1))
    assert verdict(rows, "bptt_time_linear") == FAILS
    shared = [{**r, "neighbours": 1} for r in rows]
    c = judged(shared)["bptt_time_linear"]
    assert c.verdict == NM and "timed beside other cells" in c.evidence
    assert verdict(shared, "bptt_memory_linear") == HOLDS


def test_training_cells_never_enter_a_fit():
    rows = rs.law_rows(a=1.0, b=0.01)
    # trained cells at the same τ with a wildly different step time
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


# --------------------------------------------------------------------------- intervals


def test_intervals_need_two_repetitions_and_cover_the_mean():
    assert stats.mean_ci([1.0]) is None and stats.ratio_ci([2.0]) is None
    assert stats.diff_ci([1.0, 2.0], [3.0]) is None
    ci = stats.mean_ci([1.0, 2.0, 3.0])
    assert ci.low < 2.0 < ci.high and ci.n == 3
    r = stats.ratio_ci([2.0, 2.0, 2.0])
    assert r.estimate == pytest.approx(2.0) and r.low == pytest.approx(2.0)


# --------------------------------------------------------------------------- more hardware


def test_more_cores_do_not_help_bptt_with_teacher_forcing_as_control():
    assert verdict(rs.hardware_rows(), "bptt_not_parallel") == HOLDS
    assert verdict(rs.hardware_rows(), "tf_parallel_workers") == HOLDS
    # BPTT gaining on all cores: the claim is false
    assert verdict(rs.hardware_rows(bptt_cores=1.6), "bptt_not_parallel") == FAILS
    # Elman split along time by deer gaining on 2 workers: false too
    assert verdict(rs.hardware_rows(deer_workers=1.7), "bptt_not_parallel") == FAILS


def test_no_gain_for_bptt_means_nothing_when_the_control_gains_nothing():
    c = judged(rs.hardware_rows(tf_cores=0.9))["bptt_not_parallel"]
    assert c.verdict == NM and "could not show one" in c.evidence


def test_teacher_forcing_gaining_nowhere_does_not_hold():
    assert verdict(rs.hardware_rows(tf_cores=0.9, tf_workers=0.95), "tf_parallel_workers") == FAILS


def test_batch_split_elman_at_batch_one_is_not_evidence():
    rows = rs.worker_rows(seeds=(0, 1, 2))  # Elman split by batch at B = 1
    c = judged(rows)["bptt_not_parallel"]
    assert c.verdict == NM and "idle workers by construction" in c.evidence


def test_unpaired_one_seed_cells_give_no_interval():
    c = judged(rs.worker_rows())["tf_parallel_workers"]
    assert c.verdict == NM and "no interval" in c.evidence
    # three seeds a side: an interval over seeds decides
    assert verdict(rs.worker_rows(seeds=(0, 1, 2), spread=0.01), "tf_parallel_workers") == HOLDS


# --------------------------------------------------------------------------- one device


def test_teacher_forcing_against_the_compiled_loop_splits_overhead_from_parallelism():
    c = judged(rs.overhead_rows(vs_loop=20.0, vs_compiled=2.0))["tf_speedup_not_overhead"]
    assert c.verdict == HOLDS
    assert "a factor 10 is the framework loop's per-step overhead" in c.evidence
    assert c.evidence.count("→ holds") == 4  # 1 and 2 threads × B = 1 and 32
    false = judged(rs.overhead_rows(vs_loop=20.0, vs_compiled=0.8))["tf_speedup_not_overhead"]
    assert false.verdict == FAILS and "100% overhead" in false.evidence


def test_tf_faster_judges_the_fastest_bptt_in_every_setting():
    assert verdict(rs.overhead_rows(), "tf_faster_one_device") == HOLDS
    rows = rs.overhead_rows()
    rows += rs.paired_rows(
        "jordan",
        "teacher_forcing",
        0.7,
        {"model": "elman", "strategy": "bptt_fused"},
        tau=1024,
        threads=1,
        batch=32,
    )
    c = judged(rows)["tf_faster_one_device"]
    assert c.verdict == FAILS and "fastest BPTT (bptt_fused)" in c.evidence


def test_tf_faster_on_unpaired_cells_uses_seeds():
    assert verdict(rs.timing_rows(), "tf_faster_one_device") == HOLDS
    assert verdict(rs.timing_rows(seeds=(0,)), "tf_faster_one_device") == NM
    slow = rs.timing_rows(
        laws={
            **rs.LAWS,
            ("jordan", "teacher_forcing"): {
                "time": (0.05, 1.2),
                "saved": (1.0, 1.0),
                "peak": (1.0, 1.0),
            },
        }
    )
    assert verdict(slow, "tf_faster_one_device") == FAILS


# --------------------------------------------------------------------------- DEER


def test_deer_depth_holds_with_bounded_iterations_and_fails_otherwise():
    assert verdict(rs.deer_rows(), "deer_depth") == HOLDS
    assert verdict(rs.deer_rows(iterations=lambda tau: tau // 2), "deer_depth") == FAILS
    assert verdict(rs.deer_rows(converged=False), "deer_depth") == FAILS
    c = judged(rs.deer_rows(rho=3.0))["deer_depth"]
    assert c.verdict == NM and "outside the claim" in c.evidence
    assert verdict(rs.deer_rows(taus=(64, 1024)), "deer_depth") == NM


def test_deer_faster_from_paired_timings():
    def rows(s):
        return rs.paired_rows(
            "elman",
            "deer",
            s,
            {"strategy": "bptt"},
            tau=4096,
            hidden=8,
            iterations=6,
            converged=True,
        )

    assert verdict(rows(3.0), "deer_faster") == HOLDS
    assert verdict(rows(0.3), "deer_faster") == FAILS


def test_deer_faster_ignores_runs_stopped_short_of_the_answer():
    def rows(s, converged):
        return rs.paired_rows(
            "elman",
            "deer",
            s,
            {"strategy": "bptt"},
            tau=4096,
            hidden=8,
            iterations=64,
            converged=converged,
        )

    c = judged(rows(3.0, False))["deer_faster"]
    assert c.verdict == NM and "not converged after 64 iterations" in c.evidence
    assert verdict(rows(3.0, True), "deer_faster") == HOLDS
    # one converged setting that wins still decides; the unconverged one is listed
    mixed = rows(3.0, True) + rs.paired_rows(
        "elman",
        "quasi_deer",
        5.0,
        {"strategy": "bptt"},
        tau=4096,
        hidden=8,
        iterations=64,
        converged=False,
    )
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


def test_exposure_bias_in_a_generation_setting_with_its_control():
    c = judged(rs.exposure_rows())["exposure_bias"]
    assert (
        c.verdict == HOLDS and "W = 0 control" in c.evidence and "control gap +0.000" in c.evidence
    )
    assert verdict(rs.exposure_rows(gap=-0.1), "exposure_bias") == FAILS


def test_a_redundant_feedback_channel_is_not_exposure_bias():
    """The review's artefact: text with its input, where y^(t−1) = x^(t) — the W = 0
    control's teacher-forced loss equals the model's, so the gap says nothing."""
    rows = rs.exposure_rows(gap=0.227, feedback_worth=0.0, task_options={})
    c = judged(rows)["exposure_bias"]
    assert c.verdict == NM and "not a generation setting" in c.evidence
    c = judged(rs.exposure_rows(control=False))["exposure_bias"]
    assert c.verdict == NM and "no W = 0 control" in c.evidence


# --------------------------------------------------------------------------- the page


def test_every_rule_prints_its_text_gate_and_decision():
    got = claims.evaluate(pd.DataFrame(rs.law_rows(a=1.0, b=0.01)))
    assert [c.key for c in got] == [r.key for r in claims.RULES]
    for c in got:
        assert c.claim and c.rule and c.gate and c.evidence
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


def test_a_best_bptt_baseline_is_judged_as_the_strategy_it_stood_for():
    rows = rs.paired_rows(
        "jordan",
        "teacher_forcing",
        0.8,
        {"model": "elman", "strategy": "best_bptt"},
        tau=4096,
        batch=32,
        baseline_config='{"model": "elman", "strategy": "bptt_fused"}',
    )
    c = judged(rows)["tf_faster_one_device"]
    assert c.verdict == FAILS and "fastest BPTT (bptt_fused)" in c.evidence


def test_an_exact_linear_count_is_linear():
    """Saved bytes are counted, not timed: exactly c·τ, no noise, a = 0 to rounding."""
    rows = rs.law_rows(a=1.0, b=0.01)
    for r in rows:
        r["saved_bytes"] = 4096.0 * r["tau"]
    assert verdict(rows, "bptt_memory_linear") == HOLDS
