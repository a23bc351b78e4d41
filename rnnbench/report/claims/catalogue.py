"""Every claim of the chapter as rnnbench checks it: its words, the rule that decides it
and the evidence it needs, in words the page prints, beside the function that decides it
(:mod:`.speed`, :mod:`.deer`, :mod:`.capability`).  The one place the rules are written;
the claims page and ``docs/claims.md`` render them from here."""

from __future__ import annotations

from collections.abc import Callable

from rnnbench.facts import COMPILED_BPTT, NEWTON_SOLVERS, SEQUENTIAL_BPTT
from rnnbench.report.claims import capability, deer, laws, speed
from rnnbench.report.claims.rules import Rule, Rules


def _law_gate(r: Rules) -> str:
    return (
        f"timing cells only (train_steps = 0, one process, not contended; for time, "
        f"cells that ran alone on their node: exclusive); per setting ≥ {r.min_taus} "
        f"distinct τ spanning ≥ {r.min_tau_ratio:g}× and ≥ {r.min_cells} cells "
        "(replicates and seeds are points of the fit)"
    )


def _law_how(what: str, deciding: str) -> str:
    return (
        f"{what} per setting, fitted as T = a + b·τ + c·τ² (weights 1/T²): linear when "
        "the τ² term's share of T(τ_max) has its 95% CI inside ±{band} and a ≥ 0 is not "
        "rejected (the 95% CI of a in T = a + b·τ reaches −1% of the smallest T); not "
        "linear when the CI lies outside the band; holds in every judged setting of "
        f"{deciding}"
    )


def _speed_gate(r: Rules) -> str:
    return (
        f"timing cells at the same setting and τ, not contended; ≥ {r.min_replicates} "
        "replicates (fresh processes) or seeds: each a paired speedup (the cell taking "
        "turns with its baseline in one process), or the two sides' own cells"
    )


def _loss_gate(r: Rules) -> str:
    return (
        f"trained cells: ≥ {r.min_seeds} seeds and ≥ {r.min_train_steps} training steps "
        "per side; a 95% CI over seeds on every comparison"
    )


def _depth_gate(r: Rules) -> str:
    return (
        f"converged runs: ≥ {r.min_taus} distinct τ spanning ≥ {r.growth_tau_ratio:g}× and "
        f"≥ {r.min_cells} runs per setting; runs stopped at their iteration cap are "
        "censored (k > cap), listed, never fitted"
    )


def _depth_how(who: str) -> Callable[[Rules], str]:
    return lambda r: (
        f"{who} at contracting dynamics (largest Lyapunov exponent λ < 0 where recorded, "
        f"else ρ < {r.contracting:g}), per setting: holds when the 95% CI of the log-log slope "
        f"of its Newton iterations k against τ lies below {r.growth} (k bounded) and "
        f"k·(2⌈log₂τ⌉ − 1) < τ at the largest τ, with no censored run; does not hold when "
        f"the CI lies above {r.growth} or k·(2⌈log₂τ⌉ − 1) ≥ τ; in every setting. Settings "
        "that do not contract are shown (with ρ and λ), not judged"
    )


BPTT_TIME = Rule(
    "bptt_time_linear",
    "chapter",
    "BPTT's run time is O(τ): it grows linearly with the sequence length.",
    lambda r: _law_how(
        "step time of Elman BPTT",
        f"the compiled loop ({COMPILED_BPTT}), the "
        "algorithm without a framework's per-step cost; the framework loops "
        "and the loop without an autograd graph are shown, not deciding. Where a setting "
        "has law cells (law_taus: its τ values taking turns in one process) the fit is "
        "made inside each process, scaled by its own T(τ_max) so the process's speed "
        "cancels, and the CI of the τ² share (and of a) is taken over the processes; "
        "cells timed one τ per process are then shown beside it, not deciding, and where "
        "a run has law cells a setting without them that is left undecided is shown too "
        "(one that decides still counts)",
    ).replace("{band}", f"{r.linear_band}"),
    lambda r: (
        _law_gate(r)
        + f"; law cells: ≥ {r.min_replicates} processes of the same τ values, spanning "
        f"≥ {r.min_tau_ratio:g}×"
    ),
    laws.bptt_time,
)

BPTT_MEMORY = Rule(
    "bptt_memory_linear",
    "chapter",
    "BPTT's memory is O(τ): the states of every step are kept for the backward pass.",
    lambda r: _law_how("saved bytes of Elman BPTT", ", ".join(SEQUENTIAL_BPTT)).replace(
        "{band}", f"{r.linear_band}"
    ),
    _law_gate,
    laws.bptt_memory,
)

