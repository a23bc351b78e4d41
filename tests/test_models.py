"""The chapter's three models: parameter names and shapes, and the Elman /
SingleOutput losses and gradients (loop ``bptt`` and fused ``bptt_fused``)
against an independent reference built from ``torch.nn.RNN`` + ``torch.nn.Linear``
holding the same weights."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import rel_err
from torch import nn

from rnnbench.core import models, strategies
from rnnbench.errors import UsageError

DT = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")

REL = 1e-8  # acceptance: relative error < 1e-8


@pytest.mark.parametrize(
    "cls, w_shape",
    [(models.Elman, (5, 5)), (models.SingleOutput, (5, 5)), (models.Jordan, (5, 4))],
)
def test_parameter_names_and_shapes(cls, w_shape):
    m = cls(3, 5, 4)
    shapes = {name: tuple(p.shape) for name, p in m.named_parameters()}
    assert shapes == {"U": (5, 3), "W": w_shape, "V": (4, 5), "b": (5,), "c": (4,)}
    # initialised like torch.nn.RNN: uniform in +-1/sqrt(H), not left empty
    bound = 1 / math.sqrt(5)
    for p in m.parameters():
        assert torch.isfinite(p).all() and p.abs().max() <= bound
    m.double()
    assert all(p.dtype == DT for p in m.parameters())


def test_registry_and_build():
    assert set(models.MODELS) == {"elman", "jordan", "single_output"}
    assert type(models.build("Jordan", 2, 3, 4)) is models.Jordan
    assert models.model_name(models.SingleOutput(2, 3, 4)) == "single_output"
    assert models.model_name(models.Elman(2, 3, 4)) == "elman"
    with pytest.raises(UsageError, match=r"^model: unknown model 'gru'; allowed: elman, jordan"):
        models.build("gru", 2, 3, 4)


@pytest.mark.parametrize(
    "arg, bad", [("n_in", 0), ("n_hidden", -3), ("n_out", 2.0), ("n_in", True)]
)
def test_bad_sizes_name_the_argument(arg, bad):
    sizes = {"n_in": 2, "n_hidden": 3, "n_out": 4, arg: bad}
    with pytest.raises(UsageError, match=rf"^{arg}: must be a positive integer, got {bad!r}$"):
        models.Elman(**sizes)


def _reference(model, split_bias: bool):
    """nn.RNN + nn.Linear with the model's weights (fresh tensors, own parameters).

    With ``split_bias`` the model's b is split at random between bias_ih and
    bias_hh (nn.RNN adds both), so the reference does not merely mirror how
    bptt_fused zeroes bias_hh.
    """
    n_in, H, n_out = model.n_in, model.n_hidden, model.n_out
    rnn = nn.RNN(n_in, H, nonlinearity="tanh", bias=True).double()
    lin = nn.Linear(H, n_out).double()
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(model.U)
        rnn.weight_hh_l0.copy_(model.W)
        r = torch.randn(H, dtype=DT) if split_bias else torch.zeros(H, dtype=DT)
        rnn.bias_ih_l0.copy_(model.b - r)
        rnn.bias_hh_l0.copy_(r)
        lin.weight.copy_(model.V)
        lin.bias.copy_(model.c)
    return rnn, lin


def _reference_loss_and_grads(model, x, y, split_bias):
    rnn, lin = _reference(model, split_bias)
    out, h_n = rnn(x)  # out (tau, B, H), h_n (1, B, H)
    if model.single_output:
        o = lin(h_n[0])
        L = F.cross_entropy(o, y, reduction="sum")
    else:
        o = lin(out)
        L = F.cross_entropy(o.reshape(-1, model.n_out), y.reshape(-1), reduction="sum")
    L.backward()
    grads = {
        "U": rnn.weight_ih_l0.grad,
        "W": rnn.weight_hh_l0.grad,
        "b": rnn.bias_ih_l0.grad,
        "V": lin.weight.grad,
        "c": lin.bias.grad,
    }
    # b enters as bias_ih + bias_hh: both get the same gradient
    torch.testing.assert_close(rnn.bias_hh_l0.grad, rnn.bias_ih_l0.grad, rtol=0, atol=1e-12)
    return L.detach(), grads


@pytest.mark.parametrize("cls", [models.Elman, models.SingleOutput])
@pytest.mark.parametrize("strategy", ["bptt", "bptt_fused"])
@pytest.mark.parametrize("tau, batch", [(1, 1), (9, 3), (40, 2)])
def test_loop_and_fused_match_nn_rnn(cls, strategy, tau, batch):
    torch.manual_seed(tau * 100 + batch)
    model = cls(4, 6, 5).double()
    x = torch.randn(tau, batch, 4, dtype=DT)
    y = torch.randint(0, 5, (batch,) if model.single_output else (tau, batch))
    ref_loss, ref_grads = _reference_loss_and_grads(model, x, y, split_bias=True)

    L = strategies.loss(model, x, y, strategy)
    L.backward()
    assert L.dtype == DT and L.dim() == 0
    assert rel_err(L.detach(), ref_loss) < REL
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert rel_err(p.grad, ref_grads[name]) < REL, (name, rel_err(p.grad, ref_grads[name]))


def test_fused_does_not_change_or_detach_parameters():
    """bptt_fused must route gradients to the model's own U, W, b (not to copies)."""
    torch.manual_seed(1)
    model = models.Elman(3, 4, 3).double()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = torch.randn(5, 2, 3, dtype=DT)
    y = torch.randint(0, 3, (5, 2))
    strategies.loss(model, x, y, "bptt_fused").backward()
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), before[n])
        assert p.grad is not None and p.grad.abs().sum() > 0, n


