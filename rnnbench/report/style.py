"""One colour and one marker per strategy, the same in every plot of every report.

A series is ``model + strategy_label`` (:mod:`.tidy`). Its colour comes from the strategy's
base name (``truncated_bptt`` for ``truncated_bptt(k=32)``) in :data:`COLORS`; a strategy
run with options gets a lighter shade of its strategy's colour (the more options text, the
same shade: the shade depends on the label only, so it is stable across plots); a
strategy not in the table gets a grey chosen from its name's hash (stable across runs and
machines). The model changes only the marker's fill: Jordan's markers are hollow.
"""

from __future__ import annotations

import hashlib

from matplotlib.colors import to_rgb

# Base strategy -> colour (hex). Sequential BPTT loops in blues, parallel-in-time in
# oranges/reds, teacher forcing green, self-feeding purples.
COLORS = {
    "bptt": "#1f77b4",
    "bptt_fused": "#17becf",
    "bptt_compiled": "#08306b",
    "bptt_no_graph": "#6baed6",
    "best_bptt": "#3182bd",
    "truncated_bptt": "#9467bd",
    "checkpoint_bptt": "#8c564b",
    "scan_bptt": "#ff7f0e",
    "deer": "#d62728",
    "quasi_deer": "#e377c2",
    "teacher_forcing": "#2ca02c",
    "best_tf": "#98df8a",
    "free_running": "#7b4173",
    "scheduled_sampling": "#bcbd22",
    "rtrl": "#843c39",
}
MARKERS = {
    "bptt": "o",
    "bptt_fused": "s",
    "bptt_compiled": "D",
    "bptt_no_graph": "h",
    "best_bptt": "8",
    "truncated_bptt": "v",
    "checkpoint_bptt": "<",
    "scan_bptt": "^",
    "deer": "P",
    "quasi_deer": "X",
    "teacher_forcing": "*",
    "best_tf": "p",
    "free_running": ">",
    "scheduled_sampling": "d",
    "rtrl": "H",
}
OTHER_MARKER = "."
HOLLOW_MODELS = ("jordan",)


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def split(series: str) -> tuple[str, str, str]:
    """(model, base strategy, strategy label) of ``model + label`` (or a bare label)."""
    model, _, label = str(series).partition(" + ")
    if not label:
        model, label = "", model
    return model, label.split("(", 1)[0].strip(), label.strip()


def color(series: str) -> tuple[float, float, float]:
    """The series' RGB colour: its strategy's, lighter with options, grey when unknown."""
    _, base, label = split(series)
    if base not in COLORS:
        grey = 0.35 + 0.3 * (_hash(base) % 1000) / 1000
        return (grey, grey, grey)
    rgb = to_rgb(COLORS[base])
    if label == base:
        return rgb
    mix = 0.35 + 0.25 * (_hash(label) % 1000) / 1000  # lighter: mixed with white
    return tuple(c + (1 - c) * mix for c in rgb)  # type: ignore[return-value]


def marker(series: str) -> str:
    return MARKERS.get(split(series)[1], OTHER_MARKER)


def filled(series: str) -> bool:
    """Whether the series' markers are filled (Jordan's are hollow)."""
    return split(series)[0] not in HOLLOW_MODELS


def colors(names) -> dict:
    """Series name -> colour, for every name given."""
    return {name: color(name) for name in set(names)}