BPTT_HARDWARE = Rule(
    "bptt_not_parallel",
    "chapter",
    "BPTT's O(τ) time cannot be reduced by parallel hardware (more workers or more cores): "
    "the forward graph is inherently sequential.",
    lambda r: (
        f"judged on the sequential chain alone — the recurrence h = tanh(a + W h) and "
        f"its backward δ-recurrence, without the products batched over time — on P "
        f"cores against 1, divided by the speedup P cores give one step's operations "
        f"(the control: the same operations with each step's input given, timed in the "
        f"same cell; the four sides taking turns in rounds), per replicate the median "
        f"over rounds: holds when "
        f"that ratio's 95% CI over replicates lies at or below {r.no_gain}× (the "
        f"chain gains no more than its steps do); does not hold when it lies above, "
        f"or when Elman split along time (scan_bptt, deer, quasi_deer) over N workers "
        f"gains above {r.no_gain}× against 1 worker; every setting. The whole training "
        "step's gain is shown as context and decides nothing"
    ),
    lambda r: (
        f"sequential BPTT cells on more than one thread with a baseline {{threads: 1}}, "
        f"their chain and its control paired too; ≥ {r.min_replicates} replicates"
    ),
    speed.bptt_hardware,
)

TF_DEPTH = Rule(
    "tf_depth_one",
    "chapter",
    "Teacher forcing decouples the time steps: the sequential depth is 1, not τ.",
    lambda r: (
        "depth of every Jordan + teacher-forcing cell, a constant of the strategy "
        "registry copied into each row: 'by construction' when it is 1 at every τ "
        "(the timings vs workers and cores are the measured evidence); does not "
        "hold when the registry says otherwise"
    ),
    lambda r: "any Jordan + teacher-forcing row",
    speed.tf_depth,
)

TF_HARDWARE = Rule(
    "tf_parallel_workers",
    "chapter",
    "With teacher forcing the time steps can be computed in parallel: more workers or more "
    "cores, less time.",
    lambda r: (
        f"Jordan + teacher forcing split along time over N workers against 1, and on "
        f"all cores against 1 thread, the speedup's 95% CI over replicates: holds when "
        f"in some comparison it lies above {r.no_gain}×; does not hold when in every "
        "comparison it lies at or below"
    ),
    _speed_gate,
    speed.tf_hardware,
)

TF_FASTER = Rule(
    "tf_faster_one_device",
    "consequence",
    "On one device, teacher forcing's batched steps train faster than sequential BPTT, even "
    "against the best BPTT implementation, from some τ on.",
    lambda r: (
        f"on the device at its best — every setting on more than one thread (all "
        f"cores; each thread count where they vary) — the speedup of teacher forcing "
        f"(its fastest exact form) over the fastest Elman BPTT measured "
        f"({', '.join(SEQUENTIAL_BPTT)}) at the largest τ, 95% CI over replicates: "
        f"holds when it lies above {r.faster:g}× in every such setting; does not hold "
        f"when it lies at or below in one. Settings on 1 thread are diagnostics (one "
        f"thread is not parallel hardware: it compares the two models' work) and "
        "decide nothing"
    ),
    _speed_gate,
    speed.tf_faster,
)

TF_NOT_OVERHEAD = Rule(
    "tf_speedup_not_overhead",
    "consequence",
    "Teacher forcing's speedup over BPTT is parallel work, not the sequential loop's "
    "framework overhead: it remains against a compiled sequential loop.",
    lambda r: (
        f"on more than one thread, teacher forcing against the framework loop (bptt) "
        f"and the compiled loop ({COMPILED_BPTT}): holds when the speedup over the "
        f"compiled loop has its 95% CI above {r.faster:g}× in every setting; does not "
        f"hold when it lies at or below in one. The evidence splits the framework-loop "
        "speedup into overhead (framework / compiled loop) and what remains; 1-thread "
        "settings are diagnostics"
    ),
    _speed_gate,
    speed.tf_not_overhead,
)

DEER_DEPTH = Rule(
    "parallel_depth",
    "consequence",
    "Elman's sequential depth can be cut to O(k log τ) by parallel Newton iterations when its "
    "dynamics contract.",
    lambda r: (
        "holds when some exact solver (" + ", ".join(NEWTON_SOLVERS) + ") cuts it — its "
        "own claim below holds; does not hold when every solver's does not"
    ),
    _depth_gate,
    deer.deer_depth,
)

