"""The chapter's capacity claims, kept true by training small models for seconds.

- An Elman network (hidden -> hidden) trained by BPTT learns delayed_recall(1),
  y^(t) = x^(t-1): the past lives in h.
- A Jordan network (output -> hidden) trained by teacher forcing cannot: at step t
  it sees x^(t) and the fed-back y^(t-1) = x^(t-2), nothing about x^(t-1).  The
  best it can do on the positions after the delay is chance, 1/symbols = 1/8
  (eval on 256 x 19 = 4864 tokens: the standard error of an accuracy near 1/8 is
  about 0.005, so "near chance" is asserted as |acc - 1/8| < 0.03).  It gets four
  times the Elman network's training steps, so the failure is not a short budget.
- The same Jordan network learns running_parity, y^(t) = y^(t-1) xor x^(t),
  because there the state *is* the output (evaluated teacher-forced).

Deterministic: fixed seeds for the initial weights and for every batch, Adam,
one intra-op thread.  Whole file: about 10 s on 2 shared cores.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rnnbench.core import models, strategies, tasks

TAU, BATCH, EVAL_BATCH = 20, 32, 256


pytestmark = pytest.mark.usefixtures("one_thread")


def train(cls, strategy, task, hidden, steps, lr=0.02, seed=0):
    torch.manual_seed(seed)
    model = cls(task.n_in, hidden, task.n_out)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for i in range(steps):
        x, y = task.batch(TAU, BATCH, seed=1000 + i, dtype=torch.float32)
        opt.zero_grad()
        strategies.loss(model, x, y, strategy).backward()
        opt.step()
    return model


def evaluate(model, task, skip):
    """Accuracy and per-token NLL (nats) on a fresh batch, on positions t >= skip.

    Elman ignores ``feedback``; Jordan is evaluated teacher-forced."""
    x, y = task.batch(TAU, EVAL_BATCH, seed=99, dtype=torch.float32)
    with torch.no_grad():
        o = strategies.logits(model, x, y, feedback="teacher")[skip:]
    y = y[skip:]
    acc = float((o.argmax(-1) == y).double().mean())
    nll = float(F.cross_entropy(o.reshape(-1, o.shape[-1]), y.reshape(-1)))
    return acc, nll


def test_elman_learns_delayed_recall_jordan_teacher_forced_stays_at_chance():
    task = tasks.make("delayed_recall", k=1, symbols=8)
    chance = task.chance_accuracy()
    assert chance == 1 / 8

    elman = train(models.Elman, "bptt", task, hidden=32, steps=150)
    elman_acc, _ = evaluate(elman, task, skip=1)
    assert elman_acc > 0.99, elman_acc

    jordan = train(models.Jordan, "teacher_forcing", task, hidden=32, steps=600)
    jordan_acc, jordan_nll = evaluate(jordan, task, skip=1)
    assert abs(jordan_acc - chance) < 0.03, jordan_acc
    # and its loss stays near the entropy of a uniform guess, log 8 = 2.08 nats
    assert jordan_nll > 0.95 * math.log(8), jordan_nll


def test_jordan_teacher_forced_learns_running_parity():
    task = tasks.make("running_parity")
    jordan = train(models.Jordan, "teacher_forcing", task, hidden=16, steps=150)
    acc, _ = evaluate(jordan, task, skip=0)
    assert acc > 0.99, acc
