"""The orchestrator's modules import one another without a cycle.

The report's modules (report, significance, analyses, tendencies, pareto, headline, export,
html_report) once formed a cycle through ``report.py`` held apart by imports deferred into
functions; they now all read the summary model (``summary.py``), which imports none of them.
This test reads every import statement, at module level *and* inside functions (a deferred
import that closes a cycle is still a cycle), and fails naming the cycle it finds; imports
under ``if TYPE_CHECKING:`` are for annotations only and are not counted.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import kdsweep.orchestrator

PACKAGE = "kdsweep.orchestrator"
ROOT = Path(kdsweep.orchestrator.__file__).parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join([PACKAGE, *parts])


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` but those under ``if TYPE_CHECKING:`` (never imported at run time)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def _graph() -> dict[str, set[str]]:
    """Module → the orchestrator modules it imports (a package import counts as its ``__init__``)."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in _runtime_nodes(ast.parse(path.read_text(), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from kdsweep.orchestrator import report` imports the module report;
                # `from kdsweep.orchestrator.report import X` imports report.
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            graph[name] |= {t for t in targets if t in modules and t != name and t != PACKAGE}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, …, a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_orchestrator_has_no_import_cycle() -> None:
    graph = _graph()
    assert f"{PACKAGE}.summary" in graph and f"{PACKAGE}.report" in graph[f"{PACKAGE}.html_report"], "the graph was not read"
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def test_the_summary_model_imports_no_reading_module() -> None:
    readers = {"report", "significance", "analyses", "tendencies", "pareto", "headline", "export", "html_report"}
    imported = {m.rsplit(".", 1)[1] for m in _graph()[f"{PACKAGE}.summary"]}
    assert not imported & readers


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    """The finder itself: a planted cycle through a deferred import is reported."""
    graph = _graph()
    graph[f"{PACKAGE}.summary"].add(f"{PACKAGE}.report")
    cycle = _cycle(graph)
    assert cycle is not None and f"{PACKAGE}.summary" in cycle
