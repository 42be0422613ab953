"""A grade book for a workshop, over notebooks that are untrusted code: ``grades.csv`` and an offline ``grades.html``.

``kit grade DIR --out OUT`` expects one sub-folder per learner (``DIR/alice/01_linear_regression.ipynb`` …). For each
submission, ``--jobs`` at a time:

1. **copy** it (a symlink, FIFO or anything but a regular file is refused with a note; size capped);
2. **rebuild** it from the lesson's own cells plus only the learner's answer cells, matched by cell id (like nbgrader);
   other cells that differ are restored and the row says so;
3. **draw the inputs** of every exercise here, in the grader, and write them (no pickle) into a job folder;
4. **run** it in the sandbox (:mod:`kit.lessons.sandbox`: no network, read-only system, private HOME and /tmp, limits,
   its own PID namespace; kit there holds no exercise references): each check cell calls the learner's function on
   those inputs and writes the outputs back (:mod:`kit.exercises.harness`);
5. **judge** those outputs here, with kit's references, which never exist inside; nothing printed is read;
6. write the learner's **row** at once (the grade book is rewritten atomically after every submission), and keep
   the executed notebook in ``OUT/<learner>/``.

A wall-clock limit per notebook always returns; a learner that crashes, hangs or kills its own run loses only its
own row, which says why.
"""
from __future__ import annotations

import csv
import json
import os
import queue
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from kit.lessons.htmlpage import Markup, esc, join, page, table, td, th, tr

MAX_NOTEBOOK_BYTES = 20 * 2 ** 20
ANSWER_TAGS = {"answer", "solution"}
NO_SANDBOX_WARNING = ("kit grade --no-sandbox: every learner's notebook runs as YOU, with your files, your network and "
                      "kit's reference solutions within its reach. Use it only for notebooks you trust.")


@dataclass
class Submission:
    learner: str
    notebook: str  # file name
    exercises: dict[str, tuple[bool, str]] = field(default_factory=dict)  # name → (passed, message)
    error: str | None = None  # why the notebook could not be (fully) checked
    flags: list[str] = field(default_factory=list)  # what the teacher should know (changed cells, …)


class NotGradable(Exception):
    """A submission that cannot be graded; the message is its note."""


def submissions(folder: Path) -> list[tuple[str, Path]]:
    """``(learner, notebook path)`` for every ``*.ipynb`` entry one level below each learner's folder (symlinks
    included, so that they get a row saying they were refused)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder}")
    out = []
    for learner in sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()
                          and not p.name.startswith(".")):
        out += [(learner.name, nb) for nb in sorted(learner.iterdir()) if nb.name.endswith(".ipynb")]
    return out


def lesson_notebook(notebook_name: str) -> Path | None:
    from kit.lessons.run import list_notebooks
    return next((p for p in list_notebooks() if p.name == notebook_name), None)


def expected_exercises(notebook_name: str) -> list[str]:
    """The exercises of the lesson a notebook is a copy of (its check cells, read without running it)."""
    import nbformat

    from kit.lessons.student import check_names
    lesson = lesson_notebook(notebook_name)
    if lesson is None:
        return []
    names: list[str] = []
    for cell in nbformat.read(str(lesson), as_version=4).cells:
        if cell.cell_type == "code":
            names += check_names(cell.source)
    return list(dict.fromkeys(names))


# ------------------------------------------------------------------------------------ copy and rebuild


def read_submission(path: Path) -> bytes:
    """The submission's bytes; :class:`NotGradable` for a symlink, a non-regular file or an oversized one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        raise NotGradable("refused: a symlink, not a notebook file" if os.path.islink(path)
                          else f"could not be read ({type(e).__name__})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotGradable("refused: not a regular file")
        if st.st_size > MAX_NOTEBOOK_BYTES:
            raise NotGradable(f"refused: larger than {MAX_NOTEBOOK_BYTES // 2 ** 20} MB")
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(MAX_NOTEBOOK_BYTES + 1)
    finally:
        os.close(fd)


