"""Each strategy's option values, checked once before anything runs: a bad value in a
job file or on the command line is an error naming the option (exit 2), not a failed row
after Ray has started."""

from __future__ import annotations

import math

from rnnbench.core.strategies.elman import CHECKPOINT_IMPLS
from rnnbench.core.strategies.jordan import TF_IMPLS, feedback_fn, sampling_probability
from rnnbench.errors import UsageError, check_int


def positive(key: str, none_ok: bool):
    """The check of an option that is a positive integer (or None, when ``none_ok``)."""
    return lambda options, tau: (
        None
        if key not in options or (none_ok and options[key] is None)
        else check_int(key, options[key])
    )


def check_teacher(options: dict, tau: int | None) -> None:
    positive("chunk", True)(options, tau)
    if "w_zero" in options and not isinstance(options["w_zero"], bool):
        raise UsageError(f"w_zero: must be true or false, got {options['w_zero']!r}")
    if options.get("impl", TF_IMPLS[0]) not in TF_IMPLS:
        raise UsageError(
            f"impl: unknown teacher-forcing form {options['impl']!r}; "
            f"allowed: {', '.join(TF_IMPLS)}"
        )


def check_checkpointed(options: dict, tau: int | None) -> None:
    if options.get("segments") is not None:
        check_int("segments", options["segments"], upper=tau)
    if options.get("impl", "segment") not in CHECKPOINT_IMPLS:
        raise UsageError(
            f"impl: unknown checkpoint implementation {options['impl']!r}; "
            f"allowed: {', '.join(CHECKPOINT_IMPLS)}"
        )


def check_feedback(options: dict, tau: int | None) -> None:
    if "feedback" in options:
        feedback_fn(options["feedback"], None)
    if "seed" in options:
        check_int("seed", options["seed"], 0)


def check_newton(options: dict, tau: int | None) -> None:
    if options.get("max_iter") is not None:
        check_int("max_iter", options["max_iter"])
    tol = options.get("tol")
    if tol is not None and (
        isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < math.inf
    ):
        raise UsageError(f"tol: must be a positive number, got {tol!r}")


def check_scheduled(options: dict, tau: int | None) -> None:
    check_feedback(options, tau)
    for key in ("k", "c", "eps_min"):
        value = options.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise UsageError(f"{key}: must be a number, got {value!r}")
    sampling_probability(
        options.get("schedule", "inverse_sigmoid"),
        options.get("step", 0),
        k=options.get("k"),
        c=options.get("c", 1e-3),
        eps_min=options.get("eps_min", 0.0),
    )
