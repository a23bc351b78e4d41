"""Job files: a YAML grid of benchmark cells, validated with exact errors.

A job names fixed fields and a grid; the cartesian product of the grid's axes
(times ``seeds``) gives the cells::

    name: chapter10
    fixed: {hidden: 128, threads: 1, train_steps: 200, task: text}
    grid:
      tau: [64, 256, 1024, 4096]
      batch: [1, 32]
      run:                       # model+strategy pairs, so no invalid pair is generated
        - {model: elman,  strategy: bptt}
        - {model: jordan, strategy: teacher_forcing}
    seeds: [0, 1, 2]

A job (or a part) without a grid is one cell per seed: its fixed fields.
A job with several differently shaped grids lists them under ``parts``, each
with its own ``name``, ``fixed``, ``grid`` and optional ``seeds``; there the
top-level ``fixed`` and ``seeds`` are defaults that a part may override.  Within
one level a field is set in one place only (fixed, a grid axis, run entries).  Files are
read with ``yaml.safe_load``
semantics (no code runs); every problem is reported at once, one line each,
naming the field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rnnbench.core import strategies
from rnnbench.errors import UsageError, short
from rnnbench.job.cell import Cell

CELL_FIELDS = tuple(f.name for f in dataclasses.fields(Cell))
TOP_KEYS = ("name", "description", "fixed", "grid", "seeds", "parts")
PART_KEYS = ("name", "description", "fixed", "grid", "seeds")
MAX_CELLS = 100_000
# Nodes of the YAML document with every alias expanded (each use of an anchor
# counts its whole subtree): a bound checked before anything is built, so an
# alias bomb (a few lines that expand to billions of values) is refused at once.
MAX_NODES = 1_000_000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class JobError(UsageError):
    """A job file with one or more problems; ``problems`` holds one line each."""

    def __init__(self, path: str, problems: list[str]):
        self.path = str(path)
        self.problems = list(problems)
        super().__init__("\n".join(f"{self.path}: {p}" for p in self.problems))


@dataclass(frozen=True)
class Job:
    """A validated job: its name, source path and cells (unique, in file order)."""

    name: str
    path: str
    cells: tuple[Cell, ...]
    description: str = ""


# --------------------------------------------------------------------------- YAML


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that records duplicate mapping keys instead of
    silently keeping the last one."""

    def __init__(self, stream):
        super().__init__(stream)
        self.duplicates: list[str] = []

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                dup = key in seen
                seen.add(key)
            except TypeError:  # unhashable key: SafeLoader reports it below
                continue
            if dup:
                self.duplicates.append(
                    f"line {key_node.start_mark.line + 1}: duplicate key {short(key)}; "
                    "each key may appear once per mapping"
                )
        return super().construct_mapping(node, deep=deep)


class TooLarge(yaml.YAMLError):
    """A document larger than :data:`MAX_NODES` with its aliases expanded, or recursive."""


def expanded_size(node, limit: int = MAX_NODES) -> int:
    """How many nodes the document holds with every alias expanded (counted on the
    node graph once per distinct node, so the count costs what the file does);
    TooLarge past ``limit`` or for a node that contains itself."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(n) -> int:
        key = id(n)
        if key in sizes:
            return sizes[key]
        if key in open_:
            raise TooLarge("an alias refers to a node that contains it (a recursive structure)")
        open_.add(key)
        total = 1
        if isinstance(n, yaml.SequenceNode):
            total += sum(size(child) for child in n.value)
        elif isinstance(n, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in n.value)
        open_.discard(key)
        if total > limit:
            raise TooLarge(
                f"more than {limit} values once its aliases (*name) are expanded; "
                "write the values out or split the job"
            )
        sizes[key] = total
        return total

    return size(node) if node is not None else 0


def parse_yaml(text: str) -> tuple[Any, list[str]]:
    """Parse YAML safely; return (data, duplicate-key problems).  The document's
    size with aliases expanded is checked (:func:`expanded_size`) before any
    value is built."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        expanded_size(node)
        return (loader.construct_document(node) if node is not None else None), loader.duplicates
    finally:
        loader.dispose()


