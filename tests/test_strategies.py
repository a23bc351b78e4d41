"""Every training strategy computes the loss and gradient it claims to.

References here are written independently of rnnbench.core.strategies, straight
from the book's equations (step-by-step loops over t), in float64.
Also: gradcheck for every strategy, the activation-memory class of each
strategy (memory.saved_bytes), scheduled-sampling schedules, the registry,
and bad arguments raising one UsageError that names the argument.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from helpers import rel_err, value_and_grads

from rnnbench.core import models, strategies
from rnnbench.core.strategies import STRATEGIES, loss, sampling_probability
from rnnbench.errors import UsageError
from rnnbench.facts import (
    COMPILED_BPTT,
    NEWTON_SOLVERS,
    SELF_FEEDING,
    SEQUENTIAL_BPTT,
    TEACHER_FORCING,
    TIME_SPLIT_SOLVERS,
    scan_depth,
)
from rnnbench.harness import memory

DT = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")

REL = 1e-8


def setup(cls, tau=7, batch=3, n_in=4, hidden=5, n_out=3, seed=0):
    torch.manual_seed(seed)
    model = cls(n_in, hidden, n_out).double()
    x = torch.randn(tau, batch, n_in, dtype=DT)
    y = torch.randint(0, n_out, (batch,) if model.single_output else (tau, batch))
    return model, x, y


def assert_same(model, got_fn, want_fn, tol=REL):
    got_L, got_g = value_and_grads(model, got_fn)
    want_L, want_g = value_and_grads(model, want_fn)
    assert rel_err(got_L, want_L) < tol, (float(got_L), float(want_L))
    for name in want_g:
        err = rel_err(got_g[name], want_g[name])
        assert err < tol, (name, err)


# --------------------------------------------------------------------------- references


def ref_elman(model, x, y, k=None):
    """Elman loop from the equations; h detached before every k-th step when k is given."""
    U, W, V, b, c = model.U, model.W, model.V, model.b, model.c
    h = torch.zeros(x.shape[1], model.n_hidden, dtype=x.dtype)
    total = 0
    for t in range(x.shape[0]):
        if k is not None and t % k == 0:
            h = h.detach()
        h = torch.tanh(b + h @ W.T + x[t] @ U.T)
        if not model.single_output:
            total = total + F.cross_entropy(h @ V.T + c, y[t], reduction="sum")
    if model.single_output:
        total = F.cross_entropy(h @ V.T + c, y, reduction="sum")
    return total


def ref_jordan(model, x, y, feed):
    """Jordan loop: feed(t, o_t) -> f^(t), the fed-back output for step t+1; f^(0) = 0."""
    U, W, V, b, c = model.U, model.W, model.V, model.b, model.c
    f = torch.zeros(x.shape[1], model.n_out, dtype=x.dtype)
    total = 0
    for t in range(x.shape[0]):
        h = torch.tanh(b + f @ W.T + x[t] @ U.T)
        o = h @ V.T + c
        total = total + F.cross_entropy(o, y[t], reduction="sum")
        f = feed(t, o)
    return total


def teacher(y, n):
    return lambda t, o: F.one_hot(y[t], n).to(o.dtype)


# --------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("chunk", [None, 1, 2, 3, 5, 7, 8, 50])
def test_teacher_forcing_equals_step_by_step_loop(chunk):
    model, x, y = setup(models.Jordan, tau=7, batch=3)
    opts = {} if chunk is None else {"chunk": chunk}
    assert_same(
        model,
        lambda: loss(model, x, y, "teacher_forcing", **opts),
        lambda: ref_jordan(model, x, y, teacher(y, model.n_out)),
    )


@pytest.mark.parametrize("chunk", [None, 3])
@pytest.mark.parametrize("tau", [1, 2, 9])
def test_teacher_forcing_forms_give_the_same_loss_and_gradient(tau, chunk):
    """The default form (the lookup added out of place) against the in-place write into
    the input term's slice (the form before it): the same arithmetic."""
    model, x, y = setup(models.Jordan, tau=tau, batch=3)
    opts = {} if chunk is None else {"chunk": chunk}
    assert_same(
        model,
        lambda: loss(model, x, y, "teacher_forcing", **opts),
        lambda: loss(model, x, y, "teacher_forcing", impl="inplace", **opts),
    )


