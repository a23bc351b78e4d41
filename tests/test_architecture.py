"""The shape of the package (docs/design.md): no import circle, reading rows without torch."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import imports_torch, loaded

import rnnbench

PACKAGE = Path(rnnbench.__file__).parent


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the rnnbench modules it imports, at module level or inside a function
    (``from . import x`` counts as an import of the module ``x`` when there is one)."""
    modules = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                    for a in node.names
                ]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle_in_rnnbench():
    graph = import_graph()
    assert (
        "rnnbench.harness.single" in graph
        and "rnnbench.results.rows" in graph["rnnbench.harness.single"]
    )
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_circle_finder_sees_a_circle(tmp_path):
    """A package whose modules import each other, one of them inside a function."""
    pkg = tmp_path / "rnnbench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .c import g\n")
    (pkg / "c.py").write_text("import rnnbench.a\n")
    assert find_cycle(import_graph(pkg)) == ["rnnbench.a", "rnnbench.b", "rnnbench.c", "rnnbench.a"]
    (pkg / "c.py").write_text("import os\n")
    assert find_cycle(import_graph(pkg)) is None


# What each part of the package may import (besides itself): the data flows one way,
# job -> cells -> rows -> report, and reading results needs no torch.
SHARED = {"rnnbench", "rnnbench.facts", "rnnbench.errors", "rnnbench.argtypes", "rnnbench.stats"}
ALLOWED = {
    "rnnbench.facts": set(),
    "rnnbench.stats": set(),
    "rnnbench.errors": set(),
    "rnnbench.argtypes": {"rnnbench.errors"},
    "rnnbench.pit": SHARED,
    "rnnbench.core": SHARED | {"rnnbench.pit"},
    "rnnbench.job": SHARED | {"rnnbench.core"},
    "rnnbench.results": SHARED,
    "rnnbench.harness": SHARED
    | {"rnnbench.core", "rnnbench.pit", "rnnbench.job", "rnnbench.results"},
    "rnnbench.sweep": SHARED | {"rnnbench.job", "rnnbench.results", "rnnbench.harness"},
    "rnnbench.report": SHARED | {"rnnbench.results"},
    # -- cluster: every Ray start in one module, used by the harness and the sweep
    "rnnbench.stopping": set(),
    "rnnbench.raysession": {"rnnbench.errors", "rnnbench.stopping"},
}
RAY = {"rnnbench.raysession", "rnnbench.stopping"}
ALLOWED["rnnbench.harness"] = ALLOWED["rnnbench.harness"] | RAY
ALLOWED["rnnbench.sweep"] = ALLOWED["rnnbench.sweep"] | RAY


def _part(module: str) -> str:
    """The part a module belongs to: its sub-package, or the top-level module itself."""
    parts = module.split(".")
    return ".".join(parts[:2])


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """'a imports b' for every import that crosses the layers the wrong way."""
    wrong = []
    for module, targets in graph.items():
        part = _part(module)
        if part not in ALLOWED:
            continue  # the commands (cli, bench, __main__) may import anything
        for t in targets:
            if _part(t) != part and _part(t) not in ALLOWED[part] and t not in ALLOWED[part]:
                wrong.append(f"{module} imports {t}")
    return wrong


def test_each_part_imports_only_what_comes_before_it():
    wrong = layer_violations(import_graph())
    assert not wrong, "\n".join(wrong)


def test_the_layer_check_can_fail():
    assert layer_violations({"rnnbench.results.store": {"rnnbench.harness.single"}}) == [
        "rnnbench.results.store imports rnnbench.harness.single"
    ]
    assert layer_violations({"rnnbench.harness.single": {"rnnbench.results.store"}}) == []


def test_reading_and_judging_results_imports_no_torch():
    """Every module of results/ and report/, and the shared facts, in a fresh interpreter."""
    modules = sorted(
        m
        for m in import_graph()
        if _part(m) in ("rnnbench.results", "rnnbench.report", "rnnbench.facts", "rnnbench.errors")
    )
    assert "rnnbench.report.claims.speed" in modules and "rnnbench.results.store" in modules
    assert not imports_torch("import " + ", ".join(modules))
    assert imports_torch("import rnnbench.harness.single")  # the check can say yes


def test_a_cells_worker_imports_no_table_or_statistics_library():
    """A fresh worker imports the module of its task's function, the runner's and what a
    cell times with (a worker group's actors too): none loads pandas, pyarrow or scipy
    (about a second of start-up in every fresh replicate process).  The driver does, so
    the check can say yes."""
    heavy = ("pandas", "pyarrow", "scipy")
    worker = (
        "import rnnbench.sweep.task, rnnbench.harness.runner, rnnbench.sweep.registry, "
        "rnnbench.harness.single, rnnbench.harness.group.worker"
    )
    assert loaded(worker, heavy) == []
    assert loaded("import rnnbench.sweep.driver", heavy) != []
    from rnnbench.sweep import driver, task

    assert driver.execute is task.execute  # the function the driver submits


@pytest.mark.xdist_group("architecture")
def test_a_test_in_an_xdist_group_carries_its_group(request):
    """Under ``--dist loadgroup`` (make test) a test marked ``xdist_group`` carries its
    group in its node id, so its group runs in one worker and builds its fixtures once.
    pytest 9.2 with xdist 3.8 drops it silently (pytest-dev/pytest-xdist#1386):
    constraints.txt pins pytest below."""
    if request.config.getvalue("loadgroup"):
        assert request.node.nodeid.endswith("@architecture"), (
            f"--dist loadgroup is not grouping: {request.node.nodeid} (pytest "
            f"{pytest.__version__}; pytest-dev/pytest-xdist#1386)"
        )
