"""The tree's promises, read from the source: imports flow one way and never in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _imports() -> dict[str, set[str]]:
    """Each module of supervisor/ and workers/ with the project modules it imports (at any depth)."""
    graph: dict[str, set[str]] = {}
    for package in ("supervisor", "workers"):
        for path in (REPO / package).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            is_init = parts[-1] == "__init__"
            if is_init:
                parts = parts[:-1]
            name = ".".join(parts)
            deps: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    deps.update(a.name for a in node.names if a.name.split(".")[0] in ("supervisor", "workers"))
                elif isinstance(node, ast.ImportFrom):
                    if node.level:
                        base = parts if is_init else parts[:-1]
                        base = base[: len(base) - (node.level - 1)]
                        module = ".".join(base + ([node.module] if node.module else []))
                    else:
                        module = node.module or ""
                    if module.split(".")[0] in ("supervisor", "workers"):
                        deps.add(module)
            graph[name] = deps
    return graph


def _owner(module: str, graph: dict[str, set[str]]) -> str:
    """The module a dotted import resolves to (`from a.b import c` where c is a name, not a module)."""
    while module not in graph and "." in module:
        module = module.rsplit(".", 1)[0]
    return module


def test_the_supervisor_never_imports_the_workers():
    graph = _imports()
    offenders = {m: sorted(d for d in deps if d.startswith("workers"))
                 for m, deps in graph.items() if m.startswith("supervisor")}
    assert {m: d for m, d in offenders.items() if d} == {}


def test_workers_use_only_the_shared_protocol_of_the_supervisor():
    graph = _imports()
    reach = {m: sorted(d for d in deps if d.startswith("supervisor") and not d.startswith("supervisor.protocol"))
             for m, deps in graph.items() if m.startswith("workers")}
    assert {m: d for m, d in reach.items() if d} == {}


def test_the_protocol_imports_nothing_else_of_the_project():
    graph = _imports()
    leaks = {m: sorted(d for d in deps if not d.startswith("supervisor.protocol"))
             for m, deps in graph.items() if m.startswith("supervisor.protocol")}
    assert {m: d for m, d in leaks.items() if d} == {}


def test_no_module_imports_itself_through_a_circle():
    graph = _imports()
    edges = {m: {_owner(d, graph) for d in deps} - {m} for m, deps in graph.items()}
    # Package __init__ modules are containers here: an import of `a.b.c` is not an import of `a.b`.
    assert _cycles(edges) == []


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every circle a depth-first walk of the graph meets, each as the nodes around it."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return cycles


def test_the_tree_reads_like_the_data_flow():
    subpackages = {p.name for p in (REPO / "supervisor").iterdir() if (p / "__init__.py").is_file()}
    assert {"scheduling", "jobs", "process", "gpu", "observe", "commands", "protocol"} <= subpackages
    assert (REPO / "supervisor" / "app.py").is_file()


def _package(module: str) -> str:
    """The subpackage a module belongs to (`supervisor.gpu.monitor` -> `supervisor.gpu`); top-level modules
    (`supervisor.config`) stand for themselves; the workers are one package."""
    parts = module.split(".")
    if parts[0] == "workers":
        return "workers"
    return ".".join(parts[:2]) if len(parts) > 2 or (REPO / Path(*parts)).is_dir() else module


def test_no_package_imports_itself_through_a_circle():
    # Module cycles are not enough: gpu.monitor -> scheduling.slots and scheduling.supervisor -> gpu.monitor
    # make no module cycle, yet the two packages lean on each other. Packages form a strict order.
    graph = _imports()
    edges: dict[str, set[str]] = {}
    for module, deps in graph.items():
        edges.setdefault(_package(module), set()).update(_package(_owner(d, graph)) for d in deps)
    for package in edges:
        edges[package].discard(package)
    assert _cycles(edges) == []


MODULE_LINES = 350


def test_a_long_module_says_why_it_is_long():
    # Small modules with one owner each: a module of supervisor/ past the guideline must say in its
    # docstring why it is one file (the store engines keep every query of an engine together).
    unexplained = []
    for path in sorted((REPO / "supervisor").rglob("*.py")):
        lines = len(path.read_text().splitlines())
        docstring = ast.get_docstring(ast.parse(path.read_text(), str(path))) or ""
        if lines > MODULE_LINES and "longer than" not in docstring.lower():
            unexplained.append(f"{path.relative_to(REPO)}: {lines} lines")
    assert unexplained == []
