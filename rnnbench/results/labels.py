"""A paired cell's baseline as readable text, the one rule every table and listing uses.

A row (and a cell) stores its baseline as field overrides: JSON text in a row file
(``{"threads": 1}``), sorted (field, value) pairs in a :class:`rnnbench.job.cell.Cell`.
:func:`baseline_text` writes either as ``threads=1`` (several fields comma-separated,
options in parentheses: ``model=elman, strategy=bptt_compiled``), and a plain cell
(no baseline) as :data:`PLAIN`.
"""

from __future__ import annotations

import json
import math
from typing import Any

PLAIN = "-"  # a cell timed on its own, without a baseline beside it


def _value(v: Any) -> str:
    if isinstance(v, dict):
        return "(" + ", ".join(f"{k}={_value(x)}" for k, x in sorted(v.items())) + ")"
    pairs = isinstance(v, (list, tuple)) and all(
        isinstance(p, (list, tuple)) and len(p) == 2 for p in v
    )
    if pairs:
        return _value({str(k): x for k, x in v}) if v else "()"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def baseline_text(value: Any) -> str:
    """``threads=1`` for a baseline given as JSON text, a mapping or (field, value) pairs;
    :data:`PLAIN` for none (None, NaN, empty text, an empty mapping)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return PLAIN
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return PLAIN
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return text  # already text
    if isinstance(value, (list, tuple)):
        if not value:
            return PLAIN
        value = {str(k): v for k, v in value}
    if not isinstance(value, dict):
        return str(value)
    if not value:
        return PLAIN
    return ", ".join(f"{k}={_value(v)}" for k, v in sorted(value.items()))