@pytest.mark.parametrize("cls", [models.Elman, models.SingleOutput])
def test_the_no_graph_loop_equals_the_framework_loop(cls):
    model, x, y = setup(cls, tau=9, batch=3)
    assert_same(
        model, lambda: loss(model, x, y, "bptt_no_graph"), lambda: loss(model, x, y, "bptt")
    )


def test_teacher_forcing_tau_one():
    model, x, y = setup(models.Jordan, tau=1, batch=2)
    for opts in ({}, {"chunk": 1}, {"chunk": 4}):
        assert_same(
            model,
            lambda: loss(model, x, y, "teacher_forcing", **opts),
            lambda: ref_jordan(model, x, y, teacher(y, model.n_out)),
        )


def test_teacher_forcing_slices_partition_the_loss():
    """teacher_forcing_slice over any partition of range(tau) sums to the full loss."""
    model, x, y = setup(models.Jordan, tau=9, batch=2)
    full = loss(model, x, y, "teacher_forcing").detach()
    for edges in ([0, 9], [0, 1, 9], [0, 4, 5, 9], list(range(10))):
        parts = sum(
            strategies.teacher_forcing_slice(model, x, y, s, e).detach()
            for s, e in zip(edges, edges[1:])
        )
        assert rel_err(parts, full) < 1e-12, edges


@pytest.mark.parametrize("impl", ["segment", "torch"])
@pytest.mark.parametrize("cls", [models.Elman, models.SingleOutput])
@pytest.mark.parametrize("segments", [None, 1, 2, 3, 4, 9])
def test_checkpointed_equals_bptt(cls, segments, impl):
    model, x, y = setup(cls, tau=9, batch=2)
    opts = {"impl": impl} if segments is None else {"segments": segments, "impl": impl}
    assert_same(
        model,
        lambda: loss(model, x, y, "checkpointed_bptt", **opts),
        lambda: loss(model, x, y, "bptt"),
    )
    assert_same(model, lambda: loss(model, x, y, "bptt"), lambda: ref_elman(model, x, y))


@pytest.mark.parametrize("k", [9, 10, 100])
def test_truncated_with_k_at_least_tau_equals_bptt(k):
    model, x, y = setup(models.Elman, tau=9, batch=2)
    assert_same(
        model, lambda: loss(model, x, y, "truncated_bptt", k=k), lambda: loss(model, x, y, "bptt")
    )


@pytest.mark.parametrize("k", [1, 2, 4, 8])
def test_truncated_equals_detach_every_k_reference(k):
    model, x, y = setup(models.Elman, tau=9, batch=2)
    assert_same(
        model, lambda: loss(model, x, y, "truncated_bptt", k=k), lambda: ref_elman(model, x, y, k=k)
    )
    # the loss itself is the full loss; only the gradient is truncated (biased)
    L_full, g_full = value_and_grads(model, lambda: loss(model, x, y, "bptt"))
    L_trunc, g_trunc = value_and_grads(model, lambda: loss(model, x, y, "truncated_bptt", k=k))
    assert rel_err(L_trunc, L_full) < 1e-12
    assert rel_err(g_trunc["W"], g_full["W"]) > 1e-4


def test_free_running_softmax_equals_jordan_bptt_and_loop():
    model, x, y = setup(models.Jordan, tau=8, batch=3)
    assert_same(
        model,
        lambda: loss(model, x, y, "free_running", feedback="softmax"),
        lambda: loss(model, x, y, "bptt"),
    )
    assert_same(
        model,
        lambda: loss(model, x, y, "bptt"),
        lambda: ref_jordan(model, x, y, lambda t, o: torch.softmax(o, -1)),
    )


def test_free_running_argmax_equals_loop():
    model, x, y = setup(models.Jordan, tau=8, batch=3)
    argmax = lambda t, o: F.one_hot(o.detach().argmax(-1), model.n_out).to(o.dtype)  # noqa: E731
    assert_same(
        model,
        lambda: loss(model, x, y, "free_running", feedback="argmax"),
        lambda: ref_jordan(model, x, y, argmax),
    )


