"""Execute notebooks with papermill into run folders: executed notebook, HTML, metrics.json, run.json."""
from __future__ import annotations

import ast
import os
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from kit.lessons.execute import STALL_TIMEOUT, KernelStalled, RunError, run_notebook
from kit.lessons.runfolder import Results, RunFolder, RunRecord, begin, discard_results
from kit.params import ParameterError, check_names

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"


def list_notebooks(folder: Path = NOTEBOOKS) -> list[Path]:
    """The lessons' notebooks in ``folder``, in order (``NN_name.ipynb``): a glob, so that finding a notebook imports
    nothing; ``tests/test_catalog.py`` keeps it equal to the catalog's (:func:`kit.lessons.catalog.notebooks`)."""
    return sorted(p for p in Path(folder).glob("[0-9][0-9]_*.ipynb"))


def find_notebook(name: str) -> Path:
    """Accept a path, a file name, a stem, or just the lesson number (``"03"``)."""
    p = Path(name)
    if p.is_file():
        return p
    for nb in list_notebooks():
        if name in (nb.name, nb.stem, nb.stem[:2]):
            return nb
    raise FileNotFoundError(f"no notebook {name!r}; lessons: {', '.join(n.stem for n in list_notebooks())}")


def notebook_parameters(path: Path) -> dict:
    """``{name: {"default": …, "type": …, "help": …}}`` read from the ``parameters`` cell.

    A notebook without kernel metadata (written by hand or by another tool) is read as Python."""
    from papermill.inspection import _infer_parameters
    from papermill.iorw import load_notebook_node
    nb = load_notebook_node(str(path))
    params = {p.name: p._asdict() for p in _infer_parameters(nb, name="python3", language="python")}
    return {k: {"default": v["default"], "type": _type_name(v["inferred_type_name"], v["default"]), "help": v["help"]}
            for k, v in params.items()}


def _type_name(inferred, default_src: str) -> str:
    """papermill's type (from an annotation) or else the default literal's type."""
    if inferred and inferred != "None":
        return inferred
    try:
        return type(ast.literal_eval(default_src)).__name__
    except (ValueError, SyntaxError):
        return "expression"


def notebook_info(path: Path) -> dict:
    """What a lesson teaches: the title line and the goals paragraph of its first markdown cell."""
    import nbformat
    doc = nbformat.read(str(path), as_version=4)
    md = next((c.source for c in doc.cells if c.cell_type == "markdown"), "")
    lines = md.splitlines()
    title = next((re.sub(r"^[#\s]+", "", l).strip() for l in lines if l.strip()), Path(path).stem)
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", "\n".join(lines[1:])) if p.strip()]
    goals = next((p for p in paragraphs if p.lower().startswith("**goals")), paragraphs[0] if paragraphs else "")
    goals = re.sub(r"^\*\*goals\.?\*\*\s*", "", goals, flags=re.I)
    return {"name": Path(path).stem, "title": title, "goals": goals}


def _cells(path: Path):
    import nbformat
    return nbformat.read(str(path), as_version=4).cells


def parse_cell(source: str):
    """``ast`` of a code cell, with IPython magics / shell lines blanked out."""
    lines = ["" if l.lstrip().startswith(("%", "!")) else l for l in source.splitlines()]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


class LessonError(ValueError):
    """A lesson notebook breaks the authoring rules (CONTRIBUTING.md): said with its name, before any run."""


_RULES = ("Int", "Float", "Bool", "Choice", "Str")


def _plain(v) -> bool:
    return v is None or isinstance(v, (bool, int, float, str)) or (
        isinstance(v, (tuple, list)) and all(_plain(x) for x in v))


def _literal_rule(node: ast.expr):
    """Build ``Rule(literal, ..., key=literal)`` from its ``ast`` without evaluating any code: the callee must be
    a bare ``kit.params`` rule class name and every argument a plain literal; else ``ValueError``."""
    from kit import params as P
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _RULES):
        raise ValueError(f"not a call of {', '.join(_RULES)}")
    if any(kw.arg is None for kw in node.keywords):
        raise ValueError("** arguments are not literals")
    args = [ast.literal_eval(a) for a in node.args]  # ValueError on anything but a literal (no calls, ops, names)
    kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
    if not all(_plain(v) for v in [*args, *kwargs.values()]):
        raise ValueError("arguments must be numbers, strings, booleans, None or tuples/lists of them")
    try:
        return getattr(P, node.func.id)(*args, **kwargs)
    except TypeError as e:
        raise ValueError(str(e)) from None