def parse_notebook(data: bytes):
    """A notebook node from untrusted bytes; the error never quotes the file."""
    import nbformat
    try:
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
        if not isinstance(nb.get("cells"), list):
            raise ValueError
        return nb
    except (Exception, RecursionError):  # noqa: BLE001 - any malformed file: one note, no content echoed
        raise NotGradable("not a Jupyter notebook (unreadable JSON or not nbformat 4)") from None


def _is_answer(cell) -> bool:
    tags = cell.get("metadata", {}).get("tags", [])
    return cell.get("cell_type") == "code" and isinstance(tags, list) and bool(ANSWER_TAGS & set(map(str, tags)))


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def imports_exercise_modules(source: str) -> bool:
    """True when an answer cell imports (or reaches into) kit's exercise modules beyond check and hint."""
    import ast
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return "kit.exercises" in source or "_REGISTRY" in source
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.startswith("kit.exercises") for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kit.exercises"):
            if (node.module or "") != "kit.exercises" or any(a.name not in ("check", "hint") for a in node.names):
                return True
        if isinstance(node, ast.ImportFrom) and node.module == "kit" and any(a.name == "exercises" for a in node.names):
            return True
        if isinstance(node, ast.Attribute) and node.attr in ("exercises", "_REGISTRY", "judge", "assess"):
            return True
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("__import__", "import_module") and \
                any(isinstance(a, ast.Constant) and "exercises" in str(a.value) for a in node.args):
            return True
    return False


def rebuild(lesson, learner) -> tuple[object, list[str]]:
    """The lesson's cells with the learner's answer cells in place (matched by cell id, else by order); and notes.

    Only the answer cells of the learner's notebook are kept; every other cell is the lesson's own (outputs
    cleared). Changed, missing or added cells are listed in the notes, and so is an answer that imports kit's
    exercise modules.
    """
    import copy
    nb = copy.deepcopy(lesson)
    theirs = [c for c in learner.get("cells", []) if isinstance(c, dict)]
    by_id = {c.get("id"): c for c in theirs if c.get("id")}
    their_answers = [c for c in theirs if _is_answer(c)]
    flags, used = [], set()
    n_answer = 0
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        if not _is_answer(cell):
            mine = by_id.get(cell.get("id"))
            if mine is not None and _source(mine) != cell.source:
                flags.append(f"cell {cell.get('id')} differs from the lesson's and was restored")
            elif mine is None and by_id and cell.cell_type == "code":
                flags.append(f"cell {cell.get('id')} was missing and was restored")
            continue
        mine = by_id.get(cell.get("id")) if cell.get("id") in by_id and _is_answer(by_id[cell.get("id")]) else \
            (their_answers[n_answer] if n_answer < len(their_answers) else None)
        n_answer += 1
        if mine is None:
            cell.source = "# (answer cell missing in the submission)\n"
            flags.append(f"answer cell {cell.get('id')} is missing")
            continue
        used.add(id(mine))
        cell.source = _source(mine)
        cell.metadata["tags"] = ["answer"]
        if imports_exercise_modules(cell.source):
            flags.append(f"answer cell {cell.get('id')} imports kit's exercise modules")
    lesson_ids = {c.get("id") for c in lesson.cells}
    added = [c for c in theirs if c.get("id") not in lesson_ids and id(c) not in used]
    if added:
        flags.append(f"{len(added)} added cell(s) ignored: only answer cells are graded")
    if len(flags) > 3:
        flags = flags[:3] + [f"{len(flags) - 3} more cell(s) restored or ignored"]
    return nb, flags


# ------------------------------------------------------------------------------------------ judging


def draw_cases(ids, rng=None) -> dict:
    """For each exercise id: its kind and, for a function exercise, the cases drawn now (kit's process)."""
    import numpy as np

    from kit.exercises import get
    rng = rng or np.random.default_rng()
    out = {}
    for id in ids:
        ex = get(id)
        out[id] = {"kind": ex.kind, "cases": list(ex.calls(rng)) if ex.kind == "function" else []}
    return out