def test_free_running_sample_is_seeded():
    model, x, y = setup(models.Jordan, tau=30, batch=4)
    a = loss(model, x, y, "free_running", feedback="sample", seed=1).detach()
    b = loss(model, x, y, "free_running", feedback="sample", seed=1).detach()
    values = {
        float(loss(model, x, y, "free_running", feedback="sample", seed=s).detach())
        for s in range(5)
    }
    assert torch.equal(a, b)
    assert len(values) > 1


def test_scheduled_sampling_extremes():
    """epsilon = 1 feeds the truth (teacher forcing); epsilon = 0 feeds the model's own output."""
    model, x, y = setup(models.Jordan, tau=8, batch=3)
    assert sampling_probability("linear", 0) == 1.0
    assert_same(
        model,
        lambda: loss(model, x, y, "scheduled_sampling", schedule="linear", step=0),
        lambda: loss(model, x, y, "teacher_forcing"),
    )
    assert sampling_probability("linear", 0, k=0.0) == 0.0
    for fb in ("softmax", "argmax"):
        assert_same(
            model,
            lambda: loss(model, x, y, "scheduled_sampling", schedule="linear", k=0.0, feedback=fb),
            lambda: loss(model, x, y, "free_running", feedback=fb),
        )


def test_scheduled_sampling_mixes_per_token():
    """At epsilon = 0.5 (argmax feedback, hence the outcome depends only on the coin flips)
    the loss differs from both extremes and is reproducible under its seed."""
    model, x, y = setup(models.Jordan, tau=40, batch=4)
    opts = dict(schedule="linear", k=0.5, c=0.0, feedback="argmax")
    mid = float(loss(model, x, y, "scheduled_sampling", seed=3, **opts).detach())
    assert mid == float(loss(model, x, y, "scheduled_sampling", seed=3, **opts).detach())
    tf = float(loss(model, x, y, "teacher_forcing").detach())
    fr = float(loss(model, x, y, "free_running", feedback="argmax").detach())
    assert mid not in (tf, fr)
    others = {
        float(loss(model, x, y, "scheduled_sampling", seed=s, **opts).detach()) for s in range(4)
    }
    assert len(others) > 1


@pytest.mark.parametrize("cls", [models.Elman, models.SingleOutput, models.Jordan])
def test_logits_agree_with_the_loss(cls):
    model, x, y = setup(cls, tau=6, batch=2)
    if cls is models.Jordan:
        pairs = [
            ("teacher", "teacher_forcing", {}),
            ("softmax", "free_running", {}),
            ("argmax", "free_running", {"feedback": "argmax"}),
            ("sample", "free_running", {"feedback": "sample", "seed": 4}),
        ]
    else:
        pairs = [("teacher", "bptt", {})]
    for feedback, strategy, opts in pairs:
        o = strategies.logits(model, x, y, feedback=feedback, seed=4)
        assert o.shape == ((2, 3) if model.single_output else (6, 2, 3))
        nll = F.cross_entropy(o.reshape(-1, 3), y.reshape(-1), reduction="sum")
        assert rel_err(nll.detach(), loss(model, x, y, strategy, **opts).detach()) < 1e-12


@pytest.mark.parametrize(
    "strategy, opts", [("truncated_bptt", {"k": 3}), ("teacher_forcing", {"chunk": 3})]
)
def test_segmented_strategies_without_grad(strategy, opts):
    """Under no_grad the segment-by-segment strategies still return the loss, no graph."""
    cls = models.Jordan if strategy == "teacher_forcing" else models.Elman
    model, x, y = setup(cls, tau=8, batch=2)
    want = loss(model, x, y, strategy, **opts).detach()
    with torch.no_grad():
        got = loss(model, x, y, strategy, **opts)
    assert not got.requires_grad and rel_err(got, want) < 1e-12