def validation_rules(path: Path) -> dict:
    """The ``kit.params`` rules of the notebook's validation cell (first code cell after ``parameters``),
    with :func:`kit.params.common_rules` for ``seed``, ``device`` and ``smoke``.

    Read without running any notebook code (:func:`_literal_rule`): each keyword of its
    ``validate(globals(), name=Rule(...))`` call must be a literal ``Rule(...)``; anything else raises
    :class:`LessonError` naming the lesson and the parameter (never skipped silently).
    """
    from kit import params as P
    cells = _cells(path)
    idx = next((i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])), None)
    if idx is None:
        return {}
    declared = notebook_parameters(path)
    rules = {k: r for k, r in P.common_rules().items() if k in declared}
    cell = next((c for c in cells[idx + 1:] if c.cell_type == "code"), None)
    tree = parse_cell(cell.source) if cell is not None else None
    if tree is None:
        return rules
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        fn = node.func
        if (fn.id if isinstance(fn, ast.Name) else getattr(fn, "attr", None)) != "validate":
            continue
        for kw in node.keywords:
            if kw.arg is None:
                continue
            try:
                rules[kw.arg] = _literal_rule(kw.value)
            except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError) as e:
                raise LessonError(f"{Path(path).name}: the rule of parameter {kw.arg!r} is not a literal "
                                  f"kit.params rule ({ast.unparse(kw.value)[:200]}: {e})") from None
    return rules


def check_parameters(path: Path, parameters: dict | None, declared: dict | None = None,
                     rules: dict | None = None) -> dict:
    """Check names and values before execution; return the values parsed as the notebook will see them.

    Raises :class:`ParameterError` naming the first unknown or bad parameter. ``declared``
    (:func:`notebook_parameters`) and ``rules`` (:func:`validation_rules`) may be passed in when checking
    many parameter sets of one notebook.
    """
    declared = notebook_parameters(path) if declared is None else declared
    parameters = dict(parameters or {})
    check_names(parameters, declared)
    parameters = {k: _coerce_like(v, declared[k]["default"]) for k, v in parameters.items()}
    rules = validation_rules(path) if rules is None else rules
    for name, value in parameters.items():
        if name in rules:
            rules[name].check(name, value)
    if parameters.get("device") not in (None, "auto"):  # an explicit device must exist here
        from kit.device import pick_device
        try:
            pick_device(parameters["device"])
        except ValueError as e:
            raise ParameterError(str(e)) from None
    return parameters


def effective_parameters(path: Path, parameters: dict | None) -> dict:
    """Defaults from the ``parameters`` cell (where they are literals) updated with ``parameters``."""
    out = {}
    for k, p in notebook_parameters(path).items():
        try:
            out[k] = ast.literal_eval(p["default"])
        except (ValueError, SyntaxError):
            out[k] = p["default"]
    out.update(parameters or {})
    return out