def judge_record(id: str, cases: list, record) -> tuple[bool, str]:
    """``(passed, message)`` for what the sandbox wrote for exercise ``id``, judged with kit's reference here."""
    from kit.exercises import Outcome, get, not_a_function
    ex = get(id)
    if not isinstance(record, dict):
        return False, "its recorded answer is not readable"
    if record.get("blank"):
        return False, "no answer yet — replace the placeholder with your code"
    if "error" in record:
        return False, str(record["error"])[:300]
    try:
        if "not_callable" in record:
            why = not_a_function(type(str(record["not_callable"])[:80], (), {})())
        elif ex.kind != "function":
            why = ex.test(record.get("value"))
        else:
            outs = record.get("outcomes")
            if not isinstance(outs, list) or len(outs) != len(cases):
                return False, "its recorded answer does not match the grading inputs"
            outcomes = []
            for o in outs:
                raised = o.get("raised") if isinstance(o, dict) else None
                if raised is not None:
                    raised = (str(raised[0])[:100], str(raised[1])[:500]) if isinstance(raised, (tuple, list)) and \
                        len(raised) == 2 else ("Exception", "")
                outcomes.append(Outcome(o.get("value") if isinstance(o, dict) else None, raised))
            why = ex.assess(cases, outcomes)
    except Exception as e:  # noqa: BLE001 - an answer so odd that judging it failed is a wrong answer
        why = f"its result could not be judged ({type(e).__name__})"
    return (why is None), ("correct" if why is None else why)


# ------------------------------------------------------------------------------------------ running


@dataclass
class Settings:
    timeout: float = 120          # seconds per cell
    limit: float = 600            # seconds per notebook (wall clock, always returns)
    mem: int = 2 * 2 ** 30        # bytes per process
    sandbox: bool = True


def _write_job(job: Path, nb, name: str, inputs: dict, settings: Settings) -> None:
    import nbformat

    from kit.exercises import wire
    from kit.lessons.run import notebook_parameters
    (job / "inputs").mkdir(parents=True)
    (job / "answers").mkdir()
    path = job / name
    nbformat.write(nb, str(path))
    params = {"smoke": True} if "smoke" in notebook_parameters(path) else {}
    for id, task in inputs.items():
        wire.save(job / "inputs" / f"{id}.npz",
                  {"kind": task["kind"], "cases": [(c.label, c.args, c.kwargs) for c in task["cases"]]})
    (job / "job.json").write_text(json.dumps({"notebook": path.name, "parameters": params,
                                              "timeout": settings.timeout, "stall": 45}))


