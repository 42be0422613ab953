"""A grade book for a workshop: every learner's notebooks checked, then ``grades.csv`` and an offline ``grades.html``.

``kit grade DIR --out OUT`` expects one sub-folder per learner holding their notebooks (``DIR/alice/
01_linear_regression.ipynb`` …). Each notebook is checked as ``kit check --json`` does, in its own process
(``--jobs`` at a time), with a per-cell time limit and a wall-clock limit per notebook. A notebook that cannot
be checked — not a notebook, a kernel crash, an endless loop, deleted check cells — still gets its row, saying
why; the grade book is always written.
"""
from __future__ import annotations

import csv
import html
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Submission:
    learner: str
    notebook: str  # file name
    exercises: dict[str, tuple[bool, str]] = field(default_factory=dict)  # name → (passed, message)
    error: str | None = None  # why the notebook could not be (fully) checked


def submissions(folder: Path) -> list[tuple[str, Path]]:
    """``(learner, notebook path)`` for every ``*.ipynb`` one level below each learner's folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder}")
    out = []
    for learner in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        out += [(learner.name, nb) for nb in sorted(learner.glob("*.ipynb"))]
    return out


def expected_exercises(notebook_name: str) -> list[str]:
    """The exercises of the lesson a notebook is a copy of (its check cells, read without running it)."""
    import nbformat

    from kit.lessons.run import list_notebooks
    from kit.lessons.student import check_names
    lesson = next((p for p in list_notebooks() if p.name == notebook_name), None)
    if lesson is None:
        return []
    names: list[str] = []
    for cell in nbformat.read(str(lesson), as_version=4).cells:
        if cell.cell_type == "code":
            names += check_names(cell.source)
    return list(dict.fromkeys(names))


def check_one(learner: str, path: Path, timeout: float, limit: float) -> Submission:
    """Run ``kit check --json`` on one notebook in its own process group, killed after ``limit`` seconds."""
    sub = Submission(learner, path.name)
    with tempfile.TemporaryDirectory(prefix="kit-grade-") as tmp:
        cmd = [sys.executable, "-m", "kit", "check", str(path), "--json", "--quiet", "--out", tmp,
               "--timeout", str(timeout)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the check and its kernel
            proc.communicate()
            sub.error = f"did not finish within {limit:g} s"
            return sub
    try:
        doc = json.loads(out)
    except ValueError:
        lines = [l for l in (err or "").splitlines() if l.strip()]
        sub.error = (lines[-1] if lines else f"kit check exited with {proc.returncode}").removeprefix("kit check: ")
        return sub
    sub.exercises = {e["name"]: (bool(e["passed"]), e["message"]) for e in doc.get("exercises", [])}
    errors = doc.get("errors") or ([doc["error"]] if doc.get("error") else [])
    sub.error = "; ".join(errors) or None
    return sub


def grade(folder: Path, out: Path, jobs: int = 2, timeout: float = 120, limit: float = 600,
          progress: bool = True) -> tuple[Path, Path, list[Submission]]:
    """Check every submission under ``folder``; write ``out/grades.csv`` and ``out/grades.html``."""
    from tqdm.auto import tqdm
    todo = submissions(folder)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(check_one, learner, nb, timeout, limit) for learner, nb in todo]
        results = [f.result() for f in tqdm(futures, desc="grading", unit="notebook", disable=not progress)]
    columns = _columns(results)
    csv_path = _write_csv(out / "grades.csv", results, columns)
    html_path = _write_html(out / "grades.html", results, columns)
    return csv_path, html_path, results


def _columns(results: list[Submission]) -> list[tuple[str, str]]:
    """``(notebook, exercise)`` columns: the lesson's own exercises first, then any others seen."""
    cols: dict[tuple[str, str], None] = {}
    for nb in dict.fromkeys(r.notebook for r in results):
        for name in expected_exercises(nb):
            cols[(nb, name)] = None
        for r in results:
            if r.notebook == nb:
                for name in r.exercises:
                    cols[(nb, name)] = None
    return list(cols)


def _learners(results):
    return list(dict.fromkeys(r.learner for r in results))


def _cell(results, learner, col) -> tuple[bool, str]:
    nb, name = col
    sub = next((r for r in results if r.learner == learner and r.notebook == nb), None)
    if sub is None:
        return False, "notebook not handed in"
    if name in sub.exercises:
        return sub.exercises[name]
    return False, sub.error or "its check cell is missing"


def _notes(results, learner) -> str:
    return "; ".join(f"{r.notebook}: {r.error}" for r in results if r.learner == learner and r.error)


def _write_csv(path: Path, results, columns) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["learner", *[f"{Path(nb).stem}: {name}" for nb, name in columns], "passed", "notes"])
        for learner in _learners(results):
            marks = [int(_cell(results, learner, c)[0]) for c in columns]
            w.writerow([learner, *marks, sum(marks), _notes(results, learner)])
    return path


def _write_html(path: Path, results, columns) -> Path:
    learners = _learners(results)
    esc = html.escape
    head = "".join(f"<th title='{esc(nb)}'>{esc(name)}</th>" for nb, name in columns)
    rows, failures = [], Counter()
    for learner in learners:
        cells = []
        for c in columns:
            ok, msg = _cell(results, learner, c)
            cells.append(f"<td class='{'ok' if ok else 'no'}' title='{esc(msg)}'>{'✓' if ok else '✗'}</td>")
            if not ok:
                failures[msg] += 1
        n = sum(_cell(results, learner, c)[0] for c in columns)
        rows.append(f"<tr><th>{esc(learner)}</th>{''.join(cells)}<td>{n}/{len(columns)}</td>"
                    f"<td class='note'>{esc(_notes(results, learner))}</td></tr>")
    rates = "".join(f"<td>{100 * sum(_cell(results, l, c)[0] for l in learners) / max(1, len(learners)):.0f}%</td>"
                    for c in columns)
    common = "".join(f"<li><b>{n}×</b> {esc(msg)}</li>" for msg, n in failures.most_common(8))
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>grade book</title><style>
body{{font-family:system-ui,sans-serif;margin:1.5em}} table{{border-collapse:collapse;font-size:14px}}
th,td{{border:1px solid #ddd;padding:4px 8px;text-align:center}} td.ok{{background:#e6f4ea;color:#137333}}
td.no{{background:#fce8e6;color:#a50e0e}} td.note{{text-align:left;color:#555;max-width:28em}}
.wrap{{overflow-x:auto}}</style></head><body>
<h1>Grade book</h1><p>{len(learners)} learners, {len(columns)} exercises. Hover a cell for its message.</p>
<div class="wrap"><table><tr><th>learner</th>{head}<th>passed</th><th>notes</th></tr>
{''.join(rows)}<tr><th>pass rate</th>{rates}<td></td><td></td></tr></table></div>
<h2>Most common failures</h2><ol>{common or '<li>none</li>'}</ol></body></html>"""
    path.write_text(page, encoding="utf-8")
    return path
