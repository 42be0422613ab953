"""Execute notebooks with papermill into run folders: executed notebook, HTML, metrics.json, run.json."""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from kit.params import ParameterError, check_names

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def list_notebooks(folder: Path = NOTEBOOKS) -> list[Path]:
    """The lessons, in order (``NN_name.ipynb``)."""
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
    """``{name: {"default": …, "type": …, "help": …}}`` read from the ``parameters`` cell."""
    import papermill as pm
    params = pm.inspect_notebook(str(path))
    return {k: {"default": v["default"], "type": v["inferred_type_name"], "help": v["help"]} for k, v in params.items()}


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
class RunResult:
    out_dir: Path
    notebook: Path
    html: Path | None
    metrics: dict
    seconds: float


def environment_info() -> dict:
    import torch
    return {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "cpu_count": os.cpu_count()}


def execute(notebook, out_dir, parameters: dict | None = None, timeout: int = 1800, html: bool = True,
            kernel: str = "python3", progress: bool = True) -> RunResult:
    """Run ``notebook`` with ``parameters`` in ``out_dir`` (the kernel's working directory).

    Unknown parameter names fail before execution. A failing cell raises papermill's
    ``PapermillExecutionError`` showing the cell's error.
    """
    import papermill as pm
    nb = find_notebook(str(notebook))
    declared = notebook_parameters(nb)
    parameters = dict(parameters or {})
    check_names(parameters, declared)
    parameters = {k: _coerce_like(v, declared[k]["default"]) for k, v in parameters.items()}
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").unlink(missing_ok=True)
    (out / "params.json").write_text(json.dumps(parameters, indent=2, sort_keys=True))
    out_nb = out / nb.name
    t0 = time.perf_counter()
    status = "failed"
    try:
        pm.execute_notebook(str(nb), str(out_nb), parameters=parameters, kernel_name=kernel, cwd=str(out),
                            execution_timeout=timeout, progress_bar=progress, request_save_on_cell_execute=False)
        status = "ok"
    finally:
        seconds = time.perf_counter() - t0
        (out / "run.json").write_text(json.dumps(
            {"notebook": nb.name, "status": status, "seconds": round(seconds, 2), "parameters": parameters,
             "env": environment_info(), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=2))
        html_path = None
        if html and out_nb.exists():
            from kit.report import notebook_to_html
            html_path = notebook_to_html(out_nb)
    metrics_file = out / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    return RunResult(out, out_nb, html_path, metrics, seconds)


__all__ = ["ParameterError", "RunResult", "execute", "find_notebook", "list_notebooks", "notebook_parameters"]
