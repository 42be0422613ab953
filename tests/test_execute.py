"""The one execution path: kernels that die, stall or run long fail with one message; sweeps never hang."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from kit.lessons.execute import CellTimeLimit, KernelDied, KernelStalled
from kit.lessons.run import RunRecord, execute

ROOT = Path(__file__).resolve().parents[1]
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
WRITE_METRICS = "import json, pathlib\npathlib.Path('metrics.json').write_text(json.dumps({'metrics': {'ok': 1}}))"


def make_notebook(path: Path, *cells: str, kernelspec: bool = True) -> Path:
    """A notebook with a ``parameters`` cell (``seed``) followed by ``cells``."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("seed = 0", metadata={"tags": ["parameters"]})]
                                  + [nbformat.v4.new_code_cell(c) for c in cells])
    if kernelspec:
        nb.metadata["kernelspec"] = KERNELSPEC
    nbformat.write(nb, path)
    return path


def kit(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "kit", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


# A cell that makes this kernel swallow the execute reply of the cell it is in (and of every later one)
# while still reporting "idle" on iopub: exactly what the client saw when a reply was lost.
DROP_REPLIES = """\
k = get_ipython().kernel
_send = k.session.send
def _drop_replies(stream, msg_or_type, *args, **kwargs):
    if msg_or_type == "execute_reply":
        return {"header": {}, "parent_header": {}, "metadata": {}, "msg_type": "execute_reply",
                "content": {"status": "ok"}}
    return _send(stream, msg_or_type, *args, **kwargs)
k.session.send = _drop_replies
"""


def test_a_lost_reply_is_detected_and_the_notebook_rerun_once_with_a_fresh_kernel(tmp_path, capfd):
    flag = tmp_path / "first_attempt"
    nb = make_notebook(tmp_path / "lost.ipynb",
                       f"import pathlib\nif not pathlib.Path({str(flag)!r}).exists():\n"
                       f"    pathlib.Path({str(flag)!r}).touch()\n" + "\n".join("    " + l for l in DROP_REPLIES.splitlines()),
                       WRITE_METRICS)
    t0 = time.monotonic()
    res = execute(nb, tmp_path / "out", timeout=60, stall_timeout=3, html=False, progress=False)
    assert res.attempts == 2 and res.metrics["metrics"] == {"ok": 1}
    assert time.monotonic() - t0 < 40, "a stall must cost the stall time, not the cell time limit"
    err = capfd.readouterr().err
    assert "lost.ipynb, cell 2" in err and "reply did not arrive" in err and "once more with a fresh kernel" in err
    rec = RunRecord.read(tmp_path / "out")
    assert rec.status == "ok" and rec.attempts == 2


def test_a_second_stall_fails_naming_the_notebook_and_the_cell(tmp_path):
    nb = make_notebook(tmp_path / "stuck.ipynb", DROP_REPLIES, WRITE_METRICS)
    with pytest.raises(KernelStalled) as err:
        execute(nb, tmp_path / "out", timeout=60, stall_timeout=2, html=False, progress=False)
    msg = str(err.value)
    assert msg.startswith("stuck.ipynb, cell 2 (`k = get_ipython().kernel`)") and "twice" in msg
    rec = RunRecord.read(tmp_path / "out")
    assert rec.status == "failed" and rec.reason == msg and rec.attempts == 2


def test_a_slow_cell_meets_its_time_limit_once_without_a_retry(tmp_path):
    nb = make_notebook(tmp_path / "slow.ipynb", "import time\ntime.sleep(60)", WRITE_METRICS)
    t0 = time.monotonic()
    with pytest.raises(CellTimeLimit, match=r"slow.ipynb, cell 2 \(`import time`\) ran longer than its time limit of 3 s"):
        execute(nb, tmp_path / "out", timeout=3, stall_timeout=2, html=False, progress=False)
    assert time.monotonic() - t0 < 30
    rec = RunRecord.read(tmp_path / "out")
    assert rec.status == "failed" and rec.attempts == 1 and "time limit" in rec.reason


@pytest.mark.parametrize("how", ["SIGKILL", "SIGSEGV", "exit"])
def test_a_dying_kernel_fails_kit_run_within_seconds_with_one_message(tmp_path, how):
    kill = {"SIGKILL": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
            "SIGSEGV": "import ctypes\nctypes.string_at(0)",
            "exit": "import os\nos._exit(3)"}[how]
    nb = make_notebook(tmp_path / "dies.ipynb", "x = 1", kill, WRITE_METRICS)
    t0 = time.monotonic()
    proc = kit("run", nb, "--out", tmp_path / "runs", "-q")
    assert proc.returncode == 1 and time.monotonic() - t0 < 30
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "dies.ipynb, cell 3" in proc.stderr and "the kernel died" in proc.stderr, proc.stderr
    rec = RunRecord.read(tmp_path / "runs" / "dies")
    assert rec.status == "failed" and "kernel died" in rec.reason
    assert {"SIGKILL": "SIGKILL", "SIGSEGV": "SIGSEGV", "exit": "exit code 3"}[how] in rec.reason


def test_kernel_died_is_raised_by_execute(tmp_path):
    nb = make_notebook(tmp_path / "dies.ipynb", "import os\nos._exit(1)")
    with pytest.raises(KernelDied, match="dies.ipynb, cell 2"):
        execute(nb, tmp_path / "out", html=False, progress=False)


def test_a_notebook_without_kernel_metadata_runs(tmp_path):
    nb = make_notebook(tmp_path / "bare.ipynb", WRITE_METRICS, kernelspec=False)
    proc = kit("run", nb, "--out", tmp_path / "runs", "-q", "-p", "seed", "3")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "runs" / "bare" / "metrics.json").read_text()) == {"metrics": {"ok": 1}}


