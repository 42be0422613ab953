"""``kit.results.scratch_dir``: where lessons write files, so that nothing lands in the folder a lesson runs in
(issue 26). That every lesson leaves its working directory clean is checked by its smoke run
(``tests/test_notebooks.py``: only the run's own files may be in the run folder afterwards)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_scratch_dir_is_fresh_and_removed_when_the_process_exits(tmp_path):
    from kit.results import scratch_dir
    a, b = scratch_dir("11"), scratch_dir("11")
    assert a != b and a.is_dir() and not any(a.iterdir()) and a.name.startswith("kit-11-")
    assert scratch_dir("../x y").parent == a.parent, "the name never leaves the temporary folder"
    code = ("from kit.results import scratch_dir; a = scratch_dir('t'); k = scratch_dir('t', keep=True); "
            "(a / 'f').write_text('x'); (k / 'f').write_text('x'); print(a); print(k)")
    env = dict(os.environ, TMPDIR=str(tmp_path))
    lines = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                           check=True).stdout.split()
    removed, kept = map(Path, lines)
    assert removed.parent == tmp_path and not removed.exists(), "the scratch folder outlived its process"
    assert (kept / "f").read_text() == "x", "keep=True keeps it"