# --------------------------------------------------------------------------- validation


def _kind(value) -> str:
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "empty",
    }.get(type(value), type(value).__name__)


def _check_mapping(where: str, value, problems: list[str]) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(
            f"{where}: must be a mapping of field: value, got {_kind(value)} {short(value)}"
        )
        return {}
    return value


def _check_fields(where: str, mapping: dict, problems: list[str]) -> dict:
    """Keep the known cell fields of ``mapping``; report the others."""
    good = {}
    for key, value in mapping.items():
        if key not in CELL_FIELDS:
            problems.append(f"{where}.{key}: unknown field; allowed: {', '.join(CELL_FIELDS)}")
        elif key in ("strategy_options", "task_options") and not isinstance(
            value, (dict, type(None))
        ):
            problems.append(
                f"{where}.{key}: must be a mapping of option: value, "
                f"got {_kind(value)} {short(value)}"
            )
        elif key == "baseline" and not isinstance(value, (dict, type(None))):
            problems.append(
                f"{where}.{key}: must be a mapping of field: value, e.g. "
                f"{{workers: 1}}, got {_kind(value)} {short(value)}"
            )
        else:
            good[key] = value
    return good


def _check_list(where: str, value, problems: list[str]) -> list:
    if not isinstance(value, list):
        problems.append(
            f"{where}: must be a non-empty list of values, got {_kind(value)} {short(value)}"
        )
        return []
    if not value:
        problems.append(f"{where}: empty list; give at least one value")
        return []
    seen = set()
    for i, item in enumerate(value):
        key = _key(item)
        if key in seen:
            problems.append(
                f"{where}[{i}]: duplicate value {short(item)}; each value may appear once"
            )
        seen.add(key)
    return value


def _key(value):
    """A hashable stand-in for a value (mappings and lists by their sorted JSON text)."""
    try:
        hash(value)
        return value
    except TypeError:
        return ("unhashable", json.dumps(value, sort_keys=True, default=repr))


def _axes(where: str, grid, problems: list[str]) -> list[tuple[str, list]]:
    """The grid as (axis, values) pairs; ``run`` values are field mappings."""
    if grid is None or grid == {}:
        problems.append(f"{where}: empty grid; give at least one axis, e.g. tau: [64, 256]")
        return []
    if not isinstance(grid, dict):
        problems.append(
            f"{where}: must be a mapping of axis: [values], got {_kind(grid)} {short(grid)}"
        )
        return []
    axes = []
    for axis, values in grid.items():
        at = f"{where}.{axis}"
        if axis != "run" and axis not in CELL_FIELDS:
            problems.append(f"{at}: unknown axis; allowed: run, {', '.join(CELL_FIELDS)}")
            continue
        values = _check_list(at, values, problems)
        if axis == "run":
            entries = []
            for i, entry in enumerate(values):
                if not isinstance(entry, dict) or not entry:
                    problems.append(
                        f"{at}[{i}]: must be a mapping of fields, e.g. "
                        f"{{model: elman, strategy: bptt}}, got {_kind(entry)} {short(entry)}"
                    )
                    continue
                entries.append(_check_fields(f"{at}[{i}]", entry, problems))
            values = entries if len(entries) == len(values) else []
        if values:
            axes.append((axis, values))
    return axes


def _sources(
    fixed: dict, axes: list, grid_at: str, seeds_at: str | None, problems: list[str]
) -> dict[str, str]:
    """Where each field is set ("fixed.hidden", "grid.tau", ...); a field set in
    two places (fixed and grid, grid and run, seeds and seed) is a problem."""
    origin = {key: f"{place}.{key}" for key, (_, place) in fixed.items()}

    def claim(field_: str, place: str):
        if field_ in origin:
            problems.append(
                f"{place}: {field_!r} is also set in {origin[field_]}; set it in one place"
            )
        else:
            origin[field_] = place

    for axis, values in axes:
        if axis != "run":
            claim(axis, f"{grid_at}.{axis}")
            continue
        first: dict[str, str] = {}
        for i, entry in enumerate(values):
            for key in entry:
                first.setdefault(key, f"{grid_at}.run[{i}].{key}")
        for key, place in first.items():
            claim(key, place)
    if seeds_at is not None:
        claim("seed", seeds_at)
    return origin