@pytest.mark.parametrize(
    "strategy, opts", [("truncated_bptt", {"k": 3}), ("teacher_forcing", {"chunk": 3})]
)
def test_segmented_strategies_scale_with_the_upstream_gradient(strategy, opts):
    """Their gradient is computed during the forward: backward must still multiply it
    by the incoming gradient (a per-token mean, a loss weight)."""
    cls = models.Jordan if strategy == "teacher_forcing" else models.Elman
    model, x, y = setup(cls, tau=8, batch=2)
    unit = "bptt" if strategy == "truncated_bptt" else strategy
    _, g1 = value_and_grads(model, lambda: loss(model, x, y, strategy, **opts))
    _, g2 = value_and_grads(model, lambda: -0.25 * loss(model, x, y, strategy, **opts))
    _, g3 = value_and_grads(
        model, lambda: loss(model, x, y, strategy, **opts) + 2 * loss(model, x, y, unit)
    )
    _, gu = value_and_grads(model, lambda: loss(model, x, y, unit))
    for n in g1:
        assert rel_err(g2[n], -0.25 * g1[n]) < 1e-12, n
        assert rel_err(g3[n], g1[n] + 2 * gu[n]) < 1e-12, n


# --------------------------------------------------------------------------- gradcheck

GRADCHECK_CASES = [
    (models.Elman, "bptt", {}),
    (models.Elman, "bptt_fused", {}),
    (models.Elman, "truncated_bptt", {"k": 4}),  # exact only for k >= tau (see below)
    (models.Elman, "checkpointed_bptt", {"segments": 2}),
    (models.SingleOutput, "bptt", {}),
    (models.SingleOutput, "bptt_fused", {}),
    (models.SingleOutput, "checkpointed_bptt", {"segments": 3}),
    (models.Elman, "checkpointed_bptt", {"segments": 3, "impl": "torch"}),
    (models.Jordan, "bptt", {}),
    (models.Jordan, "teacher_forcing", {}),
    (models.Jordan, "teacher_forcing", {"chunk": 3}),
    (models.Jordan, "teacher_forcing", {"impl": "inplace"}),
    (models.Elman, "bptt_no_graph", {}),
    (models.SingleOutput, "bptt_no_graph", {}),
    (models.Jordan, "free_running", {"feedback": "softmax"}),
    # argmax / sample feedback is piecewise constant in the parameters: the
    # gradient is that of the loss with the feedback held fixed, which finite
    # differences reproduce away from ties (fixed seed, tiny sizes).
    (models.Jordan, "free_running", {"feedback": "argmax"}),
    (models.Jordan, "free_running", {"feedback": "sample", "seed": 3}),
    (models.Jordan, "scheduled_sampling", {"schedule": "inverse_sigmoid", "step": 300}),
    (
        models.Jordan,
        "scheduled_sampling",
        {"schedule": "linear", "step": 500, "feedback": "softmax"},
    ),
    (
        models.Jordan,
        "scheduled_sampling",
        {"schedule": "exponential", "step": 500, "feedback": "argmax"},
    ),
]


@pytest.mark.parametrize(
    "cls, strategy, opts",
    GRADCHECK_CASES,
    ids=lambda v: v.__name__ if isinstance(v, type) else str(v),
)
def test_gradcheck(cls, strategy, opts):
    model, x, y = setup(cls, tau=4, batch=2, n_in=2, hidden=3, n_out=3, seed=0)
    params = tuple(model.parameters())  # gradcheck perturbs these in place
    assert torch.autograd.gradcheck(lambda *_: loss(model, x, y, strategy, **opts), params)


def test_truncated_gradient_is_biased_for_k_below_tau():
    """The other side of the gradcheck above: with k < tau the truncated gradient is
    *not* the gradient of the loss it reports, and gradcheck says so."""
    model, x, y = setup(models.Elman, tau=4, batch=2, n_in=2, hidden=3, n_out=3, seed=0)
    params = tuple(model.parameters())
    ok = torch.autograd.gradcheck(
        lambda *_: loss(model, x, y, "truncated_bptt", k=2), params, raise_exception=False
    )
    assert ok is False


# --------------------------------------------------------------------------- memory class

B_MEM, H_MEM, IN_MEM, OUT_MEM = 2, 8, 3, 4


