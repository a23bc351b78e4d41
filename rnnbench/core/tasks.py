"""Seeded, deterministic sequence tasks, time-major.

``make(name, **options)`` gives a :class:`Task`; ``task.batch(tau, batch, seed)``
gives ``(x, y)`` with x (tau, B, n_in) float one-hot inputs and y (tau, B) int64
targets — or (B,) for the single-output task.  The same (tau, batch, seed)
always gives the same tensors.

- ``text``: next-character prediction on a text corpus (default: this Python's
  own standard-library sources, so it works offline everywhere).  With
  ``input=none`` x^(t) is all zeros: the model sees no character, only what it
  feeds back (a Jordan network's y^(t-1)) carries the past — generation from its
  own previous token, where teacher forcing and free running really differ.
- ``delayed_recall(k)``: y^(t) = x^(t-k); the past must live in h, the output
  does not carry it (Jordan networks fail it).
- ``temporal_xor``: y^(t) = x^(t) xor x^(t-1); the output does not carry x^(t-1).
- ``running_parity``: y^(t) = x^(1) xor ... xor x^(t) = y^(t-1) xor x^(t); the
  state *is* the output (Jordan networks succeed).
- ``sequence_parity``: one target, the parity of the whole sequence (SingleOutput).
"""

from __future__ import annotations

import collections
import os
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from rnnbench.errors import UsageError, check_int


def _one_hot(idx: torch.Tensor, n: int, dtype) -> torch.Tensor:
    return F.one_hot(idx, n).to(dtype)