def _locate(message: str, where_set: dict[str, str]) -> str:
    """Replace the field name that starts a Cell validation message with the
    place in the file that sets it ("tau: ..." -> "grid.tau: ...")."""
    head, sep, rest = message.partition(": ")
    if not sep:
        return message
    first, dot, sub = head.partition(".")
    if dot and first in strategies.STRATEGIES:
        field_ = "strategy_options"
    elif dot and first == "task":
        field_ = "task_options"
    elif dot and first == "baseline":
        field_ = "baseline"
    else:
        field_, sub = head, ""
    place = where_set.get(field_)
    if place is None:
        return message
    return f"{place}.{sub}: {rest}" if sub else f"{place}: {rest}"


def _part_cells(where: str, part: dict, top_fixed: dict, top_seeds, problems: list[str]):
    """Yield the cells of one part (or the top-level grid)."""
    grid_at = f"{where}.grid" if where else "grid"
    # without a grid, the fixed fields are one cell (per seed)
    axes = _axes(grid_at, part["grid"], problems) if "grid" in part else []
    fixed = {k: (v, "fixed") for k, v in top_fixed.items()}
    if where:  # in a part, the top-level fixed fields are defaults the part may override
        part_fixed = _check_fields(
            f"{where}.fixed",
            _check_mapping(f"{where}.fixed", part.get("fixed"), problems),
            problems,
        )
        varied = {a for a, _ in axes if a != "run"}
        varied |= {k for a, values in axes if a == "run" for entry in values for k in entry}
        if "seeds" in part:
            varied.add("seed")
        fixed = {k: v for k, v in fixed.items() if k not in varied}
        fixed.update({k: (v, f"{where}.fixed") for k, v in part_fixed.items()})
    seeds = part.get("seeds", top_seeds) if where else top_seeds
    seeds_at = f"{where}.seeds" if where and "seeds" in part else "seeds"
    if seeds is not None:
        seeds = _check_list(seeds_at, seeds, problems) or None
    origin = _sources(fixed, axes, grid_at, seeds_at if seeds is not None else None, problems)
    if not axes and "grid" in part:
        return []
    size = 1
    for _, values in axes:
        size *= len(values)
    size *= len(seeds or [0])
    if size > MAX_CELLS:
        problems.append(f"{grid_at}: {size} cells; at most {MAX_CELLS} per job")
        return []
    names = [a for a, _ in axes]
    cells, errors = [], {}
    # each axis value with its index, so a run entry's place is known without a search
    indexed = [list(enumerate(v)) for _, v in axes]
    for combo in itertools.product(*indexed, *([list(enumerate(seeds))] if seeds else [])):
        config = {k: v for k, (v, _) in fixed.items()}
        where_set = dict(origin)
        for axis, (i, value) in zip(names, combo):
            if axis == "run":
                config.update(value)
                where_set.update({k: f"{grid_at}.run[{i}].{k}" for k in value})
            else:
                config[axis] = value
        if seeds:
            config["seed"] = combo[-1][1]
        for key in ("model", "strategy", "tau"):
            if key not in config:
                msg = f"{grid_at}: {key!r} is set nowhere; give it in fixed, the grid or run"
                if msg not in problems:
                    problems.append(msg)
        if any(key not in config for key in ("model", "strategy", "tau")):
            continue
        try:
            cells.append(Cell(**config))
        except UsageError as exc:  # one line per problem of the cell
            errors.update(dict.fromkeys(_locate(line, where_set) for line in str(exc).splitlines()))
        except TypeError as exc:  # a value of a type Cell cannot even compare
            errors[f"{grid_at}: {exc}"] = None
    problems.extend(errors)
    return cells