def saved(model_cls, strategy, opts, tau):
    model, x, y = setup(
        model_cls, tau=tau, batch=B_MEM, n_in=IN_MEM, hidden=H_MEM, n_out=OUT_MEM, seed=tau
    )
    got = memory.saved_bytes(
        lambda: loss(model, x, y, strategy, **opts), keep=[*model.parameters(), x, y]
    )
    n_params = sum(p.numel() for p in model.parameters())
    want = strategies.get(strategy).saved_bytes(
        models.model_name(model), opts, tau, B_MEM, H_MEM, OUT_MEM, n_params, 8
    )
    return got, want


def slope(taus, values):
    lx = torch.tensor([math.log(t) for t in taus], dtype=DT)
    ly = torch.tensor([math.log(v) for v in values], dtype=DT)
    lx, ly = lx - lx.mean(), ly - ly.mean()
    return float((lx * ly).sum() / (lx * lx).sum())


@pytest.mark.parametrize("strategy", ["bptt", "bptt_fused"])
def test_bptt_memory_grows_linearly(strategy):
    taus = [64, 128, 256, 512, 1024]
    got = [saved(models.Elman, strategy, {}, t)[0] for t in taus]
    s = slope(taus, got)
    assert abs(s - 1) <= 0.05, (s, got)


def test_jordan_free_running_memory_grows_linearly():
    taus = [64, 1024]
    got = [saved(models.Jordan, "bptt", {}, t)[0] for t in taus]
    assert abs(slope(taus, got) - 1) <= 0.05, got


@pytest.mark.parametrize(
    "cls, strategy, opts",
    [
        (models.Elman, "truncated_bptt", {"k": 32}),
        (models.Jordan, "teacher_forcing", {"chunk": 32}),
    ],
)
def test_segmented_memory_is_flat_in_tau(cls, strategy, opts):
    small, _ = saved(cls, strategy, opts, 64)
    large, _ = saved(cls, strategy, opts, 1024)
    assert small > 0 and large == small, (small, large)


def test_unchunked_teacher_forcing_memory_grows_linearly():
    got = [saved(models.Jordan, "teacher_forcing", {}, t)[0] for t in (64, 1024)]
    assert abs(slope([64, 1024], got) - 1) <= 0.05, got


@pytest.mark.parametrize("impl", ["segment", "torch"])
@pytest.mark.parametrize("cls", [models.Elman, models.SingleOutput])
@pytest.mark.parametrize("tau", [64, 256, 1024])
def test_checkpointed_memory_is_sqrt_tau(cls, tau, impl):
    segments = math.isqrt(tau)
    got, _ = saved(cls, "checkpointed_bptt", {"segments": segments, "impl": impl}, tau)
    bound = 2 * math.sqrt(tau) * B_MEM * H_MEM * 8
    assert 0 < got <= bound, (got, bound)


MEMORY_CASES = [
    (models.Elman, "bptt", {}),
    (models.Elman, "bptt_fused", {}),
    (models.Elman, "truncated_bptt", {"k": 16}),
    (models.Elman, "checkpointed_bptt", {}),
    (models.Elman, "checkpointed_bptt", {"segments": 4}),
    (models.SingleOutput, "bptt", {}),
    (models.SingleOutput, "bptt_fused", {}),
    (models.SingleOutput, "checkpointed_bptt", {}),
    (models.Jordan, "bptt", {}),
    (models.Jordan, "teacher_forcing", {}),
    (models.Jordan, "teacher_forcing", {"chunk": 16}),
    (models.Jordan, "teacher_forcing", {"impl": "inplace"}),
    (models.Elman, "bptt_no_graph", {}),
    (models.Jordan, "free_running", {"feedback": "argmax"}),
    (models.Jordan, "free_running", {"feedback": "sample"}),
    (models.Jordan, "scheduled_sampling", {}),
    (models.Jordan, "scheduled_sampling", {"feedback": "softmax"}),
]


@pytest.mark.parametrize(
    "cls, strategy, opts", MEMORY_CASES, ids=lambda v: v.__name__ if isinstance(v, type) else str(v)
)
def test_saved_bytes_match_the_analytic_figure(cls, strategy, opts):
    got, want = saved(cls, strategy, opts, 256)
    assert abs(got - want) <= 0.10 * want, (got, want)


# --------------------------------------------------------------------------- registry


