"""Student copies of the lessons, and checking a completed copy's exercises.

* :func:`make_student_copy` replaces every cell tagged ``solution`` by a placeholder that keeps the
  names its check cell uses: ``answer_1 = None  # YOUR CODE HERE`` for a value, and for a function the
  ``def`` line and docstring with a body that raises ``NotImplementedError``. The check cells
  (``kit.exercises.check``) stay; they hold no answer, so the notebook tells a learner whether an answer is
  right without giving it away.
* :func:`check_notebook` executes a (completed) notebook with ``smoke=True`` and reports every
  exercise, continuing past failing checks (nbclient ``allow_errors=True``).
"""
from __future__ import annotations

import ast
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

SOLUTION_TAG = "solution"
ANSWER_TAG = "answer"  # the placeholder cell in a student copy
CHECK_FUNCS = ("check",)
_ANSWER = re.compile(r"^answer_\d+$")


def answer_names(source: str) -> list[str]:
    """``answer_N`` names a solution cell assigns at top level, in order of first assignment."""
    from kit.lessons.run import parse_cell
    tree = parse_cell(source)
    names: list[str] = []
    if tree is None:  # fall back to a regular expression on unparsable cells
        names = re.findall(r"^(answer_\d+)\s*=", source, flags=re.M)
    else:
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        names.append(n.id)
    return list(dict.fromkeys(n for n in names if _ANSWER.match(n)))


def function_stubs(source: str) -> list[str]:
    """For each top-level ``def`` of a solution cell: its signature and docstring, and a body to write."""
    from kit.lessons.run import parse_cell
    tree = parse_cell(source)
    stubs = []
    for node in tree.body if tree is not None else []:
        if isinstance(node, ast.FunctionDef):
            returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
            doc = ast.get_docstring(node, clean=False)
            body = f'    """{doc}"""\n' if doc else ""
            stubs.append(f"def {node.name}({ast.unparse(node.args)}){returns}:\n{body}"
                         f"    # YOUR CODE HERE\n    raise NotImplementedError\n")
    return stubs


def placeholder(source: str) -> str:
    parts = [f"{n} = None  # YOUR CODE HERE\n" for n in answer_names(source)] + function_stubs(source)
    return "\n".join(parts) if parts else "# YOUR CODE HERE\n"


def student_notebook(nb):
    """A copy of notebook node ``nb`` with solutions replaced by placeholders and outputs cleared."""
    import copy
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if SOLUTION_TAG in tags:
                cell.source = placeholder(cell.source)
                cell.metadata["tags"] = [t for t in tags if t != SOLUTION_TAG] + [ANSWER_TAG]
    return nb


LEAK_MARK = "KIT-LEAKS "


def add_leak_probe(nb, lesson: str):
    """Append a cell that prints which names in the kernel would pass one of ``lesson``'s exercises if copied."""
    import nbformat
    nb.cells.append(nbformat.v4.new_code_cell(
        "import json as _json\nfrom kit.exercises import find_leaks as _find_leaks\n"
        f"print({LEAK_MARK!r} + _json.dumps(_find_leaks(globals(), {lesson!r})))"))
    return nb


def leaks_reported(executed_nb) -> list[str] | None:
    """What :func:`add_leak_probe`'s cell printed (``None`` if it did not run)."""
    import json
    for line in _text(executed_nb.cells[-1], "stdout").splitlines():
        if line.startswith(LEAK_MARK):
            return json.loads(line[len(LEAK_MARK):])
    return None


def make_student_copy(notebook: Path, out_dir: Path) -> Path:
    import nbformat
    nb = nbformat.read(str(notebook), as_version=4)
    out = Path(out_dir) / Path(notebook).name
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(student_notebook(nb), str(out))
    return out


def make_student_copies(out_dir: Path, notebooks=None) -> list[Path]:
    """Student copies of ``notebooks`` (default: every lesson of the catalog) in ``out_dir``."""
    from kit.lessons.catalog import notebooks as lessons
    return [make_student_copy(nb, out_dir) for nb in (notebooks or lessons())]


# ---------------------------------------------------------------------------------------- checking


@dataclass
class ExerciseResult:
    name: str
    ok: bool
    message: str


def check_names(source: str) -> list[str]:
    """Exercise ids (first string argument) of the ``check(...)`` calls in a cell, in order."""
    from kit.lessons.run import parse_cell
    tree = parse_cell(source)
    if tree is None:
        return []
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            fn = node.func
            fname = fn.id if isinstance(fn, ast.Name) else getattr(fn, "attr", None)
            if fname in CHECK_FUNCS:
                arg = node.args[0] if node.args else None
                label = arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else fname
                calls.append((node.lineno, node.col_offset, label))
    return [label for *_, label in sorted(calls)]


def _text(cell, name: str) -> str:
    return "".join("".join(o.get("text", "")) for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == name)


def _error(cell):
    return next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)


def exercise_results(executed_nb) -> tuple[list[ExerciseResult], list[str]]:
    """Per exercise ✓/✗ from an executed notebook, and errors in other (non-check) cells."""
    results: list[ExerciseResult] = []
    other_errors: list[str] = []
    for cell in executed_nb.cells:
        if cell.cell_type != "code":
            continue
        names = check_names(cell.source)
        err = _error(cell)
        if not names:
            if err is not None:
                where = "your answer cell" if {SOLUTION_TAG, ANSWER_TAG} & set(cell.metadata.get("tags", [])) \
                    else f"cell [{cell.get('execution_count')}]"
                other_errors.append(f"{where}: {err['ename']}: {err['evalue']}")
            continue
        out = _text(cell, "stdout")
        blamed = False
        for name in names:
            if f"✓ {name}: correct" in out:
                results.append(ExerciseResult(name, True, "correct"))
            elif err is not None and not blamed:
                blamed = True
                msg = err["evalue"] if err["ename"] == "ExerciseError" else f"{err['ename']}: {err['evalue']}"
                results.append(ExerciseResult(name, False, msg))
            elif cell.get("execution_count") is None:
                results.append(ExerciseResult(name, False, "not run"))
            else:
                results.append(ExerciseResult(name, False, "not checked: an earlier check in the same cell failed"))
    return results, other_errors


def check_notebook(notebook: Path, out_dir: Path | None = None, parameters: dict | None = None,
                   timeout: float | None = 600, stall_timeout: float | None = 45.0, progress: bool = False):
    """Execute ``notebook`` (``smoke=True`` where it has that parameter) and collect every exercise's result.

    Runs through :func:`kit.lessons.run.execute` like every other run, continuing past failing cells.
    Returns ``(results, other_errors, executed_path)``.
    """
    import nbformat

    from kit.lessons.run import check_parameters, execute, notebook_parameters
    notebook = Path(notebook)
    declared = notebook_parameters(notebook)
    params = {"smoke": True} if "smoke" in declared else {}
    params.update(parameters or {})
    params = check_parameters(notebook, params)
    out_dir = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="kit-check-"))
    res = execute(notebook, out_dir, params, timeout=timeout, stall_timeout=stall_timeout, html=False,
                  progress=progress, allow_errors=True)
    nb = nbformat.read(str(res.notebook), as_version=4)
    results, other = exercise_results(nb)
    return results, other, res.notebook
