"""The ``kit`` command: list, run, run-all, sweep (parallel, resumable, comparison report), report, student,
check and lab. Notebooks run with smoke=True; the network is blocked (conftest) and subprocesses inherit
KIT_OFFLINE=1."""
from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

from kit.lessons.cli import main
from kit.lessons.run import find_notebook, list_notebooks
from kit.lessons.student import check_names, answer_names, student_notebook

ROOT = Path(__file__).resolve().parents[1]


def kit(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kit", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, **kw)


# ------------------------------------------------------------------------------------------ list / run


def test_list_shows_lessons_goals_and_parameters(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for nb in list_notebooks():
        assert nb.stem in out
    assert "Linear regression: house prices three ways" in out  # title line of the first markdown cell
    assert "closed-form least-squares" in out                    # its goals
    assert "lr = 0.1  (float)  # gradient-descent learning rate" in out
    assert "01.3  one step of gradient descent" in out and "test R² ≥ 0.9" in out  # from the catalog
    assert main(["list", "--json"]) == 0
    lessons = json.loads(capsys.readouterr().out)
    lr = next(x for x in lessons if x["name"] == "01_linear_regression")["parameters"]["lr"]
    assert lr["default"] == "0.1" and lr["type"] == "float"


@pytest.mark.parametrize("args, needle", [
    (["-p", "lr", "-0.5"], "parameter 'lr' must be a number > 0"),
    (["-p", "seed", "zero"], "parameter 'seed' must be an int"),
    (["-p", "smoke", "yes"], "parameter 'smoke' must be True or False"),
    (["--device", "tpu"], "parameter 'device' must be one of"),
    (["-p", "learning_rate", "1"], "unknown parameter 'learning_rate'"),
], ids=["lr-range", "seed-type", "smoke-type", "device", "unknown"])
def test_run_bad_parameter_fails_before_execution(args, needle, tmp_path, capsys):
    assert main(["run", "01", *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err  # one clear line
    assert not any(tmp_path.iterdir()), "nothing may run"


def test_run_on_a_missing_device_fails_before_execution(tmp_path, capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    assert main(["run", "00", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "parameter 'device' is 'cuda' but no CUDA GPU is available" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.notebook
def test_run_writes_a_run_folder(tmp_path, capsys):
    assert main(["run", "00", "-p", "smoke", "True", "-p", "n", "3", "--device", "cpu", "--out", str(tmp_path), "-q"]) == 0
    folder = tmp_path / "00_setup"
    for f in ("00_setup.ipynb", "00_setup.html", "metrics.json", "params.json", "run.json"):
        assert (folder / f).is_file(), f
    run = json.loads((folder / "run.json").read_text())
    assert run["status"] == "ok" and run["seconds"] > 0
    assert run["parameters"] == {"smoke": True, "n": 3, "device": "cpu"}
    assert run["all_parameters"]["seed"] == 0 and run["all_parameters"]["n"] == 3
    assert {"python", "torch", "cuda", "cpu_count"} <= set(run["env"])
    assert "00_setup: ok in" in capsys.readouterr().out


@pytest.mark.notebook
def test_run_all_writes_the_index(tmp_path, monkeypatch):
    import kit.lessons.catalog
    setup = find_notebook("00")
    monkeypatch.setattr(kit.lessons.catalog, "notebooks", lambda *a: [setup])  # one lesson keeps it short
    assert main(["run-all", "-p", "smoke", "True", "-p", "lr", "0.1", "--out", str(tmp_path)]) == 0
    index = (tmp_path / "index.html").read_text()
    assert "00_setup/00_setup.html" in index and "smoke=True" in index and "lr=" not in index


# -------------------------------------------------------------------------------------------- sweep


def _finished(out: Path) -> dict[Path, int]:
    done = {}
    for rj in out.glob("*/run.json"):
        try:
            ok = json.loads(rj.read_text()).get("status") == "ok"
        except ValueError:  # being written
            continue
        if ok and (rj.parent / "metrics.json").exists():
            done[rj] = rj.stat().st_mtime_ns
    return done


def _processes_in(folder: Path) -> list[int]:
    """Processes whose working directory is inside ``folder`` (Linux /proc; elsewhere: none known)."""
    pids = []
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            if Path(os.readlink(proc_dir / "cwd")).is_relative_to(folder.resolve()):
                pids.append(int(proc_dir.name))
        except OSError:
            continue
    return pids


@pytest.mark.notebook
def test_sweep_2x2_parallel_interrupted_then_resumed(tmp_path):
    """A real interruption: SIGINT once a run has finished; the rerun redoes only the unfinished runs."""
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "kit", "sweep", "01", "-p", "lr", "0.1,0.2", "-p", "seed", "0,1",
           "-p", "smoke", "True", "--jobs", "2", "--timeout", "120", "--out", str(out), "-q"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 400
        while not _finished(out) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert _finished(out), f"no run finished: {proc.stdout.read() if proc.poll() is not None else ''}"
        proc.send_signal(signal.SIGINT)
        log = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, log
    assert "run the same command again to resume" in log
    deadline = time.monotonic() + 15
    while _processes_in(out) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _processes_in(out), "the interrupted runs' processes (and kernels) must stop"
    before = _finished(out)
    assert 1 <= len(before) < 4, f"interrupted too late to test resuming: {sorted(p.parent.name for p in before)}"

    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"resuming: {len(before)} of 4 runs already finished" in again.stdout + again.stderr
    after = _finished(out)
    assert len(after) == 4
    assert {p: after[p] for p in before} == before, "finished runs must not be executed again"
    names = sorted(p.parent.name for p in after)
    assert names == ["lr=0.1_seed=0", "lr=0.1_seed=1", "lr=0.2_seed=0", "lr=0.2_seed=1"]
    # jobs share the cores: KIT_THREADS=2 (conftest) ÷ 2 jobs → one torch thread each
    executed = (out / names[0] / "01_linear_regression.ipynb").read_text()
    assert "threads=1" in executed

    report = out / "compare-01_linear_regression.html"
    assert f"report: {report}" in again.stdout
    page = report.read_text()
    assert page.count("* plotly.js v") == 1, "plotly.js inlined exactly once"
    assert "<script src=" not in page.replace(" ", "") and 'src="http' not in page
    assert page.count("<tr><td><a href=") == 4 and page.count("<td class='ok'>ok</td>") == 4
    assert "metrics vs lr" in page and "class='sortable'" in page
    assert "4 of 4 runs finished. Swept: <b>lr, seed</b>" in page
    # seeds are replicates: metric vs lr is the mean over seeds with min–max bars; no "metrics vs seed"
    assert "metrics vs seed" not in page and '"name":"mean over seeds"' in page
    assert '"arrayminus":' in page.replace(" ", "") and "test_mse" in page
    index = (out / "index.html").read_text()
    assert "compare-01_linear_regression.html" in index and index.count("/01_linear_regression.html\">") == 4


def test_sweep_bad_value_fails_before_anything_runs(tmp_path, capsys):
    assert main(["sweep", "01", "-p", "lr", "0.1,-1", "--out", str(tmp_path / "s")]) == 2
    assert "parameter 'lr' must be a number > 0" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


# ------------------------------------------------------------------------------------------- report


def _fake_run(folder: Path, params: dict, metrics: dict, status="ok", curves=None):
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"notebook": "01_linear_regression.ipynb", "status": status,
                                                 "seconds": 1.5, "parameters": params, "all_parameters": params}))
    if status == "ok":
        doc = {"metrics": dict(metrics, **({"curves": curves} if curves else {})), "timing": {}, "params": params}
        (folder / "metrics.json").write_text(json.dumps(doc))


def test_report_compares_runs_with_curves(tmp_path, capsys):
    runs = tmp_path / "runs"
    for i, lr in enumerate([0.01, 0.1, 1.0]):
        _fake_run(runs / "lrs" / f"lr{lr}", {"lr": lr, "seed": 0},
                  {"loss": 1 / (1 + i), "n": 10}, curves={"train_loss": [1.0, 0.5 / (i + 1), 0.1 / (i + 1)]})
    _fake_run(runs / "lrs" / "lr-broken", {"lr": 9.0, "seed": 0}, {}, status="failed")
    assert main(["report", str(runs)]) == 0
    out = capsys.readouterr().out.split()
    assert out == [str(runs / "index.html"), str(runs / "compare-01_linear_regression.html")]
    page = (runs / "compare-01_linear_regression.html").read_text()
    assert "metrics vs lr" in page and "learning curves" in page and "train_loss (one line per run)" in page
    assert '"type":"log"' in page.replace(" ", ""), "lr spans two decades: log axis"
    assert "the same in every run: n=10" in page
    assert page.count("<tr><td>") == 4 and "<td class='failed'>failed</td>" in page
    index = (runs / "index.html").read_text()
    assert "lrs/lr0.1" in index and "compare the 3 runs" in index


def test_report_on_missing_folder(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "no folder" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- student / check


@pytest.mark.parametrize("nb", list_notebooks(), ids=lambda p: p.stem)
def test_student_copy_keeps_checks_and_answer_names(nb):
    """Solutions become placeholders that keep their names; every other cell, check cells included, is unchanged."""
    from kit.lessons.student import function_stubs
    doc = nbformat.read(str(nb), as_version=4)
    student = student_notebook(doc)
    assert len(student.cells) == len(doc.cells)
    solutions = [i for i, c in enumerate(doc.cells) if "solution" in c.metadata.get("tags", [])]
    assert solutions, f"{nb.stem} has no exercises"
    for i in solutions:
        names = answer_names(doc.cells[i].source)
        stubs = function_stubs(doc.cells[i].source)
        assert names or stubs, f"{nb.stem}: solution cell {i} assigns no answer_N and defines no function"
        placeholder = student.cells[i].source
        assert "solution" not in student.cells[i].metadata["tags"]
        assert all(f"{n} = None  # YOUR CODE HERE" in placeholder for n in names)
        assert placeholder.count("raise NotImplementedError") == len(stubs)
        check = next(c for c in doc.cells[i + 1:] if c.cell_type == "code")
        assert check_names(check.source), "a check cell follows each solution"
    assert [c.source for i, c in enumerate(student.cells) if i not in solutions] == \
           [c.source for i, c in enumerate(doc.cells) if i not in solutions]


def test_function_stub_keeps_signature_and_docstring():
    from kit.lessons.student import placeholder
    src = 'import math\ndef f(x, y=2, *, z: int = 0) -> float:\n    """Return it."""\n    return x\nanswer_2 = 3\n'
    assert placeholder(src) == ('answer_2 = None  # YOUR CODE HERE\n\ndef f(x, y=2, *, z: int=0) -> float:\n'
                                '    """Return it."""\n    # YOUR CODE HERE\n    raise NotImplementedError\n')


@pytest.mark.notebook
def test_student_copies_fail_their_checks_and_solutions_pass(tmp_path, capsys):
    work = tmp_path / "workshop"
    assert main(["student", str(work)]) == 0
    assert sorted(p.name for p in work.glob("*.ipynb")) == [nb.name for nb in list_notebooks()]
    capsys.readouterr()

    blank = work / "00_setup.ipynb"
    assert main(["check", str(blank), "--out", str(tmp_path / "b"), "-q"]) == 1
    out = capsys.readouterr().out
    assert "✗ 00.1: no answer yet — write the function's body. Hint 1: torch has a function for the identity" in out
    assert "Hint 2" not in out, "one hint unless asked for more"
    assert "✗ 00.3: no answer yet" in out, "a failing check does not stop the others"
    assert "0 of 3 exercises correct" in out

    assert main(["check", str(blank), "--out", str(tmp_path / "h"), "-q", "--hints", "2", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["notebook"] == "00_setup.ipynb" and [e["name"] for e in doc["exercises"]] == ["00.1", "00.2", "00.3"]
    assert all(not e["passed"] and "Hint 2:" in e["message"] for e in doc["exercises"])

    assert main(["check", "00", "--out", str(tmp_path / "s"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "✓ 00.1: correct" in out and "✓ 00.3: correct" in out and "3 of 3 exercises correct" in out


def test_check_rejects_a_bad_hint_level(capsys):
    assert main(["check", "00", "--hints", "0"]) == 2
    assert "--hints must be 1 or more" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- lab


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, never a proxy
    with opener.open(url, timeout=5) as r:
        return r.status, json.loads(r.read())


def test_lab_serves_with_a_token_only_and_ps_never_shows_it(tmp_path):
    import psutil
    port, token = _free_port(), "kit-test-token-5f1c"
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_TOKEN=token)
    with open(tmp_path / "lab.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "kit", "lab", "--port", str(port), "--dir", str(tmp_path)],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline, status = time.monotonic() + 90, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = _get(f"http://127.0.0.1:{port}/api/status?token={token}")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        assert status is not None, (tmp_path / "lab.log").read_text()
        assert status[0] == 200 and "started" in status[1]
        shown = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"]) if token in " ".join(p.info["cmdline"] or [])]
        assert shown == [], f"the token is visible to `ps`: {shown}"
        with pytest.raises(urllib.error.HTTPError) as err:
            _get(f"http://127.0.0.1:{port}/api/status")
        assert err.value.code == 403
        with pytest.raises(urllib.error.HTTPError):
            _get(f"http://127.0.0.1:{port}/api/status?token=wrong")
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert f"http://127.0.0.1:{port}/lab?token={token}" in (tmp_path / "lab.log").read_text()


# --------------------------------------------------------------------------------------------- grade book
@pytest.mark.notebook
def test_grade_book_of_a_workshop_with_broken_notebooks(tmp_path):
    """Six learners: right, blank, kernel crash, endless loop, not a notebook, a deleted check cell."""
    import csv

    from kit.lessons.grade import grade
    from kit.lessons.run import find_notebook
    lesson = nbformat.read(str(find_notebook("00")), as_version=4)
    blank = student_notebook(lesson)
    answers = [i for i, c in enumerate(blank.cells) if "answer" in c.metadata.get("tags", [])]
    sub = tmp_path / "submissions"

    def hand_in(learner, nb=None, text=None):
        (sub / learner).mkdir(parents=True)
        path = sub / learner / "00_setup.ipynb"
        path.write_text(text) if text is not None else nbformat.write(nb, str(path))

    hand_in("alice", lesson)
    hand_in("bob", blank)
    crash = copy.deepcopy(blank)
    crash.cells[answers[0]].source = "import os\nos._exit(1)"
    hand_in("carol", crash)
    loop = copy.deepcopy(blank)
    loop.cells[answers[1]].source = "while True:\n    pass"
    hand_in("dave", loop)
    hand_in("erin", text="this is not a notebook")
    deleted = copy.deepcopy(lesson)
    deleted.cells.pop(next(i for i in range(answers[1] + 1, len(deleted.cells)) if 'check("00.2"' in deleted.cells[i].source))
    hand_in("frank", deleted)
    typo = copy.deepcopy(lesson)
    typo.cells[answers[0]].source = "def scaled_identity(n, c)\n    return c * torch.eye(n)"
    typo.cells[answers[1]].source = ("def pairwise_sq_dists(A, B):\n"
                                     "    return ((A - B) ** 2).sum(-1)  # forgot to broadcast: pairs A[i] with B[i]")
    hand_in("gina", typo)

    csv_path, html_path, results = grade(sub, tmp_path / "grades", jobs=2, timeout=15, limit=240, progress=False)
    rows = {r["learner"]: r for r in csv.DictReader(open(csv_path))}
    assert list(rows) == ["alice", "bob", "carol", "dave", "erin", "frank", "gina"]
    ex1, ex2, ex3 = "00_setup: 00.1", "00_setup: 00.2", "00_setup: 00.3"
    assert (rows["alice"][ex1], rows["alice"][ex2], rows["alice"][ex3], rows["alice"]["notes"]) == ("1", "1", "1", "")
    assert (rows["bob"][ex1], rows["bob"][ex2], rows["bob"][ex3]) == ("0", "0", "0")
    assert "kernel died" in rows["carol"]["notes"]
    assert "ran longer than its time limit" in rows["dave"]["notes"]
    assert rows["erin"]["passed"] == "0" and rows["erin"]["notes"]
    # a deleted check cell is restored from the lesson (and said): frank's answers are all judged
    assert (rows["frank"][ex1], rows["frank"][ex2], rows["frank"][ex3]) == ("1", "1", "1")
    assert "missing" in rows["frank"]["notes"] or "restored" in rows["frank"]["notes"]
    assert (rows["gina"][ex1], rows["gina"][ex2], rows["gina"][ex3]) == ("0", "0", "1")
    assert "SyntaxError" in rows["gina"]["notes"]
    page = html_path.read_text()
    assert "pass rate" in page and "Most common failures" in page and "no answer yet" in page
    assert "on the case" in page, "a wrong answer's message names the failing case"
    assert "<script" not in page and "http" not in page.split("</style>")[1]  # offline, nothing to fetch


@pytest.mark.notebook
def test_check_json_is_clean_when_the_notebook_writes_to_file_descriptor_1(tmp_path):
    """An honest learner's os.system output goes to stderr; stdout is exactly the JSON document."""
    from kit.lessons.run import find_notebook
    nb = nbformat.read(str(find_notebook("00")), as_version=4)
    cell = next(c for c in nb.cells if "solution" in c.metadata.get("tags", []))
    cell.source += "\nimport os\nos.system('echo hi from C')"
    path = tmp_path / "00_setup.ipynb"
    nbformat.write(nb, str(path))
    p = subprocess.run([sys.executable, "-m", "kit", "check", str(path), "--json", "-q", "--out", str(tmp_path / "o")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    doc = json.loads(p.stdout)
    assert p.returncode == 0 and [e["passed"] for e in doc["exercises"]] == [True, True, True], p.stdout + p.stderr


@pytest.mark.notebook
def test_check_untrusted_grades_one_notebook_in_the_sandbox(tmp_path):
    from kit.lessons.sandbox import available
    if available() and os.environ.get("KIT_REQUIRE_SANDBOX") != "1":
        pytest.skip(f"no sandbox here: {available()}")
    from kit.lessons.run import find_notebook
    blank = student_notebook(nbformat.read(str(find_notebook("00")), as_version=4))
    nbformat.write(blank, str(tmp_path / "00_setup.ipynb"))
    p = subprocess.run([sys.executable, "-m", "kit", "check", str(find_notebook("00")), "--untrusted", "--json"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and all(e["passed"] for e in json.loads(p.stdout)["exercises"]), p.stdout + p.stderr
    p = subprocess.run([sys.executable, "-m", "kit", "check", str(tmp_path / "00_setup.ipynb"), "--untrusted"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 1 and p.stdout.count("no answer yet") == 3, p.stdout + p.stderr