DEER_SOLVERS = tuple(
    Rule(
        f"{solver}_depth",
        "consequence",
        f"… {solver}: its Newton iteration count stays bounded as τ grows (contracting dynamics).",
        _depth_how(f"Elman + {solver}"),
        _depth_gate,
        deer.solver_depth(solver),
    )
    for solver in NEWTON_SOLVERS
)

DEER_FASTER = Rule(
    "deer_faster",
    "consequence",
    "… and on this device a parallel-in-time solver is faster than sequential BPTT.",
    lambda r: (
        f"on the device at its best (more than one thread), the speedup of Elman + "
        f"{' / '.join(NEWTON_SOLVERS)} over the fastest Elman BPTT measured, per solver, "
        f"setting and the largest τ, converged runs only (a run stopped at its cap "
        f"short of the answer is not judged), 95% CI over replicates: holds when in "
        f"some setting it lies above {r.faster:g}×; does not hold when in every setting "
        "it lies at or below; 1-thread settings are diagnostics"
    ),
    _speed_gate,
    deer.deer_faster,
)

JORDAN_WEAKER = Rule(
    "jordan_less_powerful",
    "chapter",
    "A Jordan (output-to-hidden) network is less powerful: what its outputs do not carry is "
    "lost (delayed recall, y(t) = x(t−k)).",
    lambda r: (
        f"delayed_recall, accuracy on its own outputs (fed back as it was trained), "
        f"each model's best strategy (Jordan's among teacher_forcing, free_running, "
        f"scheduled_sampling): holds when the 95% CI of Elman − Jordan lies above "
        f"{r.accuracy_gap}; does not hold when it lies below {r.accuracy_gap}; in every "
        f"matched configuration; not measured when Elman is within {r.learned_margin} "
        "of chance"
    ),
    lambda r: (
        _loss_gate(r) + "; Jordan trained with a strategy fed its own outputs "
        "(free_running or scheduled_sampling)"
    ),
    capability.jordan_weaker,
)

JORDAN_PARITY = Rule(
    "jordan_fine_parity",
    "chapter",
    "A Jordan network is fine when its outputs carry the state it needs (running parity, "
    "y(t) = y(t−1) xor x(t)).",
    lambda r: (
        f"running_parity, Jordan's best strategy, accuracy on its own outputs: holds "
        f"when its 95% CI lies at or above {r.solved}; does not hold when it lies below "
        "while Elman's lies at or above; in every configuration"
    ),
    _loss_gate,
    capability.jordan_parity,
)

EXPOSURE_BIAS = Rule(
    "exposure_bias",
    "chapter",
    "Exposure bias: trained with teacher forcing, the model does worse on its own outputs "
    "than a model trained on them.",
    lambda r: (
        f"Jordan, the free-running loss of teacher-forcing training minus that of "
        f"training on its own outputs (free_running or scheduled_sampling, its best), "
        f"same task, τ, B, H and steps, each run free with the feedback it was trained "
        f"with; judged only in a generation setting: the W = 0 control (W held at 0, "
        f"option w_zero) must have a teacher-forced loss above the model's by more than "
        f"{r.negligible_nats} nats/token (95% CI), i.e. the fed-back output carries what "
        f"the input lacks; holds when on some such task the mismatch's CI lies above "
        f"{r.negligible_nats}; does not hold when on every such task it lies below"
    ),
    lambda r: (
        _loss_gate(r) + "; a W = 0 control and a self-fed-trained Jordan at the same "
        "task, τ, B, H and steps"
    ),
    capability.exposure_bias,
)

BELIEF = Rule(
    "belief_jordan_better",
    "common belief",
    "Common belief: a Jordan network works better than an Elman network because the output y "
    "is easier to control than the hidden state h.",
    lambda r: (
        "tested through its consequence (the 'because' is not measurable): per-token "
        "loss on the model's own outputs, each model's best strategy, same task/τ/B/H/"
        "steps (tasks without input left out): holds when the 95% CI of Elman − Jordan "
        "lies above 0 on every task; does not hold when it lies below 0 on one"
    ),
    _loss_gate,
    capability.belief_jordan_better,
)

RULES: tuple[Rule, ...] = (
    BPTT_TIME,
    BPTT_HARDWARE,
    BPTT_MEMORY,
    TF_DEPTH,
    TF_HARDWARE,
    TF_FASTER,
    TF_NOT_OVERHEAD,
    DEER_DEPTH,
    *DEER_SOLVERS,
    DEER_FASTER,
    JORDAN_WEAKER,
    JORDAN_PARITY,
    EXPOSURE_BIAS,
    BELIEF,
)