def test_elman_equations_by_hand():
    """One step written from the book's equations, no library RNN at all."""
    torch.manual_seed(2)
    model = models.Elman(3, 4, 2).double()
    x = torch.randn(2, 1, 3, dtype=DT)
    y = torch.tensor([[1], [0]])
    U, W, V, b, c = (model.U, model.W, model.V, model.b, model.c)
    with torch.no_grad():
        h1 = torch.tanh(b + U @ x[0, 0])  # h^(0) = 0
        h2 = torch.tanh(b + W @ h1 + U @ x[1, 0])
        o1, o2 = c + V @ h1, c + V @ h2
        want = -(torch.log_softmax(o1, 0)[1] + torch.log_softmax(o2, 0)[0])
    got = strategies.loss(model, x, y, "bptt").detach()
    assert rel_err(got, want) < 1e-12


def test_jordan_equations_by_hand():
    """Jordan, free-running with softmax feedback: f^(0) = 0, f^(1) = softmax(o^(1))."""
    torch.manual_seed(3)
    model = models.Jordan(3, 4, 2).double()
    x = torch.randn(2, 1, 3, dtype=DT)
    y = torch.tensor([[1], [0]])
    U, W, V, b, c = (model.U, model.W, model.V, model.b, model.c)
    with torch.no_grad():
        h1 = torch.tanh(b + U @ x[0, 0])
        o1 = c + V @ h1
        h2 = torch.tanh(b + W @ torch.softmax(o1, 0) + U @ x[1, 0])
        o2 = c + V @ h2
        want = -(torch.log_softmax(o1, 0)[1] + torch.log_softmax(o2, 0)[0])
        # teacher forcing feeds one_hot(y^(1)) instead
        h2t = torch.tanh(b + W[:, 1] + U @ x[1, 0])
        want_tf = -(torch.log_softmax(o1, 0)[1] + torch.log_softmax(c + V @ h2t, 0)[0])
    assert rel_err(strategies.loss(model, x, y, "bptt").detach(), want) < 1e-12
    assert rel_err(strategies.loss(model, x, y, "teacher_forcing").detach(), want_tf) < 1e-12