def _named(at: str, mapping: dict, allowed: tuple[str, ...], problems: list[str]) -> str | None:
    """The name of a job (``at`` empty) or of a part (``at`` = ``parts[i].``), after
    noting its unknown keys; None (and a problem) when the name is not a name."""
    for key in mapping:
        if key not in allowed:
            problems.append(f"{at}{key}: unknown key; allowed: {', '.join(allowed)}")
    name = mapping.get("name")
    if isinstance(name, str) and _NAME.match(name):
        return name
    problems.append(
        f"{at}name: must be a name of letters, digits, '_', '-', '.', got {short(name)}"
    )
    return None


def validate(data: Any, path: str = "job") -> Job:
    """Validate parsed job data; raise :class:`JobError` listing every problem."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise JobError(
            path, [f"job: must be a mapping with keys {', '.join(TOP_KEYS)}, got {_kind(data)}"]
        )
    name = _named("", data, TOP_KEYS, problems)
    desc = data.get("description", "")
    if not isinstance(desc, str):
        problems.append(f"description: must be a string, got {_kind(desc)}")
        desc = ""
    top_fixed = _check_fields(
        "fixed", _check_mapping("fixed", data.get("fixed"), problems), problems
    )
    top_seeds = data.get("seeds")
    cells: list[Cell] = []
    parts = data.get("parts")
    if parts is not None and "grid" in data:
        problems.append("parts: give either a top-level grid or parts, not both")
    elif parts is not None:
        if not isinstance(parts, list) or not parts:
            problems.append(
                f"parts: must be a non-empty list of parts, got {_kind(parts)} {short(parts)}"
            )
            parts = []
        if top_seeds is not None:
            _check_list("seeds", top_seeds, problems)
        names: dict[str, int] = {}
        for i, part in enumerate(parts):
            at = f"parts[{i}]"
            if not isinstance(part, dict):
                problems.append(
                    f"{at}: must be a mapping with keys {', '.join(PART_KEYS)}, "
                    f"got {_kind(part)} {short(part)}"
                )
                continue
            pname = _named(f"{at}.", part, PART_KEYS, problems)
            if pname in names:
                problems.append(
                    f"{at}.name: duplicate name {pname!r} (also parts[{names[pname]}]); "
                    "part names must be unique"
                )
            elif pname is not None:
                names[pname] = i
            cells += _part_cells(at, part, top_fixed, top_seeds, problems)
    else:
        cells = _part_cells("", data, top_fixed, top_seeds, problems)
    if problems:
        raise JobError(path, list(dict.fromkeys(problems)))
    unique = replicated(list(dict.fromkeys(cells)))
    if not unique:
        raise JobError(path, ["grid: the job gives no cells"])
    return Job(name=str(name), path=str(path), cells=tuple(unique), description=desc)


def replicated(cells: list[Cell]) -> list[Cell]:
    """Each cell with ``replicates: R`` as its R replicates (``replicate`` 0..R-1), in
    rounds: replicate 0 of every cell, then replicate 1 of every cell, ..., so a cell's
    replicates run in fresh processes interleaved with the job's other cells, not back to
    back.  A cell that already names its replicate stands for itself."""
    rounds: dict[int, list[Cell]] = {}
    for cell in cells:
        if cell.replicate or cell.replicates == 1:
            rounds.setdefault(cell.replicate, []).append(cell)
            continue
        for i in range(cell.replicates):
            rounds.setdefault(i, []).append(dataclasses.replace(cell, replicate=i))
    return list(dict.fromkeys(c for i in sorted(rounds) for c in rounds[i]))


def load(path: str | Path) -> Job:
    """Read and validate a job file; raise :class:`JobError` on any problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JobError(str(path), [f"job: no such file {str(path)!r}"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JobError(str(path), [f"job: cannot read the file: {exc}"]) from None
    try:
        data, duplicates = parse_yaml(text)
    except TooLarge as exc:
        raise JobError(str(path), [f"job: too large: {exc}"]) from None
    except RecursionError:
        raise JobError(str(path), ["job: nested too deeply"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise JobError(str(path), [f"job: not valid YAML: {where}{problem}"]) from None
    if duplicates:
        raise JobError(str(path), duplicates)
    return validate(data, str(path))