def _run_job(job: Path, settings: Settings, slot: int, log) -> str | None:
    """Run the job in the sandbox (or, with ``sandbox=False``, as a plain child); ``None`` or why it stopped early."""
    from kit.lessons import sandbox as sb
    limits = sb.Limits(mem=settings.mem, cpu=int(settings.limit) + 60)
    argv = [sys.executable, "-m", "kit.lessons.grade_job", "/job" if settings.sandbox else str(job)]
    threads = {"KIT_THREADS": "1", "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    if settings.sandbox:
        view = sb.exercises_view(job.parent / "view")
        sb.prepare_job(job, slot)
        cmd, env = sb.command(job, argv, view=view, slot=slot, env=threads), None
    else:
        cmd, env = argv, {**os.environ, **threads, "KIT_GRADE_JOB": str(job), "KIT_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=job, env=env,
                            start_new_session=True, preexec_fn=sb.preexec(limits) if os.name == "posix" else None)
    try:
        proc.wait(timeout=settings.limit)
    except subprocess.TimeoutExpired:
        return f"did not finish within {settings.limit:g} s"
    finally:
        _kill_group(proc)
    return None


def _kill_group(proc) -> None:
    """SIGKILL the job's process group (with the sandbox, its PID namespace dies with it) and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _run_status(job: Path) -> str | None:
    from kit.exercises import wire
    try:
        doc = json.loads(wire.read_untrusted(job, "run/status.json", limit=64 * 1024))
        return str(doc["error"])[:500] if isinstance(doc, dict) and doc.get("error") else None
    except (FileNotFoundError, wire.WireError, ValueError, KeyError, TypeError):
        return "the run stopped before it finished (no status)"


def _cell_errors(executed) -> list[str]:
    """Errors raised in the answer cells of the executed notebook (for the notes; escaped wherever shown)."""
    out = []
    for cell in executed.get("cells", []) if executed else []:
        if not _is_answer(cell):
            continue
        for o in cell.get("outputs", []) if isinstance(cell.get("outputs"), list) else []:
            if isinstance(o, dict) and o.get("output_type") == "error":
                out.append(f"your answer cell: {str(o.get('ename'))[:80]}: {str(o.get('evalue'))[:200]}")
    return out


def grade_one(learner: str, path: Path, out: Path, settings: Settings, slot: int = 0) -> Submission:
    """Copy, rebuild, run in the sandbox, judge here: one submission's row."""
    import nbformat

    from kit.exercises import wire
    sub = Submission(learner, Path(path).name)
    try:
        lesson_path = lesson_notebook(sub.notebook)
        data = read_submission(Path(path))
        if lesson_path is None:
            raise NotGradable(f"not a lesson of this kit (no notebook named {sub.notebook[:80]!r})")
        learner_nb = parse_notebook(data)
    except NotGradable as e:
        sub.error = str(e)
        return sub
    lesson = nbformat.read(str(lesson_path), as_version=4)
    nb, sub.flags = rebuild(lesson, learner_nb)
    ids = expected_exercises(sub.notebook)
    inputs = draw_cases(ids)
    keep = out / _safe(learner)
    keep.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kit-grade-") as tmp:
        job = Path(tmp) / "job"
        _write_job(job, nb, sub.notebook, inputs, settings)
        with open(Path(tmp) / "log.txt", "wb") as log:  # outside the job folder; read by nobody
            stopped = _run_job(job, settings, slot, log)
        run_error = stopped or _run_status(job)
        if run_error and run_error.startswith(f"{sub.notebook}, "):
            run_error = run_error[len(sub.notebook) + 2:]
        executed = None
        try:
            raw = wire.read_untrusted(job, f"run/{sub.notebook}", limit=MAX_NOTEBOOK_BYTES)
            executed = parse_notebook(raw)
            _atomic_write(keep / sub.notebook, raw)
        except (FileNotFoundError, wire.WireError, NotGradable):
            pass
        for id in ids:
            try:
                record = wire.load(job, f"answers/{id}.npz")
            except FileNotFoundError:
                sub.exercises[id] = (False, f"not judged: {run_error or 'its check cell did not record an answer'}")
                continue
            except wire.WireError as e:
                sub.exercises[id] = (False, f"its recorded answer is not readable ({e})")
                continue
            sub.exercises[id] = judge_record(id, inputs[id]["cases"], record)
        errors = ([run_error] if run_error else []) + _cell_errors(executed)
        sub.error = "; ".join(dict.fromkeys(errors)) or None
    return sub


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).lstrip(".") or "_"


def _atomic_write(path: Path, data: bytes | str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    os.replace(tmp, path)


def grade(folder: Path, out: Path, jobs: int = 2, timeout: float = 120, limit: float = 600, progress: bool = True,
          mem: int = 2 * 2 ** 30, sandbox: bool = True) -> tuple[Path, Path, list[Submission]]:
    """Grade every submission under ``folder``; ``out/grades.csv`` and ``out/grades.html`` after each one.

    Raises :class:`kit.lessons.sandbox.SandboxUnavailable` (one sentence) when ``sandbox`` and none can be started.
    """
    from tqdm.auto import tqdm

    from kit.lessons import sandbox as sb
    if sandbox:
        why = sb.available()
        if why:
            raise sb.SandboxUnavailable(f"{why}; kit grade runs learners' code only in a sandbox — pass --no-sandbox "
                                        "to run it unprotected, as you")
    else:
        print(NO_SANDBOX_WARNING, file=sys.stderr)
    todo = submissions(folder)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = Settings(timeout=timeout, limit=limit, mem=mem, sandbox=sandbox)
    slots: queue.Queue[int] = queue.Queue()
    for k in range(max(1, jobs)):
        slots.put(k)

    def one(learner, nb):
        slot = slots.get()
        try:
            return grade_one(learner, nb, out, settings, slot)
        except Exception as e:  # noqa: BLE001 - the grader's own failure on one row: say it, keep the others
            return Submission(learner, Path(nb).name, error=f"could not be graded ({type(e).__name__}: {e})")
        finally:
            slots.put(slot)

    results: list[Submission] = []
    lock = threading.Lock()
    csv_path, html_path = out / "grades.csv", out / "grades.html"
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(one, learner, nb) for learner, nb in todo]
        for f in tqdm(as_completed(futures), total=len(futures), desc="grading", unit="notebook",
                      disable=not progress):
            with lock:
                results.append(f.result())
                order = {(l, Path(n).name): i for i, (l, n) in enumerate(todo)}
                results.sort(key=lambda r: order.get((r.learner, r.notebook), 0))
                write_book(out, results)
    if not todo:
        write_book(out, results)
    return csv_path, html_path, results


