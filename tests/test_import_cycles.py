"""No import cycle among kit's modules: the graph of their module-level imports (what runs when a module is imported:
the module's body, its classes' bodies and its ``if``/``try``/``with`` blocks; not function bodies and not
``if TYPE_CHECKING:``), read with ``ast``, has no cycle. An import inside a function runs later, when it is called,
and is how kit keeps heavy or optional packages off the import path; one kept there only to dodge a cycle is
listed by :func:`function_level_cycles` (printed with ``pytest -s``)."""
from __future__ import annotations

import ast
from pathlib import Path

KIT = Path(__file__).resolve().parents[1] / "kit"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(KIT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(KIT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, functions: bool) -> list[ast.stmt]:
    """The import statements of ``tree`` that run on import (``functions``: those in function bodies too)."""
    found = []

    def walk(body):
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(node)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                if functions:
                    walk(node.body)
            elif isinstance(node, ast.If) and _is_type_checking(node.test):
                continue
            else:
                for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                    walk(getattr(node, field, None) or [])
    walk(tree.body)
    return found


def _targets(node: ast.stmt, module: str) -> set[str]:
    """The kit modules an import statement loads (a name imported from a package that is a submodule counts as
    that submodule)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            pkg = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
            pkg = pkg[:len(pkg) - node.level + 1]
            base = ".".join(pkg + ([base] if base else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    out = set()
    for name in names:
        while name and name not in MODULES:  # "import kit.models.gpt.x" → the longest prefix that is a module
            name = name.rpartition(".")[0]
        if name and name.startswith("kit"):
            out.add(name)
    return out


def import_graph(functions: bool = False) -> dict[str, set[str]]:
    graph = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        graph[module] = {t for node in _imports(tree, module, functions) for t in _targets(node, module)} - {module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted: every cycle is in one."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def function_level_cycles() -> list[list[str]]:
    """Cycles that exist only through imports inside functions (not an error: listed for the record)."""
    return [c for c in cycles(import_graph(functions=True)) if c not in cycles(import_graph())]


def test_the_graph_sees_kits_imports():
    graph = import_graph()
    assert "kit.lessons.runfolder" in graph["kit.lessons.run"] and "kit.lessons.execute" in graph["kit.lessons.run"]
    assert "kit.lessons.report_index" in graph["kit.lessons.report"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_kits_modules():
    found = cycles(import_graph())
    assert not found, "import cycles (module-level imports):\n" + "\n".join(" ↔ ".join(c) for c in found)


def test_the_report_and_the_run_do_not_import_each_other_even_inside_functions():
    """kit.lessons.run writes a run folder and its page; the report pages read run folders: one way only."""
    graph = import_graph(functions=True)
    reports = {m for m in graph if m.startswith("kit.lessons.report")}
    for cycle in cycles(graph):
        assert not ({"kit.lessons.run", "kit.lessons.runfolder"} & set(cycle) and reports & set(cycle)), cycle
    print("\ncycles through imports inside functions:", *(" ↔ ".join(c) for c in function_level_cycles()), sep="\n")