@dataclass(frozen=True)
class Task:
    """A sequence task: vocabulary sizes and a seeded batch generator."""

    name: str
    n_in: int
    n_out: int
    single_output: bool = False
    options: dict = field(default_factory=dict, compare=False)

    def batch(
        self, tau: int, batch: int, seed: int = 0, dtype=None, device="cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x in ``dtype`` (default: torch's default dtype, float32 unless changed: a
        model's), y int64."""
        dtype = torch.get_default_dtype() if dtype is None else dtype
        check_int("tau", tau)
        check_int("batch", batch)
        gen = torch.Generator().manual_seed(int(seed))
        x, y = _GENERATORS[self.name](self, tau, batch, gen)
        return x.to(dtype=dtype, device=device), y.to(device)

    def chance_accuracy(self) -> float:
        """Accuracy of guessing the most frequent class blindly (roughly)."""
        return _CHANCE[self.name](self)

    def longest(self) -> int | None:
        """The longest tau a batch can have (the text corpus's length; None: any)."""
        if self.name != "text":
            return None
        return int(_corpus_codes(self.options["path"], self.options["vocab"]).numel()) - 2


# --------------------------------------------------------------------------- synthetic


def _bits(tau, batch, gen):
    return torch.randint(0, 2, (tau, batch), generator=gen)


def _delayed_recall(task, tau, batch, gen):
    k, n = task.options["k"], task.options["symbols"]
    sym = torch.randint(1, n + 1, (tau, batch), generator=gen)  # 0 is "blank"
    y = torch.zeros_like(sym)
    if tau > k:
        y[k:] = sym[:-k]
    return _one_hot(sym, n + 1, torch.float64), y


def _temporal_xor(task, tau, batch, gen):
    bits = _bits(tau, batch, gen)
    prev = torch.cat([torch.zeros_like(bits[:1]), bits[:-1]])
    return _one_hot(bits, 2, torch.float64), bits ^ prev


def _running_parity(task, tau, batch, gen):
    bits = _bits(tau, batch, gen)
    return _one_hot(bits, 2, torch.float64), torch.cumsum(bits, 0) % 2


def _sequence_parity(task, tau, batch, gen):
    bits = _bits(tau, batch, gen)
    return _one_hot(bits, 2, torch.float64), bits.sum(0) % 2


def _text(task, tau, batch, gen):
    codes = _corpus_codes(task.options["path"], task.options["vocab"])
    if codes.numel() < tau + 2:
        raise UsageError(f"tau: {tau} is longer than the text corpus ({codes.numel()} chars)")
    start = torch.randint(0, codes.numel() - tau - 1, (batch,), generator=gen)
    idx = start[None, :] + torch.arange(tau + 1)[:, None]  # (tau + 1, B)
    seq = codes[idx]
    x = _one_hot(seq[:-1], task.n_in, torch.float64)
    if task.options["input"] == "none":
        x = torch.zeros_like(x)  # no true input: only the fed-back output carries the past
    return x, seq[1:].clone()


_GENERATORS = {
    "delayed_recall": _delayed_recall,
    "temporal_xor": _temporal_xor,
    "running_parity": _running_parity,
    "sequence_parity": _sequence_parity,
    "text": _text,
}

_CHANCE = {
    "delayed_recall": lambda t: 1.0 / t.options["symbols"],
    "temporal_xor": lambda t: 0.5,
    "running_parity": lambda t: 0.5,
    "sequence_parity": lambda t: 0.5,
    "text": lambda t: float("nan"),
}

# --------------------------------------------------------------------------- text corpus

CORPUS_LIMIT = 2_000_000  # characters read from the corpus, at most


def default_corpus() -> str:
    """The running Python's standard-library sources: present on every machine."""
    return sysconfig.get_paths()["stdlib"]


def _read_corpus(path: str) -> str:
    p = Path(path)
    if p.is_file():
        files = [p]
    elif p.is_dir():
        # Walk with pruning: site-packages (often most of the files under the stdlib
        # folder) and test folders are skipped, never listed.  Only folders *below*
        # the given one are judged, so a corpus kept under e.g. .../tests/ still works.
        found = []
        for root, dirs, names in os.walk(p):
            dirs[:] = [d for d in dirs if d not in ("site-packages", "test", "tests")]
            found += [
                Path(root, n) for n in names if Path(n).suffix in (".py", ".txt", ".md", ".rst")
            ]
        files = sorted(found)
    else:
        raise UsageError(f"task.path: no such file or folder: {path}")
    chunks, size = [], 0
    for f in files:
        try:
            text = f.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        chunks.append(text)
        size += len(text)
        if size >= CORPUS_LIMIT:
            break
    text = "".join(chunks)[:CORPUS_LIMIT]
    if not text:
        raise UsageError(f"task.path: no readable text under {path}")
    return text


_CODES_CACHE: dict = {}


def _corpus_codes(path: str, vocab: int) -> torch.Tensor:
    """Characters as indices: the vocab-1 most frequent, then one 'other' class."""
    key = (os.path.abspath(path), vocab)
    if key not in _CODES_CACHE:  # a pure function of its key, cached per process
        text = _read_corpus(path)
        common = [ch for ch, _ in collections.Counter(text).most_common(vocab - 1)]
        common.sort()
        table = {ch: i for i, ch in enumerate(common)}
        other = vocab - 1
        _CODES_CACHE[key] = torch.tensor([table.get(ch, other) for ch in text], dtype=torch.int64)
    return _CODES_CACHE[key]


# --------------------------------------------------------------------------- registry

TEXT_INPUTS = ("chars", "none")  # x^(t): the current character, or nothing

TASKS: dict[str, dict[str, object]] = {
    "text": {"vocab": 64, "path": None, "input": "chars"},
    "delayed_recall": {"k": 1, "symbols": 8},
    "temporal_xor": {},
    "running_parity": {},
    "sequence_parity": {},
}


def make(name: str, **options) -> Task:
    """Build a task by name; unknown names or options raise a UsageError naming them."""
    if name not in TASKS:
        raise UsageError(f"task: unknown task {name!r}; allowed: {', '.join(TASKS)}")
    for key in options:
        if key not in TASKS[name]:
            allowed = ", ".join(TASKS[name]) or "none"
            raise UsageError(f"task.{key}: unknown option for {name}; allowed: {allowed}")
    opts = {**TASKS[name], **options}
    if name == "text":
        vocab = check_int("task.vocab", opts["vocab"])
        if vocab < 2:
            raise UsageError(f"task.vocab: must be at least 2, got {vocab}")
        if opts["input"] not in TEXT_INPUTS:
            raise UsageError(
                f"task.input: must be one of {', '.join(TEXT_INPUTS)}, got {opts['input']!r}"
            )
        opts["path"] = str(opts["path"] or default_corpus())
        if not Path(opts["path"]).exists():
            raise UsageError(f"task.path: no such file or folder: {opts['path']}")
        return Task(name, vocab, vocab, options=opts)
    if name == "delayed_recall":
        check_int("task.k", opts["k"])
        n = check_int("task.symbols", opts["symbols"])
        return Task(name, n + 1, n + 1, options=opts)
    return Task(name, 2, 2, single_output=name == "sequence_parity", options=opts)
