"""Seeded sequence tasks: determinism, shapes and dtypes, and each task's targets
recomputed independently (plain Python loops over the decoded inputs)."""

from __future__ import annotations

import pytest
import torch

from rnnbench.core import tasks
from rnnbench.errors import UsageError


def decode(x: torch.Tensor) -> list[list[int]]:
    """One-hot (tau, B, n) -> per-sequence lists of symbols, checking it is one-hot."""
    assert ((x == 0) | (x == 1)).all() and (x.sum(-1) == 1).all()
    idx = x.argmax(-1)
    return [[int(idx[t, b]) for t in range(x.shape[0])] for b in range(x.shape[1])]


@pytest.mark.parametrize(
    "name, opts, n_in, n_out, single",
    [
        ("delayed_recall", {}, 9, 9, False),
        ("delayed_recall", {"k": 3, "symbols": 4}, 5, 5, False),
        ("temporal_xor", {}, 2, 2, False),
        ("running_parity", {}, 2, 2, False),
        ("sequence_parity", {}, 2, 2, True),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_shapes_dtypes_and_determinism(name, opts, n_in, n_out, single, dtype):
    task = tasks.make(name, **opts)
    assert (task.n_in, task.n_out, task.single_output) == (n_in, n_out, single)
    x, y = task.batch(13, 5, seed=7, dtype=dtype)
    assert x.shape == (13, 5, n_in) and x.dtype == dtype
    assert y.dtype == torch.int64 and y.shape == ((5,) if single else (13, 5))
    assert int(y.min()) >= 0 and int(y.max()) < n_out
    decode(x)
    x2, y2 = task.batch(13, 5, seed=7, dtype=dtype)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, y3 = task.batch(13, 5, seed=8, dtype=dtype)
    assert not torch.equal(x, x3)
    # the seed alone decides: the global RNG is neither used nor disturbed
    state = torch.random.get_rng_state()
    torch.manual_seed(12345)
    x4, _ = task.batch(13, 5, seed=7, dtype=dtype)
    assert torch.equal(x, x4)
    torch.random.set_rng_state(state)


@pytest.mark.parametrize("k, symbols", [(1, 8), (3, 4), (20, 3)])
def test_delayed_recall_targets(k, symbols):
    x, y = tasks.make("delayed_recall", k=k, symbols=symbols).batch(12, 4, seed=1)
    seqs = decode(x)
    for b, seq in enumerate(seqs):
        assert all(1 <= s <= symbols for s in seq)  # 0 is the blank, never an input
        want = [seq[t - k] if t >= k else 0 for t in range(12)]
        assert y[:, b].tolist() == want


def test_temporal_xor_targets():
    x, y = tasks.make("temporal_xor").batch(20, 6, seed=2)
    for b, bits in enumerate(decode(x)):
        want = [bits[t] ^ (bits[t - 1] if t else 0) for t in range(20)]
        assert y[:, b].tolist() == want


def test_running_parity_targets():
    x, y = tasks.make("running_parity").batch(20, 6, seed=3)
    for b, bits in enumerate(decode(x)):
        acc, want = 0, []
        for bit in bits:
            acc ^= bit
            want.append(acc)
        assert y[:, b].tolist() == want


def test_sequence_parity_targets():
    x, y = tasks.make("sequence_parity").batch(15, 40, seed=4)
    want = [sum(bits) % 2 for bits in decode(x)]
    assert y.tolist() == want
    assert 0 < sum(want) < 40  # both classes appear


def test_bits_are_balanced():
    x, _ = tasks.make("running_parity").batch(200, 50, seed=5)
    frac = float(x[..., 1].mean())
    assert 0.45 < frac < 0.55


def test_chance_accuracy():
    assert tasks.make("delayed_recall", symbols=8).chance_accuracy() == 1 / 8
    for name in ("temporal_xor", "running_parity", "sequence_parity"):
        assert tasks.make(name).chance_accuracy() == 0.5


def test_text_default_corpus_offline():
    """The default corpus is this Python's standard library: no network, any machine."""
    task = tasks.make("text")
    assert task.options["path"] == tasks.default_corpus()
    assert (task.n_in, task.n_out) == (64, 64)
    x, y = task.batch(40, 3, seed=0, dtype=torch.float32)
    assert x.shape == (40, 3, 64) and x.dtype == torch.float32 and y.shape == (40, 3)
    seqs = decode(x)
    for b, seq in enumerate(seqs):
        assert seq[1:] == y[:-1, b].tolist()  # the target is the next character
    x2, y2 = task.batch(40, 3, seed=0, dtype=torch.float32)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(y, task.batch(40, 3, seed=1)[1])


def test_text_from_a_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("abcd" * 100, encoding="utf-8")
    task = tasks.make("text", path=str(path), vocab=5)
    x, y = task.batch(30, 4, seed=3)
    # 4 distinct characters, sorted: a=0, b=1, c=2, d=3; class 4 ('other') unused
    for b, seq in enumerate(decode(x)):
        full = seq + [int(y[-1, b])]
        assert all((full[i + 1] - full[i]) % 4 == 1 for i in range(len(full) - 1))
    assert int(y.max()) <= 3


def test_text_rare_characters_share_the_other_class(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("aaaaabbbbbxyz" * 20, encoding="utf-8")
    _, y = tasks.make("text", path=str(path), vocab=3).batch(100, 2, seed=0)
    # a=0, b=1, and x, y, z all map to 'other' = 2
    assert set(y.unique().tolist()) == {0, 1, 2}


def test_text_from_a_folder_even_under_a_tests_folder(tmp_path):
    folder = tmp_path / "tests" / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("ab" * 50, encoding="utf-8")
    (folder / "sub" / "b.md").write_text("ab" * 50, encoding="utf-8")
    (folder / "skip.bin").write_text("zzzz" * 50, encoding="utf-8")  # not a text suffix
    (folder / "test").mkdir()
    (folder / "test" / "t.txt").write_text("qqqq" * 50, encoding="utf-8")  # test folder: skipped
    x, y = tasks.make("text", path=str(folder), vocab=8).batch(20, 2, seed=0)
    assert set(y.unique().tolist()) <= {0, 1}  # only 'a' and 'b' were read


def test_text_errors(tmp_path):
    with pytest.raises(UsageError, match=r"^task\.path: no such file or folder: "):
        tasks.make("text", path=str(tmp_path / "missing"))  # at once, before any batch
    short = tmp_path / "short.txt"
    short.write_text("abc", encoding="utf-8")
    with pytest.raises(UsageError, match=r"^tau: 10 is longer than the text corpus \(3 chars\)$"):
        tasks.make("text", path=str(short)).batch(10, 1)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match=r"^task\.path: no readable text under "):
        tasks.make("text", path=str(empty)).batch(5, 1)
    with pytest.raises(UsageError, match=r"^task\.vocab: must be at least 2, got 1$"):
        tasks.make("text", vocab=1)


@pytest.mark.parametrize(
    "tau, batch, pattern",
    [
        (-1, 2, r"^tau: must be a positive integer, got -1$"),
        (0, 2, r"^tau: must be a positive integer, got 0$"),
        (2.5, 2, r"^tau: must be a positive integer, got 2\.5$"),
        (5, 0, r"^batch: must be a positive integer, got 0$"),
        (5, -3, r"^batch: must be a positive integer, got -3$"),
    ],
)
def test_bad_sizes(tau, batch, pattern):
    with pytest.raises(UsageError, match=pattern):
        tasks.make("running_parity").batch(tau, batch)


@pytest.mark.parametrize(
    "call, pattern",
    [
        (
            lambda: tasks.make("copy"),
            r"^task: unknown task 'copy'; allowed: text, delayed_recall, "
            r"temporal_xor, running_parity, sequence_parity$",
        ),
        (
            lambda: tasks.make("delayed_recall", delay=2),
            r"^task\.delay: unknown option for delayed_recall; allowed: k, symbols$",
        ),
        (
            lambda: tasks.make("running_parity", k=1),
            r"^task\.k: unknown option for running_parity; allowed: none$",
        ),
        (
            lambda: tasks.make("delayed_recall", k=0),
            r"^task\.k: must be a positive integer, got 0$",
        ),
        (
            lambda: tasks.make("delayed_recall", symbols=0),
            r"^task\.symbols: must be a positive integer, got 0$",
        ),
    ],
)
def test_bad_task_arguments(call, pattern):
    with pytest.raises(UsageError, match=pattern):
        call()


def test_batch_defaults_to_the_default_dtype_so_a_model_takes_it_as_is():
    from rnnbench.core import strategies
    from rnnbench.core.models import build

    task = tasks.make("delayed_recall")
    x, y = task.batch(8, 2, seed=0)
    assert x.dtype == torch.get_default_dtype() == torch.float32
    model = build("elman", task.n_in, 4, task.n_out)
    strategies.loss(model, x, y, "bptt").backward()
    before = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        assert task.batch(8, 2, seed=0)[0].dtype == torch.float64
    finally:
        torch.set_default_dtype(before)


def test_text_without_input_keeps_the_targets_and_blanks_x(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("abcabcabd" * 20)
    with_input = tasks.make("text", path=str(corpus), vocab=5)
    blank = tasks.make("text", path=str(corpus), vocab=5, input="none")
    x, y = with_input.batch(16, 3, seed=4)
    x0, y0 = blank.batch(16, 3, seed=4)
    assert torch.equal(y, y0) and x0.shape == x.shape
    assert x.abs().sum() > 0 and x0.abs().sum() == 0  # only a fed-back y^(t-1) can carry the past
    with pytest.raises(UsageError, match=r"task.input: must be one of chars, none, got 'x'"):
        tasks.make("text", path=str(corpus), input="x")