# The facts of the strategies this module knows; a strategy added later is checked by
# the invariants below without being listed here.
KNOWN = {  # name: (models, depth at tau = 100, memory class, exact)
    "bptt": ({"elman", "single_output", "jordan"}, 100, "O(tau)", True),
    "bptt_fused": ({"elman", "single_output"}, 100, "O(tau)", True),
    "bptt_compiled": ({"elman", "single_output"}, 100, "O(tau)", True),
    "bptt_no_graph": ({"elman", "single_output"}, 100, "O(tau)", True),
    "truncated_bptt": ({"elman"}, 100, "O(k)", False),
    "checkpointed_bptt": ({"elman", "single_output"}, 200, "O(sqrt(tau))", True),
    "teacher_forcing": ({"jordan"}, 1, "O(tau)", True),
    "free_running": ({"jordan"}, 100, "O(tau)", True),
    "scheduled_sampling": ({"jordan"}, 100, "O(tau)", True),
    "scan_bptt": ({"elman", "single_output"}, 113, "O(tau H^2)", True),  # 100 + scan_depth
    "deer": ({"elman", "single_output"}, None, "O(tau H^2)", True),  # known once it ran
    "quasi_deer": ({"elman", "single_output"}, None, "O(tau H^2)", True),
}


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_each_known_strategy_keeps_its_facts(name):
    models, depth, memory, exact = KNOWN[name]
    s = STRATEGIES[name]
    assert (set(s.models), s.depth(tau=100), s.memory, s.exact) == (models, depth, memory, exact)


def test_every_registered_strategy_is_complete():
    """Whatever is registered: a known model, a depth for every tau (or one measured),
    an option check that accepts no options, a split the group harness knows."""
    for name, s in STRATEGIES.items():
        assert s.name == name and s.models and set(s.models) <= {"elman", "jordan", "single_output"}
        assert s.split in ("time", "batch") and isinstance(s.exact, bool)
        d = s.depth(tau=64)
        assert d is None or 1 <= d <= 4 * 64, (name, d)
        s.check({}, 64)  # no options: always valid


def test_newton_depth_is_iterations_times_the_scan():
    for name in ("deer", "quasi_deer"):
        assert STRATEGIES[name].depth(tau=100, iterations=6) == 6 * scan_depth(100) == 78


def test_the_families_in_facts_are_registered_as_they_say():
    """facts.SEQUENTIAL_BPTT: exact with depth tau; facts.TIME_SPLIT_SOLVERS: split along
    time; the compiled loop is one of the sequential BPTTs."""
    for name in SEQUENTIAL_BPTT:
        assert STRATEGIES[name].exact and STRATEGIES[name].depth(tau=77) == 77
    assert COMPILED_BPTT in SEQUENTIAL_BPTT
    for name in (*TIME_SPLIT_SOLVERS, TEACHER_FORCING):
        assert STRATEGIES[name].split == "time"
    for name in (*NEWTON_SOLVERS, *SELF_FEEDING):
        assert name in STRATEGIES


# --------------------------------------------------------------------------- schedules


def test_sampling_probability_formulas():
    for i in (0, 1, 10, 500, 2000):
        assert sampling_probability("linear", i) == max(0.0, 1.0 - 1e-3 * i)
        assert sampling_probability("linear", i, k=0.9, c=0.01, eps_min=0.1) == max(
            0.1, 0.9 - 0.01 * i
        )
        assert sampling_probability("exponential", i) == pytest.approx(0.999**i, rel=1e-12)
        assert sampling_probability("exponential", i, k=0.9) == pytest.approx(0.9**i, rel=1e-12)
        assert sampling_probability("inverse_sigmoid", i) == pytest.approx(
            100 / (100 + math.exp(i / 100)), rel=1e-12
        )
        assert sampling_probability("inverse_sigmoid", i, k=5.0) == pytest.approx(
            5 / (5 + math.exp(i / 5)), rel=1e-12
        )
    assert (
        sampling_probability("inverse_sigmoid", 10**9) == 0.0
        or sampling_probability("inverse_sigmoid", 10**9) < 1e-300
    )