def test_a_cell_error_is_one_line_from_the_cli(tmp_path):
    nb = make_notebook(tmp_path / "bad.ipynb", "x = 1", "raise ValueError('the data has no rows')")
    proc = kit("run", nb, "--out", tmp_path / "runs", "-q")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "cell [3] raised ValueError: the data has no rows" in proc.stderr
    rec = RunRecord.read(tmp_path / "runs" / "bad")
    assert rec.status == "failed" and "ValueError: the data has no rows" in rec.reason


def test_kernels_listen_on_unix_sockets_in_a_private_folder_that_is_removed():
    if os.name != "posix":
        pytest.skip("Unix sockets")
    from kit.lessons.execute import kernel_manager_class
    with kernel_manager_class() as cls:
        km = cls(kernel_name="python3")
        assert km.transport == "ipc" and os.path.isabs(km.ip) and len(km.ip) < 80
        folder = Path(km.ip).parent
        assert folder.is_dir()
    assert not folder.exists()


# Cells whose ipywidgets Output widgets capture output: each one used to make nbclient send the
# widget's state on the shell channel while it waited there for the execute reply (the lost reply).
WIDGET_CELLS = ["import ipywidgets as w\nfrom IPython.display import display",
                *["out = w.Output()\nbox = w.VBox([w.FloatSlider(value=seed), out])\ndisplay(box)\n"
                  f"with out:\n    print('cell {i}', seed)" for i in range(3)],
                WRITE_METRICS]


def test_stress_consecutive_two_job_sweeps_never_stall(tmp_path):
    """8 sweeps of 2 parallel runs each, one after another: every run ends first time, none waits."""
    from kit.lessons.sweep import sweep
    nb = make_notebook(tmp_path / "widgets.ipynb", *WIDGET_CELLS)
    times, attempts = [], []
    for i in range(8):
        t0 = time.monotonic()
        runs, failed, _ = sweep(nb, {"seed": [0, 1]}, tmp_path / f"s{i}", jobs=2, timeout=60, stall_timeout=10,
                                progress=False)
        times.append(time.monotonic() - t0)
        assert not failed, [RunRecord.read(r.out_dir) for r in runs]
        attempts += [RunRecord.read(r.out_dir).attempts for r in runs]
    assert attempts == [1] * 16, "a stalled kernel had to be replaced"
    assert max(times) < 30, f"slowest sweep {max(times):.1f} s"


def test_the_report_index_says_why_a_run_failed(tmp_path):
    from kit.lessons.report import build_index
    nb = make_notebook(tmp_path / "bad.ipynb", "raise ValueError('no rows')")
    with pytest.raises(Exception):
        execute(nb, tmp_path / "runs" / "bad", html=False, progress=False)
    page = build_index(tmp_path / "runs").read_text()
    assert "failed" in page and "ValueError: no rows" in page
