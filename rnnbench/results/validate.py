"""The one row validator: :func:`problem` says what is wrong with a row, or None.

``run`` moves a row with a problem to ``rows/.broken/`` and runs its cell again;
``report`` and ``compare`` skip it with one warning line (:mod:`rnnbench.results.store`
reads rows for all three).  So every row that reaches a frame or ``results.parquet`` has
the types :data:`rnnbench.results.rows.SCHEMA` declares:

- ``str``/``timestamp``: text; ``json``: a JSON object, or text that parses to one
  (also :data:`JSON_TEXT`, text keys that hold an object's JSON);
- ``int``: an integer (not a bool; 3.0 counts) in 0..2^63-1, at least 1 for
  :data:`POSITIVE` keys;
- ``float``: a finite number (null where not measured: row files hold no NaN);
- ``bool``: true/false; ``list[...]``: a list of the declared items (finite numbers,
  or null);
- any key may be null except :data:`rnnbench.facts.REQUIRED_ROW_KEYS`; a key the schema
  does not know may hold any JSON value;
- nothing nested deeper than :data:`MAX_DEPTH` (checked without recursion).
"""

from __future__ import annotations

import json
import math
from typing import Any

from rnnbench.facts import REQUIRED_ROW_KEYS
from rnnbench.results.rows import SCHEMA

MAX_DEPTH = 8  # levels of lists/objects in a row, the row itself the first
INT_MAX = 2**63 - 1  # Parquet int64
# keys the schema declares text that hold a JSON object's text (a runner returning
# ``cell.config()`` gives the object itself): checked as "json"
JSON_TEXT = ("baseline", "baseline_config", "baseline_candidates_ms")
KINDS = {**SCHEMA, **dict.fromkeys(JSON_TEXT, "json")}
POSITIVE = (  # at least 1 where present
    "tau",
    "batch",
    "hidden",
    "threads",
    "workers",
    "repeats",
    "replicates",
    "max_replicates",
)


def depth(value: Any) -> int:
    """How many levels of lists/objects ``value`` has (0 for a scalar), without
    recursion, stopping once past :data:`MAX_DEPTH`."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, tuple, dict)):
            deepest = max(deepest, level)
            if deepest > MAX_DEPTH:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, level + 1) for c in children)
    return deepest


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _item(v: Any) -> bool:
    """A list item: a finite number, or null (a NaN written as null)."""
    return v is None or _number(v)


def _int(v: Any, low: int) -> bool:
    """An integer in [low, INT_MAX]; a float with an integral value counts (3.0)."""
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        v = int(v)
    return isinstance(v, int) and not isinstance(v, bool) and low <= v <= INT_MAX


def _fits(kind: str, v: Any, low: int) -> bool:
    if kind in ("str", "timestamp"):
        return isinstance(v, str)
    if kind == "json":
        if isinstance(v, str):
            try:
                v = json.loads(v)
            except (ValueError, RecursionError):
                return False
            return isinstance(v, dict) and depth(v) <= MAX_DEPTH
        return isinstance(v, dict)
    if kind == "int":
        return _int(v, low)
    if kind == "float":
        return _number(v)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "list[float]":
        return isinstance(v, list) and all(_item(x) for x in v)
    if kind == "list[int]":
        return isinstance(v, list) and all(x is None or _int(x, 0) for x in v)
    if kind == "list[str]":  # the ranks' node ids and IPs
        return isinstance(v, list) and all(x is None or isinstance(x, str) for x in v)
    if kind == "list[list[float]]":
        return isinstance(v, list) and all(
            isinstance(x, list) and all(_item(y) for y in x) for x in v
        )
    raise AssertionError(f"unknown kind {kind}")  # pragma: no cover - SCHEMA's kinds


def problem(row: Any) -> str | None:
    """What is wrong with ``row`` (one short phrase naming the key), or None."""
    if not isinstance(row, dict):
        return f"not a JSON object ({type(row).__name__})"
    if depth(row) > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH} levels"
    for key in REQUIRED_ROW_KEYS:
        if row.get(key) is None:
            return f"no {key!r}"
    for key, value in row.items():
        kind = KINDS.get(key)
        if kind is None or value is None:
            continue
        if not _fits(kind, value, 1 if key in POSITIVE else 0):
            shown = json.dumps(value, default=str)[:40]
            return f"{key!r} is not {_WHAT[kind]}{' >= 1' if key in POSITIVE else ''}: {shown}"
    return None


_WHAT = {
    "str": "text",
    "timestamp": "a timestamp (text)",
    "json": "a JSON object",
    "int": "an integer",
    "float": "a finite number",
    "bool": "true/false",
    "list[float]": "a list of finite numbers",
    "list[int]": "a list of integers",
    "list[list[float]]": "a list of lists of finite numbers",
    "list[str]": "a list of text",
}