@pytest.mark.parametrize("schedule", ["linear", "exponential", "inverse_sigmoid"])
def test_sampling_probability_is_a_monotone_probability(schedule):
    values = [sampling_probability(schedule, i) for i in range(0, 20000, 7)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert values[0] > 0.98 and values[-1] < 0.02


# --------------------------------------------------------------------------- bad arguments


def _raises(pattern, fn):
    with pytest.raises(UsageError, match=pattern) as info:
        fn()
    assert isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)  # one clear line
    return info.value


def test_unknown_strategy():
    model, x, y = setup(models.Elman)
    _raises(
        r"^strategy: unknown strategy 'bppt'; allowed: " + re.escape(", ".join(STRATEGIES)) + "$",
        lambda: loss(model, x, y, "bppt"),
    )


@pytest.mark.parametrize(
    "cls, strategy, accepts",
    [
        (models.Elman, "teacher_forcing", "jordan"),
        (models.Elman, "free_running", "jordan"),
        (models.SingleOutput, "truncated_bptt", "elman"),
        (models.Jordan, "bptt_fused", "elman, single_output"),
        (models.Jordan, "bptt_compiled", "elman, single_output"),
        (models.Jordan, "checkpointed_bptt", "elman, single_output"),
    ],
)
def test_strategy_on_the_wrong_model_names_the_models_it_accepts(cls, strategy, accepts):
    model, x, y = setup(cls)
    name = models.model_name(model)
    _raises(
        rf"^strategy: {strategy} does not fit model '{name}'; it accepts: {accepts}$",
        lambda: loss(model, x, y, strategy),
    )


@pytest.mark.parametrize(
    "cls, strategy, opts, pattern",
    [
        (models.Elman, "bptt", {"k": 3}, r"^bptt\.k: unknown option; allowed: none$"),
        (
            models.Elman,
            "truncated_bptt",
            {"chunk": 3},
            r"^truncated_bptt\.chunk: unknown option; allowed: k$",
        ),
        (
            models.Jordan,
            "teacher_forcing",
            {"segments": 2},
            r"^teacher_forcing\.segments: unknown option; allowed: chunk, w_zero, impl$",
        ),
        (models.Elman, "truncated_bptt", {"k": 0}, r"^k: must be a positive integer, got 0$"),
        (models.Elman, "truncated_bptt", {"k": 2.5}, r"^k: must be a positive integer, got 2\.5$"),
        (
            models.Jordan,
            "teacher_forcing",
            {"chunk": 0},
            r"^chunk: must be a positive integer, got 0$",
        ),
        (
            models.Jordan,
            "teacher_forcing",
            {"chunk": -4},
            r"^chunk: must be a positive integer, got -4$",
        ),
        (
            models.Elman,
            "checkpointed_bptt",
            {"segments": 0},
            r"^segments: must be a positive integer, got 0$",
        ),
        (
            models.Elman,
            "checkpointed_bptt",
            {"segments": 8},
            r"^segments: must be at most 7 here, got 8$",
        ),
        (
            models.Elman,
            "checkpointed_bptt",
            {"impl": "magic"},
            r"^impl: unknown checkpoint implementation 'magic'; allowed: segment, torch$",
        ),
        (
            models.Jordan,
            "free_running",
            {"feedback": "greedy"},
            r"^feedback: unknown feedback 'greedy'; allowed: softmax, argmax, sample$",
        ),
        (
            models.Jordan,
            "scheduled_sampling",
            {"schedule": "cosine"},
            r"^schedule: unknown schedule 'cosine'; allowed: linear, exponential, inverse_sigmoid$",
        ),
        (
            models.Jordan,
            "scheduled_sampling",
            {"step": -1},
            r"^step: must be a non-negative integer, got -1$",
        ),
        (
            models.Jordan,
            "scheduled_sampling",
            {"schedule": "exponential", "k": 1.5},
            r"^k: the exponential schedule needs 0 < k < 1, got 1\.5$",
        ),
        (
            models.Jordan,
            "scheduled_sampling",
            {"schedule": "inverse_sigmoid", "k": 0.5},
            r"^k: the inverse_sigmoid schedule needs k >= 1, got 0\.5$",
        ),
    ],
)
def test_bad_options(cls, strategy, opts, pattern):
    model, x, y = setup(cls, tau=7)
    _raises(pattern, lambda: loss(model, x, y, strategy, **opts))


