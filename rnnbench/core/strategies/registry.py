"""The strategy registry: one :class:`Strategy` record per strategy, with every fact a
runner needs about it (docs/design.md, "Where each rule lives"), and the one loss entry
point."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from rnnbench.core.models import Recurrent, model_name
from rnnbench.core.strategies import elman, jordan, options, saved
from rnnbench.core.strategies.common import check_inputs
from rnnbench.errors import UsageError
from rnnbench.facts import (
    BEST_BPTT,
    BEST_TF,
    NEWTON_SOLVERS,
    SEQUENTIAL_BPTT,
    TEACHER_FORCING,
    scan_depth,
)

ELMANS = ("elman", "single_output")


def _tau(tau: int, **_: object) -> int:
    return tau


def _one(tau: int, **_: object) -> int:
    return 1


def _twice(tau: int, **_: object) -> int:
    return 2 * tau


def _scan_depth(tau: int, **_: object) -> int:
    return tau + scan_depth(tau)


def _newton_depth(tau: int, iterations: int | None = None, **_: object) -> int | None:
    """iterations x the scan's depth: known only once a call has reported its iterations."""
    return None if iterations is None else iterations * scan_depth(tau)


def _never(options: dict) -> bool:
    return False


def _no_check(options: dict, tau: int | None) -> None:
    return None


@dataclass(frozen=True, kw_only=True)
class Strategy:
    """One way to compute L and its gradient, with every fact a runner needs about it.
    The defaults are the chapter's BPTT: an Elman strategy, τ steps deep, O(τ) memory,
    the exact gradient; a record states only where it differs."""

    name: str
    fn: Callable[..., torch.Tensor]
    models: tuple[str, ...] = ELMANS
    depth: Callable[..., int | None] = _tau  # sequential depth given tau, options (iterations)
    memory: str = "O(tau)"  # activation-memory class
    exact: bool = True  # exact gradient of the loss it reports
    options: tuple[str, ...] = field(default_factory=tuple)  # option names
    check: Callable[[dict, int | None], None] = _no_check  # option values
    split: str = "batch"  # how the worker-group harness shares it out: "time" | "batch"
    # its gradient is taken during the forward: forward and backward cannot be timed apart
    grad_in_forward: Callable[[dict], bool] = _never
    saved_bytes: Callable[..., int] = saved.saved_elman  # bytes kept for backward
    # called with the device before the first call (building compiled code, say)
    prepare: Callable[[str], None] | None = None


def _jordan(
    name: str,
    names: tuple[str, ...],
    check: Callable[[dict, int | None], None],
    saved_bytes: Callable[..., int],
    **differs: Any,
) -> Strategy:
    """A Jordan strategy: ``rnnbench.core.jordan.<name>``, for the Jordan model only, with
    its option names and their check, its saved bytes, and where else it differs."""
    return Strategy(
        name=name,
        fn=getattr(jordan, name),
        models=("jordan",),
        options=names,
        check=check,
        saved_bytes=saved_bytes,
        **differs,
    )


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy(
            name="bptt",
            fn=elman.bptt,
            models=(*ELMANS, "jordan"),
        ),
        Strategy(
            name="bptt_fused",
            fn=elman.bptt_fused,
        ),
        Strategy(
            name="bptt_compiled",
            fn=elman.bptt_compiled,
            saved_bytes=saved.saved_states,
            prepare=elman.prepare_compiled,
        ),
        Strategy(
            name="bptt_no_graph",
            fn=elman.bptt_no_graph,
            saved_bytes=saved.saved_states,
        ),
        Strategy(
            name="truncated_bptt",
            fn=elman.truncated_bptt,
            models=("elman",),
            memory="O(k)",
            exact=False,
            options=("k",),
            check=options.positive("k", False),
            grad_in_forward=lambda o: True,
            saved_bytes=saved.saved_eager,
        ),
        Strategy(
            name="checkpointed_bptt",
            fn=elman.checkpointed_bptt,
            depth=_twice,
            memory="O(sqrt(tau))",
            options=("segments", "impl"),
            check=options.check_checkpointed,
            saved_bytes=saved.saved_checkpointed,
        ),
        _jordan(
            "teacher_forcing",
            ("chunk", "w_zero", "impl"),
            options.check_teacher,
            saved.saved_teacher,
            depth=_one,
            split="time",
            grad_in_forward=lambda o: o.get("chunk") is not None,
        ),
        _jordan("free_running", ("feedback", "seed"), options.check_feedback, saved.saved_jordan),
        _jordan(
            "scheduled_sampling",
            ("schedule", "step", "k", "c", "eps_min", "feedback", "seed"),
            options.check_scheduled,
            saved.saved_scheduled,
        ),
        Strategy(
            name="scan_bptt",
            fn=elman.scan_bptt,
            depth=_scan_depth,
            memory="O(tau H^2)",
            split="time",
            saved_bytes=saved.saved_states,
        ),
        *(
            Strategy(
                name=solver,
                fn=getattr(elman, solver),
                depth=_newton_depth,
                memory="O(tau H^2)",
                options=("tol", "max_iter"),
                check=options.check_newton,
                split="time",
                saved_bytes=saved.saved_states,
            )
            for solver in NEWTON_SOLVERS
        ),
    )
}


def get(strategy: str) -> Strategy:
    if strategy not in STRATEGIES:
        raise UsageError(
            f"strategy: unknown strategy {strategy!r}; allowed: {', '.join(STRATEGIES)}"
        )
    return STRATEGIES[strategy]


def check(
    model: str, strategy: str, options: dict | None = None, tau: int | None = None
) -> Strategy:
    """Validate a model/strategy pair, the strategy's option names and values."""
    s = get(strategy)
    if model not in s.models:
        raise UsageError(
            f"strategy: {strategy} does not fit model {model!r}; it accepts: {', '.join(s.models)}"
        )
    for key in options or {}:
        if key not in s.options:
            allowed = ", ".join(s.options) or "none"
            raise UsageError(f"{strategy}.{key}: unknown option; allowed: {allowed}")
    s.check(options or {}, tau)
    return s


def loss(
    model: Recurrent, x: torch.Tensor, y: torch.Tensor, strategy: str = "bptt", **options: object
) -> torch.Tensor:
    """The total loss L (nats, summed over time and batch) under ``strategy``."""
    name = model_name(model)
    check_inputs(model, x, y)
    s = check(name, strategy, options, tau=x.shape[0])
    return s.fn(model, x, y, **options)


def best_candidates(choice: str, model: str) -> list[tuple[str, dict]]:
    """The (strategy, options) a ``best_bptt`` / ``best_tf`` baseline picks the fastest
    of, for ``model``: every exact sequential BPTT; every form of teacher forcing."""
    if choice == BEST_BPTT:
        return [(name, {}) for name in bptt_candidates(model)]
    if choice == BEST_TF and model in STRATEGIES[TEACHER_FORCING].models:
        return [(TEACHER_FORCING, {"impl": impl}) for impl in jordan.TF_IMPLS]
    return []


def bptt_candidates(model: str) -> list[str]:
    """The registered exact sequential BPTT strategies for ``model``
    (:data:`rnnbench.facts.SEQUENTIAL_BPTT`)."""
    return [
        name for name in SEQUENTIAL_BPTT if name in STRATEGIES and model in STRATEGIES[name].models
    ]