def write_book(out: Path, results: list[Submission]) -> None:
    columns = _columns(results)
    _write_csv(out / "grades.csv", results, columns)
    _write_html(out / "grades.html", results, columns)


# ------------------------------------------------------------------------------------------ the book


def _columns(results: list[Submission]) -> list[tuple[str, str]]:
    """``(notebook, exercise)`` columns: the lesson's own exercises only (a submission cannot add columns)."""
    cols: dict[tuple[str, str], None] = {}
    for nb in dict.fromkeys(r.notebook for r in results):
        for name in expected_exercises(nb):
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
    return False, sub.error or "not judged"


def _notes(results, learner) -> str:
    return "; ".join(f"{r.notebook}: {'; '.join(([r.error] if r.error else []) + r.flags)}"
                     for r in results if r.learner == learner and (r.error or r.flags))


def _write_csv(path: Path, results, columns) -> Path:
    import io
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["learner", *[f"{Path(nb).stem}: {name}" for nb, name in columns], "passed", "notes"])
    for learner in _learners(results):
        marks = [int(_cell(results, learner, c)[0]) for c in columns]
        w.writerow([_csv_text(learner), *marks, sum(marks), _csv_text(_notes(results, learner))])
    _atomic_write(path, buf.getvalue())
    return path


def _csv_text(text: str) -> str:
    """No spreadsheet formula from a learner's text (a leading =, +, - or @ is quoted)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


GRADE_STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em} table{border-collapse:collapse;font-size:14px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:center} td.ok{background:#e6f4ea;color:#137333}
td.no{background:#fce8e6;color:#a50e0e} td.note{text-align:left;color:#555;max-width:28em}
.wrap{overflow-x:auto}"""


def _write_html(path: Path, results, columns) -> Path:
    """``grades.html``: a ✓/✗ per learner and exercise (its message on hover), pass rates, the commonest failures;
    no script (:mod:`kit.lessons.htmlpage`)."""
    learners = _learners(results)
    rows, failures = [], Counter()
    for learner in learners:
        cells = []
        for c in columns:
            ok, msg = _cell(results, learner, c)
            cells.append(td("✓" if ok else "✗", cls="ok" if ok else "no", title=msg))
            if not ok:
                failures[msg] += 1
        n = sum(_cell(results, learner, c)[0] for c in columns)
        rows.append(tr(th(learner), *cells, f"{n}/{len(columns)}", td(_notes(results, learner), cls="note")))
    rates = [f"{100 * sum(_cell(results, l, c)[0] for l in learners) / max(1, len(learners)):.0f}%" for c in columns]
    rows.append(tr(th("pass rate"), *rates, "", ""))
    common = join(Markup(f"<li><b>{n}×</b> {esc(msg)}</li>") for msg, n in failures.most_common(8))
    grid = table(["learner", *(th(name, title=nb) for nb, name in columns), "passed", "notes"], rows, cls="")
    body = Markup(f"<p>{len(learners)} learners, {len(columns)} exercises. Hover a cell for its message.</p>"
                  f"<div class='wrap'>{grid}</div>\n<h2>Most common failures</h2><ol>{common or '<li>none</li>'}</ol>")
    _atomic_write(path, page("Grade book", body, base_style=GRADE_STYLE, sortable=False))
    return path