def _coerce_like(value, default_src: str):
    """Values from the command line arrive as strings; parse them like the default's literal type."""
    import ast
    if not isinstance(value, str):
        return value
    try:
        default = ast.literal_eval(default_src)
    except (ValueError, SyntaxError):
        default = None
    if isinstance(default, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


@dataclass
class Lesson:
    """A lesson notebook: where it is, what it teaches, its parameters (read once from the ``parameters``
    cell) and their rules (its validation cell plus the common ``seed``/``device``/``smoke`` rules)."""
    path: Path
    name: str
    title: str
    goals: str
    parameters: dict
    rules: dict

    @classmethod
    def load(cls, name_or_path) -> "Lesson":
        """By number (``"03"``), name, or path; raises ``FileNotFoundError`` or :class:`LessonError`."""
        path = find_notebook(str(name_or_path))
        info = notebook_info(path)
        return cls(path, path.stem, info["title"], info["goals"], notebook_parameters(path), validation_rules(path))

    def check(self, parameters: dict | None) -> dict:
        """Names and values checked before anything runs (:func:`check_parameters`)."""
        return check_parameters(self.path, parameters, self.parameters, self.rules)

    def defaults(self, parameters: dict | None = None) -> dict:
        """Every parameter's value: the defaults, updated with ``parameters``."""
        return effective_parameters(self.path, parameters)


@dataclass
class RunResult:
    out_dir: Path
    notebook: Path
    html: Path | None
    metrics: dict  # metrics.json as the notebook wrote it ({} where it wrote none)
    seconds: float
    attempts: int = 1


def environment_info() -> dict:
    """Versions and hardware of this machine, without importing torch (2 s) into the harness."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = None
    return {"python": platform.python_version(), "torch": torch_version, "platform": platform.platform(),
            "cuda": _gpu_name(), "cpu_count": os.cpu_count()}


def _gpu_name() -> str | None:
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    import shutil
    import subprocess
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0].strip() if out.strip() else None


def execute(notebook, out_dir, parameters: dict | None = None, timeout: float | None = 1800, html: bool = True,
            kernel: str = "python3", progress: bool = True, stall_timeout: float | None = STALL_TIMEOUT,
            allow_errors: bool = False) -> RunResult:
    """Run ``notebook`` with ``parameters`` in ``out_dir`` (the kernel's working directory).

    The one execution path of ``kit run``, ``run-all``, ``sweep``, ``check`` and the tests. Unknown
    parameter names fail before execution. ``timeout`` is each cell's time limit in seconds (``None``:
    none). A kernel that stops answering while idle for ``stall_timeout`` seconds is replaced once by a
    fresh kernel, which reruns the notebook (said on stderr); a second stall fails. Failures raise
    :class:`kit.lessons.execute.RunError` (kernel died, stalled twice, cell over its time limit) or papermill's
    ``PapermillExecutionError`` (an error in a cell, unless ``allow_errors``), each with a one-line
    message (:func:`failure_message`); ``run.json`` records ``status`` and ``reason`` either way.
    """
    from papermill import PapermillExecutionError
    nb = find_notebook(str(notebook))
    declared = notebook_parameters(nb)
    parameters = dict(parameters or {})
    check_names(parameters, declared)
    parameters = {k: _coerce_like(v, declared[k]["default"]) for k, v in parameters.items()}
    out = begin(out_dir, parameters)
    out_nb = out / nb.name
    t0 = time.perf_counter()
    status, reason, attempts = "failed", None, 0
    try:
        while True:
            attempts += 1
            try:
                run_notebook(nb, out_nb, parameters, cwd=out, timeout=timeout, stall_timeout=stall_timeout,
                             allow_errors=allow_errors, progress=progress, kernel=kernel)
                break
            except KernelStalled as e:
                if attempts >= 2:
                    raise KernelStalled(f"{e} (twice, each time with a fresh kernel)",
                                        notebook=nb.name, cell=e.cell) from None
                print(f"kit: {nb.name}, {e}; running the notebook once more with a fresh kernel", file=sys.stderr)
                discard_results(out)
            except PapermillExecutionError as e:
                if not allow_errors:
                    raise
                reason = f"errors in cells (allowed): the first in cell [{e.exec_count}]: {e.ename}"
                break
        status = "ok"
    except RunError as e:
        reason = f"{nb.name}, {e}"
        raise type(e)(reason, notebook=nb.name, cell=e.cell) from None
    except PapermillExecutionError as e:
        reason = f"{nb.name}, {failure_message(e)}"
        raise
    except KeyboardInterrupt:
        reason = "interrupted"
        raise
    finally:
        seconds = time.perf_counter() - t0
        html_path = None
        if html and out_nb.exists():
            # imported here: a lesson's page reads the lesson catalog, which imports the exercises (and torch)
            from kit.lessons.report_page import notebook_to_html
            try:
                html_path = notebook_to_html(out_nb)
            except Exception as e:  # noqa: BLE001 - the run itself is fine; say so and carry on
                print(f"kit: HTML conversion of {out_nb.name} failed: {e}", file=sys.stderr)
        record = RunRecord(notebook=nb.name, status=status, seconds=round(seconds, 2), parameters=parameters,
                           all_parameters=effective_parameters(nb, parameters), env=environment_info(),
                           finished=time.strftime("%Y-%m-%d %H:%M:%S"), reason=reason, attempts=attempts)
        RunFolder(out, record).write()
    return RunResult(out, out_nb, html_path, Results.read(out).doc, seconds, attempts)


def _first_line(text) -> str:
    lines = [l for l in str(text).splitlines() if l.strip()]
    return lines[0] if lines else ""


def failure_message(e: BaseException) -> str | None:
    """One line for a failed run (a :class:`RunError` or papermill's cell error); ``None`` for anything else."""
    from papermill import PapermillExecutionError
    if isinstance(e, RunError):
        return str(e)
    if isinstance(e, PapermillExecutionError):
        return f"cell [{e.exec_count}] raised {e.ename}: {_first_line(e.evalue)}"
    return None


__all__ = ["Lesson", "LessonError", "ParameterError", "RunError", "RunRecord", "RunResult", "failure_message", "check_parameters", "effective_parameters", "execute", "find_notebook",
           "list_notebooks", "notebook_info", "notebook_parameters", "validation_rules"]