def test_bad_x():
    model, x, y = setup(models.Elman, tau=7, batch=3, n_in=4)
    cases = [
        (x.float(), r"^x: dtype torch\.float32 does not match the model's torch\.float64$"),
        (
            x.long(),
            r"^x: expected a floating-point tensor, got torch\.int64 tensor of shape \(7, 3, 4\)$",
        ),
        (x.tolist(), r"^x: expected a floating-point tensor, got list$"),
        (x[0], r"^x: expected shape \(tau, batch, n_in=4\), got \(3, 4\)$"),
        (x[..., :3], r"^x: expected shape \(tau, batch, n_in=4\), got \(7, 3, 3\)$"),
        (x[:0], r"^x: tau and batch must be >= 1, got shape \(0, 3, 4\)$"),
    ]
    for bad, pattern in cases:
        _raises(pattern, lambda: loss(model, bad, y, "bptt"))


def test_bad_y():
    model, x, y = setup(models.Elman, tau=7, batch=3, n_out=3)
    cases = [
        (y.int(), r"^y: expected an int64 tensor of class indices, got torch\.int32 tensor"),
        (y.double(), r"^y: expected an int64 tensor of class indices, got torch\.float64 tensor"),
        (y[:-1], r"^y: expected shape \(tau, batch\) = \(7, 3\), got \(6, 3\)$"),
        (y[0], r"^y: expected shape \(tau, batch\) = \(7, 3\), got \(3,\)$"),
        (
            torch.full_like(y, 3),
            r"^y: class indices must lie in \[0, n_out=3\), got values in \[3, 3\]$",
        ),
        (
            torch.full_like(y, -1),
            r"^y: class indices must lie in \[0, n_out=3\), got values in \[-1, -1\]$",
        ),
    ]
    for bad, pattern in cases:
        _raises(pattern, lambda: loss(model, x, bad, "bptt"))
    single, x1, y1 = setup(models.SingleOutput, tau=7, batch=3)
    _raises(
        r"^y: expected shape \(batch,\) = \(3,\), got \(7, 3\)$",
        lambda: loss(single, x1, y, "bptt"),
    )


def test_bad_model():
    _, x, y = setup(models.Elman)
    _raises(
        r"^model: expected one of \['elman', 'jordan', 'single_output'\], got Linear$",
        lambda: loss(torch.nn.Linear(2, 2), x, y, "bptt"),
    )


def test_error_names_stay_distinct():
    """Every message starts with the argument it is about (for the CLI's one-line errors)."""
    model, x, y = setup(models.Jordan, tau=5)
    for fn, name in [
        (lambda: loss(model, x, y, "nope"), "strategy"),
        (lambda: loss(model, x.float(), y, "teacher_forcing"), "x"),
        (lambda: loss(model, x, y + 10, "teacher_forcing"), "y"),
        (lambda: loss(model, x, y, "teacher_forcing", chunk="2"), "chunk"),
    ]:
        err = _raises(r".", fn)
        assert re.match(rf"^{name}: ", str(err)), str(err)


def test_w_zero_holds_jordans_feedback_at_zero():
    """The no-feedback control: W zeroed and frozen, so teacher-forced and free-running
    outputs are the same and W gets no gradient."""
    torch.manual_seed(0)
    model = models.build("jordan", 3, 5, 4).double()
    x = torch.randn(7, 2, 3, dtype=torch.float64)
    y = torch.randint(0, 4, (7, 2))
    loss(model, x, y, "teacher_forcing", w_zero=True).backward()
    assert torch.count_nonzero(model.W) == 0 and not model.W.requires_grad
    assert model.W.grad is None and model.U.grad is not None
    torch.testing.assert_close(
        strategies.logits(model, x, y, feedback="teacher"),
        strategies.logits(model, x, feedback="argmax"),
        rtol=1e-12,
        atol=1e-12,
    )
    with pytest.raises(UsageError, match="w_zero: must be true or false"):
        strategies.check("jordan", "teacher_forcing", {"w_zero": "yes"})
